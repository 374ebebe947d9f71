"""The Affine guide's spellings of task and environment names (`affine:sat`, `agentgym:webshop`), and its data
layout (`affine.num_samples`, `agentgym.{num_episodes, max_episode_length, environments}`) read into ours, so a
user of that guide can bring their names and config as they stand."""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from trainguard.errors import ConfigError

AFFINE_TASKS = ("sat", "abd", "ded")  # the `affine:` namespace holds the three program-reasoning tasks
AFFINE_PREFIX, AGENTGYM_PREFIX = "affine:", "agentgym:"
DEFAULT_EPISODE_LENGTH = 10  # Affine plays 10 rounds per episode when the guide's config sets none


def env_names() -> list[str]:
    from trainguard.tasks.envs import ENVS

    return ENVS.names()


def canonical(name: str) -> str:
    """Our name for `name`: `affine:sat` -> sat, `agentgym:webshop` -> webshop, any other name unchanged (an
    unknown plain name is left for the registry to refuse with its allowed names). A prefix is case-blind."""
    text = name.strip()
    lowered = text.lower()
    if lowered.startswith(AFFINE_PREFIX):
        task = lowered.removeprefix(AFFINE_PREFIX)
        if task not in AFFINE_TASKS:
            raise ConfigError(
                f"unknown Affine task {name!r}; allowed: {', '.join(AFFINE_PREFIX + t for t in AFFINE_TASKS)}"
            )
        return task
    if lowered.startswith(AGENTGYM_PREFIX):
        env = lowered.removeprefix(AGENTGYM_PREFIX)
        if env not in env_names():
            allowed = ", ".join(AGENTGYM_PREFIX + e for e in env_names())
            raise ConfigError(f"unknown AgentGym environment {name!r}; allowed: {allowed}")
        return env
    return text


def canonical_list(names: Iterable[str]) -> list[str]:
    return [canonical(name) for name in names]


def is_env(name: str) -> bool:
    """Whether `name` (either spelling) is a registered text environment rather than a task."""
    from trainguard.tasks.envs import ENVS

    return canonical(name) in ENVS


@dataclass
class AffineData:
    """The guide's data section in our terms: a `data` section of task sources, and the episode sources that
    the RL stages take the environments from (our data section holds records, not live episodes)."""

    data: dict[str, Any] = field(default_factory=dict)  # {"sources": [{"task", "n"}, ...]}; empty without affine
    episodes: list[dict[str, Any]] = field(default_factory=list)  # {"name": "episodes", "env", "params", "n_seeds"}
    notes: list[str] = field(default_factory=list)


def is_affine_layout(data: Any) -> bool:
    return isinstance(data, Mapping) and bool({"affine", "agentgym"} & set(data)) and "sources" not in data


def from_affine_layout(data: Mapping[str, Any]) -> AffineData:
    """Translate `{affine: {num_samples, tasks?}, agentgym: {num_episodes, max_episode_length, environments}}`.

    `affine.num_samples` records of each of sat, abd, ded (or of `affine.tasks`, either spelling) become task
    sources; each AgentGym environment becomes an `episodes` source over `num_episodes` seeds whose episodes end
    after `max_episode_length` actions (the env's `max_rounds`). Keys we do not know are refused, not dropped."""
    out = AffineData()
    unknown = set(data) - {"affine", "agentgym"}
    if unknown:
        raise ConfigError(
            f"data: unknown key(s) {', '.join(sorted(unknown))} beside the Affine layout's affine, agentgym"
        )
    affine = _section(data, "affine", {"num_samples", "tasks"})
    if affine:
        n = _count(affine, "affine.num_samples")
        tasks = canonical_list(affine.get("tasks") or AFFINE_TASKS)
        out.data = {"sources": [{"task": task, "n": n} for task in tasks]}
    gym = _section(data, "agentgym", {"num_episodes", "max_episode_length", "environments"})
    if gym:
        episodes = _count(gym, "agentgym.num_episodes")
        length = int(gym.get("max_episode_length", DEFAULT_EPISODE_LENGTH))
        if length < 1:
            raise ConfigError(f"data.agentgym.max_episode_length must be >= 1, got {length}")
        environments = gym.get("environments")
        if not environments:
            raise ConfigError(f"data.agentgym.environments names no environment; allowed: {', '.join(env_names())}")
        for name in environments:
            env = canonical(str(name))
            if env not in env_names():
                raise ConfigError(f"data.agentgym.environments: unknown {name!r}; allowed: {', '.join(env_names())}")
            params = {"max_rounds": length}
            out.episodes.append({"name": "episodes", "env": env, "params": params, "n_seeds": episodes})
        out.notes.append(
            f"agentgym: {len(out.episodes)} environment(s) become `episodes` sources of RL stages "
            f"({episodes} seeds each, {length} actions per episode); expert demonstrations for SFT come from "
            "`trainguard data collect --tasks " + ",".join(e["env"] for e in out.episodes) + "`"
        )
    return out


def _section(data: Mapping[str, Any], key: str, allowed: set[str]) -> dict[str, Any]:
    section = data.get(key) or {}
    if not isinstance(section, Mapping):
        raise ConfigError(f"data.{key} must be a mapping of {', '.join(sorted(allowed))}")
    unknown = set(section) - allowed
    if unknown:
        raise ConfigError(
            f"data.{key}: unknown key(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(allowed))}"
        )
    return dict(section)


def _count(section: Mapping[str, Any], where: str) -> int:
    key = where.rpartition(".")[2]
    value = section.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"data.{where} must be a whole number >= 1, got {value!r}")
    return value


def apply_affine_layout(tree: dict[str, Any]) -> None:
    """A data section in the Affine guide's layout (`affine.num_samples`, `agentgym.{num_episodes,
    max_episode_length, environments}`) as it stands: task sources for the data, and each `episodes` stage that
    names no `env` gets the layout's environment (when it names exactly one)."""
    if not is_affine_layout(tree.get("data")):
        return
    affine = from_affine_layout(tree["data"])
    if not affine.data:
        raise ConfigError(
            "data: the Affine layout names no affine tasks (affine.num_samples); the run needs records for its "
            "data section: add `affine`, or a `sources` list. Environments are played by RL stages "
            "(source: {name: episodes, env: ...})"
        )
    tree["data"] = affine.data
    for i, stage in enumerate(tree.get("stages") or []):
        source = stage.get("source") if isinstance(stage, dict) else None
        if isinstance(source, dict) and source.get("name") == "episodes" and "env" not in source:
            if len(affine.episodes) != 1:
                names = ", ".join(e["env"] for e in affine.episodes) or "none"
                raise ConfigError(f"stages.{i}.source.env: name one of the layout's environments ({names})")
            episode = affine.episodes[0]
            stage["source"] = {
                **source,
                "env": episode["env"],
                "n_seeds": episode["n_seeds"],
                "params": {**episode["params"], **source.get("params", {})},
            }
