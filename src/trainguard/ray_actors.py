"""Ray actors spread over a cluster, for the workers that scale out across machines (the sandbox pool, the
environment pool). Imported only when a config asks for `backend: ray`; Ray is the `ray` extra."""

from typing import Any

from trainguard.errors import ConfigError

STARTUP_S = 60.0  # an actor (or worker) that never starts would be waited on forever; a loaded machine needs ~20 s


def spread_actors(
    cls: type, count: int, cpus: int, args: tuple[Any, ...], address: str | None, field: str
) -> tuple[Any, list[Any]]:
    """(the ray module, `count` started actors of `cls(*args)`, `cpus` CPUs each, spread over the nodes).

    The class must have a `where()` method: it is called once on every actor to see that each one started.
    `field` names the config section in the errors."""
    try:
        import ray
    except ImportError:
        raise ConfigError(f"{field}: backend 'ray' needs Ray: pip install 'trainguard[ray]'") from None
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    remote = ray.remote(num_cpus=cpus)(cls).options(scheduling_strategy="SPREAD")
    actors = [remote.remote(*args) for _ in range(count)]
    try:
        ray.get([actor.where.remote() for actor in actors], timeout=STARTUP_S)
    except ray.exceptions.GetTimeoutError:
        for actor in actors:
            ray.kill(actor)
        raise ConfigError(
            f"{field}: {count} Ray actors of {cpus} CPUs did not start within {STARTUP_S:.0f} s; "
            f"the cluster has {ray.cluster_resources().get('CPU', 0):.0f} CPUs"
        ) from None
    return ray, actors
