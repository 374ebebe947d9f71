"""Sandboxes across a Ray cluster (here a local one of two CPUs): the same isolation on every actor, results in
order, and a run config that sends the tasks' programs there."""

import os
import sys

import pytest

from trainguard.errors import ConfigError
from trainguard.sandbox import pool as sandbox_pool
from trainguard.sandbox.limits import SandboxSection
from trainguard.sandbox.ray_pool import RayPool

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=80 * 2**20, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_actors_run_programs_sandboxed_and_return_them_in_order(cluster, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("host file")
    pool = RayPool(hosts=2, workers=1)
    try:
        results = pool.map([("print(int(input()) * 2)", str(i)) for i in range(7)])
        assert [r.stdout for r in results] == [f"{2 * i}\n" for i in range(7)]
        pids = {pid for _, pid in pool.where()}
        assert len(pids) == 2 and os.getpid() not in pids  # two actor processes did the work
        assert pool.run("while True: pass", timeout=1).status == "timeout"
        seen = pool.run(f"import os; print(os.path.exists({str(secret)!r}))")
        assert seen.stdout == "False\n"  # each actor's sandbox hides the host's files, as a local one does
    finally:
        pool.close()


def test_a_run_config_sends_the_tasks_programs_to_ray(cluster):
    try:
        sandbox_pool.use(SandboxSection(backend="ray", ray_hosts=2))
        pool = sandbox_pool.shared_pool()
        assert isinstance(pool, RayPool) and pool.size == 2
        assert [r.stdout for r in pool.map([("print(input()[::-1])", "abc")] * 3)] == ["cba\n"] * 3
    finally:
        sandbox_pool.use(SandboxSection())
    assert not isinstance(sandbox_pool.shared_pool(), RayPool)


def test_without_ray_the_backend_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now fails
    with pytest.raises(ConfigError, match=r"trainguard\[ray\]"):
        RayPool(hosts=1, workers=1)
