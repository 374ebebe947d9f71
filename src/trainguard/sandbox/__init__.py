"""Isolated execution of untrusted (model-written) Python programs, with a pool of warm workers."""

from trainguard.sandbox.launch import Isolation, SandboxUnavailable, detect
from trainguard.sandbox.limits import ExecResult, Limits, Status
from trainguard.sandbox.pool import SandboxPool, shared_pool

__all__ = ["ExecResult", "Isolation", "Limits", "SandboxPool", "SandboxUnavailable", "Status", "detect", "shared_pool"]
