"""Environments stepped by a pool of workers: in this process, in worker processes, or in Ray actors.

An RL stage's rounds alternate one batched generation with one step of every live episode. An environment whose
step costs real time (a simulator, a program run) then holds the policy up; the pool spreads the episodes over
`processes` workers (episode i lives in worker i mod n) and steps them all at once, one message per worker and
round. The workers hold the environments' state between rounds, so an episode costs what it costs inline.

Environments are deterministic per seed, so where an episode runs never changes what it answers: a pool of any
size plays the same episodes as this process does (tested). A worker that raises, dies or does not answer
within `timeout_s` is stopped and the run stops with the environment and seed named. Across machines the
workers are Ray actors (`pip install 'trainguard[ray]'`); Ray moves the messages, nothing here speaks its own
protocol."""

import contextlib
import importlib
import multiprocessing as mp
import time
import traceback
import weakref
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field

from trainguard.ray_actors import STARTUP_S, spread_actors  # Ray itself is imported only when called
from trainguard.section import Section
from trainguard.tasks.envs.base import ENVS, Env, StepResult


class EnvWorkersSection(Section):
    processes: int = Field(
        0, ge=0, le=256, description="Workers that step the episodes (0: step them in this process)."
    )
    backend: Literal["process", "ray"] = Field(
        "process", description="process: worker processes on this machine; ray: Ray actors spread over a cluster."
    )
    ray_address: str | None = Field(None, description="Ray cluster to join (backend ray; None: start a local one).")
    timeout_s: float = Field(60.0, gt=0, description="Longest a worker may take over one round of its episodes.")


@dataclass(frozen=True)
class EnvSpec:
    """What a worker needs to build an episode: the registered name, the seed, the env's parameters, and the
    module that registers it (imported in the worker, so an env defined outside trainguard plays there too)."""

    name: str
    seed: int
    params: dict[str, Any] = field(default_factory=dict)
    module: str = ""

    @classmethod
    def of(cls, name: str, seed: int, **params: Any) -> "EnvSpec":
        env_cls = ENVS.get(name)
        env_cls.Config.model_validate(params)  # a bad key fails here, not in a worker
        return cls(name, seed, params, env_cls.__module__)


class EnvHost:
    """The environments of one worker, by their index in the pool's batch."""

    def __init__(self) -> None:
        self.envs: dict[int, Env] = {}

    def open(self, specs: list[tuple[int, EnvSpec]]) -> list[str]:
        """Replace the episodes with these; the first observation of each."""
        self.envs = {}
        for index, spec in specs:
            importlib.import_module(spec.module)
            env_cls = ENVS.get(spec.name)
            self.envs[index] = env_cls(env_cls.Config.model_validate(spec.params), spec.seed)
        return [self.envs[index].reset() for index, _ in specs]

    def step(self, moves: list[tuple[int, str]]) -> list[StepResult]:
        return [self.envs[index].step(action) for index, action in moves]

    def where(self) -> tuple[str, int]:
        """(host name, pid): where this worker runs."""
        import os
        import socket

        return socket.gethostname(), os.getpid()


def _serve(conn: Any) -> None:
    """A worker process: say it is up, then answer (method, argument) messages until the pool closes."""
    host = EnvHost()
    try:
        conn.send(("ready", None))
        while (message := conn.recv()) is not None:
            method, argument = message
            try:
                reply = ("ok", getattr(host, method)(argument))
            except Exception as e:
                reply = ("error", f"{type(e).__name__}: {e}\n{traceback.format_exc()}")
            conn.send(reply)
    except (EOFError, OSError):  # the pool stopped this worker, or its parent died: nothing is left to answer
        return


class EnvError(RuntimeError):
    """A worker raised, died or timed out; the message names its environments and seeds."""


class EnvPool:
    """Steps batches of episodes on `processes` workers; with none, in this process."""

    def __init__(self, section: EnvWorkersSection | None = None) -> None:
        self.section = section or EnvWorkersSection()
        self.specs: list[EnvSpec] = []
        self.inline = EnvHost() if self.section.processes == 0 else None
        self.procs: list[tuple[Any, Any]] = []  # (process, connection) per worker
        self.actors: list[Any] = []
        self.busy_s = 0.0  # wall time spent waiting on the environments, over the pool's life
        weakref.finalize(self, _stop, self.procs, self.actors)

    @property
    def size(self) -> int:
        return max(self.section.processes, 1)

    def open(self, specs: list[EnvSpec]) -> list[str]:
        """Start these episodes (any earlier ones end); the first observation of each, in order."""
        self.specs = list(specs)
        parts = [[(i, s) for i, s in enumerate(self.specs) if i % self.size == k] for k in range(self.size)]
        return self._merge(parts, "open")

    def step(self, moves: dict[int, str]) -> dict[int, StepResult]:
        """One action for each of these episodes (by their index in `open`'s batch); each one's result."""
        parts = [[(i, a) for i, a in sorted(moves.items()) if i % self.size == k] for k in range(self.size)]
        return dict(zip(sorted(moves), self._merge(parts, "step"), strict=True))

    def _merge(self, parts: list[list[tuple[int, Any]]], method: str) -> list[Any]:
        """Each worker's part, all sent before any is awaited; the answers in index order."""
        start = time.perf_counter()
        by_index: dict[int, Any] = {}
        for part, out in zip(parts, self._call(parts, method), strict=True):
            by_index.update(zip((i for i, _ in part), out, strict=True))
        self.busy_s += time.perf_counter() - start
        return [by_index[i] for i in sorted(by_index)]

    def _call(self, parts: list[list[tuple[int, Any]]], method: str) -> list[list[Any]]:
        if self.inline is not None:
            return [getattr(self.inline, method)(parts[0])]
        if self.section.backend == "ray":
            return self._call_ray(parts, method)
        self._start()
        for (_, conn), part in zip(self.procs, parts, strict=True):
            conn.send((method, part))
        return [self._answer(k, conn, part) for k, ((_, conn), part) in enumerate(zip(self.procs, parts, strict=True))]

    def _answer(self, k: int, conn: Any, part: list[tuple[int, Any]]) -> list[Any]:
        named = self._named([i for i, _ in part])
        try:
            ready = conn.poll(self.section.timeout_s)
            status, out = conn.recv() if ready else ("timeout", None)
        except (EOFError, OSError):
            status, out = "died", None
        if status == "ok":
            return out
        self.close()  # a worker that failed mid-round leaves the batch inconsistent: stop every worker
        if status == "timeout":
            raise EnvError(
                f"environment worker {k} did not answer within {self.section.timeout_s:g} s "
                f"(source.workers.timeout_s) stepping {named}; the workers were stopped"
            )
        if status == "died":
            raise EnvError(f"environment worker {k} died stepping {named}")
        raise EnvError(f"environment worker {k} raised stepping {named}: {out}")

    def _named(self, indices: list[int]) -> str:
        return ", ".join(f"{self.specs[i].name} seed {self.specs[i].seed}" for i in indices[:8]) or "nothing"

    def _start(self) -> None:
        """Spawned (not forked) workers: a fork of a process holding torch's threads can deadlock."""
        if self.procs:
            return
        ctx = mp.get_context("spawn")
        for _ in range(self.section.processes):
            mine, theirs = ctx.Pipe()
            proc = ctx.Process(target=_serve, args=(theirs,), daemon=True, name="trainguard-env")
            proc.start()
            theirs.close()
            self.procs.append((proc, mine))
        for k, (_, conn) in enumerate(self.procs):  # start-up (a fresh interpreter, imports) is not a round
            if not (conn.poll(STARTUP_S) and conn.recv() == ("ready", None)):
                self.close()
                raise EnvError(f"environment worker {k} did not start within {STARTUP_S:g} s")

    def _call_ray(self, parts: list[list[tuple[int, Any]]], method: str) -> list[list[Any]]:
        if not self.actors:
            self.ray, actors = spread_actors(
                EnvHost, self.section.processes, 1, (), self.section.ray_address, "source.workers"
            )
            self.actors.extend(actors)
        calls = [getattr(actor, method).remote(part) for actor, part in zip(self.actors, parts, strict=True)]
        try:
            return self.ray.get(calls, timeout=self.section.timeout_s)
        except Exception as e:
            self.close()
            named = self._named([i for part in parts for i, _ in part])
            raise EnvError(f"Ray environment workers failed stepping {named}: {type(e).__name__}: {e}") from None

    def close(self) -> None:
        """Stop every worker (the next `open` starts them again)."""
        _stop(self.procs, self.actors)


def _stop(procs: list[tuple[Any, Any]], actors: list[Any]) -> None:
    for proc, conn in procs:
        with contextlib.suppress(Exception):
            conn.send(None)
            conn.close()
        proc.join(timeout=1)
        if proc.is_alive():
            proc.kill()
            proc.join()
    procs.clear()
    if actors:
        import ray

        for actor in actors:
            with contextlib.suppress(Exception):
                ray.kill(actor)
        actors.clear()
