"""Sandbox runs spread over a Ray cluster (`pip install 'trainguard[ray]'`; imported only when `sandbox.backend:
ray`): one actor per host slot, each with its own local SandboxPool, so every machine isolates programs exactly
as one machine does. Ray moves the jobs and the results (plain dicts); nothing here speaks its own protocol."""

import contextlib
from collections.abc import Iterable
from typing import Any

from trainguard.errors import ConfigError
from trainguard.sandbox.limits import ExecResult, Limits
from trainguard.sandbox.pool import STARTUP_S, SandboxPool


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
        try:
            import ray
        except ImportError:
            raise ConfigError(
                "sandbox.backend: 'ray' needs Ray: pip install 'trainguard[ray]' (or use backend: local)"
            ) from None
        self.ray, self.limits, self.size, self.closed = ray, limits or Limits(), hosts * workers, False
        if not ray.is_initialized():
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        actor = ray.remote(num_cpus=workers)(SandboxHost).options(scheduling_strategy="SPREAD")
        self.hosts = [actor.remote(workers, self.limits.model_dump()) for _ in range(hosts)]
        try:  # actors that no node can hold would wait forever on the first job
            self.ray.get([host.where.remote() for host in self.hosts], timeout=STARTUP_S)
        except ray.exceptions.GetTimeoutError:
            self.close()
            raise ConfigError(
                f"sandbox: {hosts} Ray actors of {workers} CPUs (sandbox.ray_hosts x sandbox.workers) did not start "
                f"within {STARTUP_S:.0f} s; the cluster has {ray.cluster_resources().get('CPU', 0):.0f} CPUs"
            ) from None

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
