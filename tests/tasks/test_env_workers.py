"""Episodes stepped by worker processes (or Ray actors) answer exactly what they answer in this process, and a
worker that raises, dies or hangs is stopped with the environment and seed named."""

import os
import random
import time

import pytest

from trainguard.tasks.envs import ENVS, Env, EnvConfig, StepResult
from trainguard.tasks.envs.base import make
from trainguard.tasks.envs.workers import EnvError, EnvPool, EnvSpec, EnvWorkersSection

SMALL = {
    "guess": {"n": 6, "max_rounds": 4},
    "textcraft": {"max_depth": 1, "distractors": 1, "max_rounds": 6},
    "alfworld": {"max_rounds": 6},
    "webshop": {"max_rounds": 6},
    "babyai": {"max_rounds": 6},
}


class FaultyConfig(EnvConfig):
    max_rounds: int = 3


@ENVS.register("test-faulty")
class Faulty(Env):
    """Answers "raise", "die" and "hang" as their names say, anything else with its own pid."""

    name = "test-faulty"
    Config = FaultyConfig

    def reset(self) -> str:
        self._new_episode()
        return f"seed {self.seed}\n"

    def step(self, action_text: str) -> StepResult:
        if action_text == "raise":
            raise ValueError("the simulator broke")
        if action_text == "die":
            os._exit(3)
        if action_text == "hang":
            time.sleep(600)
        return self._end_round(str(os.getpid()), 0.0, success=False)


def replay(pool: EnvPool, name: str, seeds: range, choose_seed: int = 0) -> list[tuple]:
    """Every episode to its end with random valid actions chosen on a twin played here; all that `pool` said."""
    specs = [EnvSpec.of(name, s, **SMALL[name]) for s in seeds]
    twins = [make(name, s, **SMALL[name]) for s in seeds]
    said: list[tuple] = [tuple(pool.open(specs))]
    assert list(said[0]) == [t.reset() for t in twins]
    rng, live = random.Random(choose_seed), set(range(len(specs)))
    while live:
        moves = {i: rng.choice([*twins[i].valid_actions(), "gibberish"]) for i in sorted(live)}
        results = pool.step(moves)
        for i, action in moves.items():
            twin = twins[i].step(action)
            assert results[i] == twin, (name, specs[i].seed, action)
            said.append((i, action, results[i].observation, results[i].reward, results[i].done, results[i].info))
            if results[i].done:
                live.discard(i)
    return said


def test_worker_processes_play_every_env_exactly_as_this_process_does():
    pool = EnvPool(EnvWorkersSection(processes=2))
    try:
        for name in SMALL:
            assert replay(pool, name, range(5)) == replay(EnvPool(), name, range(5)), name
    finally:
        pool.close()


def test_episodes_are_spread_over_the_workers_and_a_closed_pool_starts_again():
    pool = EnvPool(EnvWorkersSection(processes=2))
    try:
        pool.open([EnvSpec.of("test-faulty", s) for s in range(4)])
        pids = pool.step({i: "who" for i in range(4)})
        assert pids[0] == pids[2] != pids[1] == pids[3]  # episode i lives in worker i mod 2
        assert os.getpid() not in {int(r.observation) for r in pids.values()}
        pool.close()
        assert pool.open([EnvSpec.of("test-faulty", 9)]) == ["seed 9\n"]  # a closed pool starts its workers again
    finally:
        pool.close()


@pytest.mark.parametrize(
    ("action", "says"),
    [("raise", "raised stepping test-faulty seed 1: ValueError: the simulator broke"), ("die", "died stepping")],
)
def test_a_worker_that_raises_or_dies_stops_every_worker_naming_the_env(action, says):
    pool = EnvPool(EnvWorkersSection(processes=2))
    pool.open([EnvSpec.of("test-faulty", s) for s in range(2)])
    procs = [proc for proc, _ in pool.procs]
    with pytest.raises(EnvError, match=says):
        pool.step({0: "fine", 1: action})
    assert not pool.procs and not any(p.is_alive() for p in procs)


def test_a_hanging_worker_is_killed_after_timeout_s():
    pool = EnvPool(EnvWorkersSection(processes=1))
    pool.open([EnvSpec.of("test-faulty", 7)])  # imports this module in the worker: not held to the 1 s below
    pool.section = EnvWorkersSection(processes=1, timeout_s=1.0)
    proc = pool.procs[0][0]
    start = time.monotonic()
    with pytest.raises(EnvError, match=r"did not answer within 1 s \(source.workers.timeout_s\) stepping test-faulty"):
        pool.step({0: "hang"})
    assert time.monotonic() - start < 10 and not proc.is_alive()


def test_a_bad_env_parameter_is_refused_before_any_worker_starts():
    with pytest.raises(ValueError, match="unknown key 'colour'"):
        EnvSpec.of("guess", 0, colour="red")


def test_ray_actors_play_as_this_process_does():
    ray = pytest.importorskip("ray")
    here = [os.path.dirname(__file__), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {"env_vars": {"PYTHONPATH": os.pathsep.join(here)}}  # the actors import this module's env, as a user's
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=80 * 2**20, log_to_driver=False, runtime_env=env)
    pool = EnvPool(EnvWorkersSection(processes=2, backend="ray"))
    try:
        assert replay(pool, "textcraft", range(4)) == replay(EnvPool(), "textcraft", range(4))
        pool.open([EnvSpec.of("test-faulty", s) for s in range(2)])
        pids = {r.observation for r in pool.step({0: "who", 1: "who"}).values()}
        assert len(pids) == 2 and str(os.getpid()) not in pids  # two actor processes
        with pytest.raises(EnvError, match="Ray environment workers failed stepping test-faulty seed 0"):
            pool.step({0: "raise"})
    finally:
        pool.close()
        ray.shutdown()
