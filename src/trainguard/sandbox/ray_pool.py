"""Sandbox runs spread over a Ray cluster (`pip install 'trainguard[ray]'`; imported only when `sandbox.backend:
ray`): one actor per host slot, each with its own local SandboxPool, so every machine isolates programs exactly
as one machine does. Ray moves the jobs and the results (plain dicts); nothing here speaks its own protocol."""

import contextlib
from collections.abc import Iterable
from typing import Any

from trainguard.ray_actors import STARTUP_S, spread_actors
from trainguard.sandbox.limits import ExecResult, Limits
from trainguard.sandbox.pool import SandboxPool


class SandboxHost:
    """A Ray actor: a warm local pool on whichever node Ray placed it."""

    def __init__(self, workers: int, limits: dict[str, Any]) -> None:
        self.pool = SandboxPool(workers, Limits.model_validate(limits))

    def map(self, jobs: list[tuple[str, str]], overrides: dict[str, float | int]) -> list[dict[str, Any]]:
        return [r.to_dict() for r in self.pool.map(jobs, **overrides)]

    def where(self) -> tuple[str, int]:
        """(host name, pid): where Ray placed this actor."""
        import os
        import socket

        return socket.gethostname(), os.getpid()

    def close(self) -> None:
        """Stop the sandboxes (their process groups, cgroups and leased uids) before Ray kills the actor."""
        self.pool.close()


class RayPool:
    """SandboxPool's `run`/`map` over `hosts` Ray actors of `workers` sandboxes each (spread over the nodes)."""

    def __init__(self, hosts: int, workers: int, address: str | None = None, limits: Limits | None = None) -> None:
        self.limits, self.size, self.closed = limits or Limits(), hosts * workers, False
        args = (workers, self.limits.model_dump())
        self.ray, self.hosts = spread_actors(
            SandboxHost, hosts, workers, args, address, "sandbox (ray_hosts x workers)"
        )

    def run(self, source: str, stdin: str = "", **overrides: float | int) -> ExecResult:
        """One program on the first actor (as SandboxPool.run)."""
        return self.map([(source, stdin)], **overrides)[0]

    def map(self, jobs: Iterable[tuple[str, str]], **overrides: float | int) -> list[ExecResult]:
        """Deal the jobs out to the hosts in turn; results in the jobs' order."""
        jobs = list(jobs)
        n = len(self.hosts)
        parts = self.ray.get([host.map.remote(jobs[k::n], overrides) for k, host in enumerate(self.hosts)])
        out: list[ExecResult | None] = [None] * len(jobs)
        for k, part in enumerate(parts):
            out[k::n] = [ExecResult(**r) for r in part]
        return out  # type: ignore[return-value]

    def where(self) -> list[tuple[str, int]]:
        """(host name, pid) of each actor."""
        return self.ray.get([host.where.remote() for host in self.hosts])

    def close(self) -> None:
        """Close every actor's sandboxes, then the actors."""
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(Exception):  # an actor that never started or whose node is gone
            self.ray.get([host.close.remote() for host in self.hosts], timeout=STARTUP_S)
        for host in self.hosts:
            self.ray.kill(host)
