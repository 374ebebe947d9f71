"""`trainguard eval` without the CLI: which model folder a run folder stands for, what the run trained on (task
parameters, prompts to keep out of the held-out set), and greedy evaluation on held-out instances, summarised
per task with intervals. A text environment named among the tasks is played instead: held-out seeds, Affine's
10 rounds at temperature 0.7, episode success as the score (its return reported beside)."""

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from trainguard.errors import ConfigError, TrainguardError
from trainguard.eval.accuracy import HELDOUT_START, answer_all, heldout_instances
from trainguard.eval.stats import aggregate, summarise
from trainguard.tasks import TASKS, Score, Task, build_task
from trainguard.tasks.aliases import canonical
from trainguard.tasks.envs import ENVS
from trainguard.tasks.envs.play import play_model

SEED_STRIDE = 10_000_000  # held-out ids of seed s start at HELDOUT_START + s * SEED_STRIDE
RL_OBJECTIVES = ("grpo", "ppo")
MODEL_OBJECTIVES = ("reward", "cost")  # export reward/cost models, never a policy
ENV_ROUNDS = 10  # Affine's evaluation: 10 rounds per episode ...
ENV_TEMPERATURE = 0.7  # ... sampled at temperature 0.7

TaskSpec = tuple[str, Mapping[str, Any]]
Progress = Callable[[int, int], None]  # (samples done, samples in all)


def heldout_start(seed: int) -> int:
    """First held-out id for `seed`: seed 0 is the held-out set training's own evaluation uses."""
    return HELDOUT_START + seed * SEED_STRIDE


def task_specs(tasks: Sequence[TaskSpec] | Sequence[str]) -> list[tuple[str, dict[str, Any]]]:
    """(name, params) pairs with our names (Affine spellings such as `affine:sat`, `agentgym:webshop` accepted)."""
    return [(canonical(t), {}) if isinstance(t, str) else (canonical(t[0]), dict(t[1])) for t in tasks]


def build_tasks(tasks: Sequence[TaskSpec] | Sequence[str]) -> list[Task]:
    """Tasks from names or (name, params), with errors that list the allowed names or name the bad field.
    Environments among them are checked the same way (name, params) but played, not built: they are left out."""
    from pydantic import ValidationError

    from trainguard.config_tree import format_validation_error

    specs = task_specs(tasks)
    names = [name for name, _ in specs]
    allowed = f"allowed: {', '.join(TASKS.names())}; environments: {', '.join(ENVS.names())}"
    if not specs:
        raise ConfigError(f"no task to evaluate; {allowed}")
    if len(set(names)) != len(names):
        raise ConfigError(f"each task may be evaluated once; got {', '.join(names)}")
    built = []
    for name, params in specs:
        if name not in TASKS and name not in ENVS:
            raise ConfigError(f"unknown task {name!r}; {allowed}")
        try:
            if name in ENVS:
                ENVS.get(name).Config.model_validate(params)
            else:
                built.append(build_task(name, params))
        except ValidationError as err:
            raise ConfigError(format_validation_error(err, f"task {name}")) from None
    return built


def evaluate(
    model: Any,
    tokenizer: Any,
    tasks: Sequence[TaskSpec] | Sequence[str],
    n: int,
    seed: int = 0,
    max_new_tokens: int = 64,
    batch_size: int = 64,
    chat: bool = False,
    exclude_prompts: Iterable[str] = frozenset(),
    samples: list[dict[str, Any]] | None = None,
    progress: Progress | None = None,
    env_rounds: int | None = ENV_ROUNDS,
    env_temperature: float | None = ENV_TEMPERATURE,
) -> dict[str, Any]:
    """{"tasks": {name: summarise(scores)}, "aggregate": ...} over `n` held-out instances per task, answered
    greedily and scored by the task's verifier (`task.score_many(instances, responses)`). Rows
    {task, id, prompt, response, score} are appended to `samples` when given; `progress(done, total)` is
    called before the first batch and after each.

    An environment plays `n` held-out seeds (from `heldout_start(seed)`) for at most `env_rounds` actions at
    `env_temperature` (None: greedy); its score is success (0 or 1), and its row adds `return_mean` and
    `rounds_mean`; its sample rows are episode records {env, seed, turns, return, success} with task and score."""
    built = {task.name: task for task in build_tasks(tasks)}
    specs = task_specs(tasks)
    excluded = set(exclude_prompts)
    start = heldout_start(seed)
    instances = {name: heldout_instances(task, n, excluded, start) for name, task in built.items()}
    total = sum(len(v) for v in instances.values()) + n * (len(specs) - len(built))
    done = 0
    if progress is not None:
        progress(done, total)
    was_training = model.training
    model.eval()
    per_task: dict[str, dict[str, Any]] = {}
    every_score: list[float] = []
    try:
        for name, params in specs:
            if name in built:
                task, pool = built[name], instances[name]

                def answered(k: int, base: int = done) -> None:
                    if progress is not None:
                        progress(base + k, total)

                prompts = [i.prompt for i in pool]
                responses = answer_all(model, tokenizer, prompts, max_new_tokens, batch_size, chat, answered)
                results = task.score_many(pool, responses)
                scores = [float(r.value) for r in results]
                if samples is not None:
                    samples += [
                        {"task": name, "id": inst.id, "prompt": inst.prompt, "response": response, "score": score}
                        for inst, response, score in zip(pool, responses, scores, strict=True)
                    ]
                done += len(pool)
                per_task[name] = summarise(scores) | detail_means(results)
            else:

                def played(k: int, base: int = done) -> None:
                    if progress is not None:
                        progress(base + k, total)

                records = play_env(
                    model, tokenizer, name, params, n, seed, max_new_tokens, batch_size, env_rounds, env_temperature,
                    played,
                )  # fmt: skip
                done += n
                scores = [float(r["success"]) for r in records]
                if samples is not None:
                    samples.extend({"task": name, **r, "score": s} for r, s in zip(records, scores, strict=True))
                per_task[name] = summarise(scores) | episode_means(records)
            every_score.extend(scores)
    finally:
        model.train(was_training)
    return {"tasks": per_task, "aggregate": aggregate(per_task, every_score)}


def play_env(
    model: Any,
    tokenizer: Any,
    env: str,
    params: Mapping[str, Any],
    n: int,
    seed: int,
    max_new_tokens: int,
    batch_size: int,
    rounds: int | None,
    temperature: float | None,
    played: Callable[[int], None],
) -> list[dict[str, Any]]:
    """Episode records of `n` held-out seeds of `env`, `batch_size` episodes per batch, each batch's sampling
    seeded from (seed, batch) so an evaluation replays; `played(episodes so far)` after each batch."""
    start, records = heldout_start(seed), []
    for first in range(0, n, batch_size):
        seeds = range(start + first, start + min(n, first + batch_size))
        records += play_model(
            model, tokenizer, env, seeds, rounds, temperature, max_new_tokens=max_new_tokens,
            batch_size=batch_size, sample_seed=seed * SEED_STRIDE + first, **params,
        )  # fmt: skip
        played(len(records))
    return records


def detail_means(results: Sequence[Score]) -> dict[str, Any]:
    """{"metrics": {key: mean}} over the numeric details every score reports (a task's own metrics, e.g.
    function_call's json_valid, format_ok and arguments_ok), or {} when there are none."""
    if not results:
        return {}
    shared = set.intersection(*(set(r.details) for r in results))
    numeric = sorted(k for k in shared if all(isinstance(r.details[k], bool | int | float) for r in results))
    if not numeric:
        return {}
    return {"metrics": {k: math.fsum(float(r.details[k]) for r in results) / len(results) for k in numeric}}


def episode_means(records: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Mean return and mean rounds played of episode records (0 for none)."""
    count = max(len(records), 1)
    return {
        "return_mean": sum(float(r["return"]) for r in records) / count,
        "rounds_mean": sum(len(r["turns"]) for r in records) / count,
    }


# -- what a MODEL argument stands for ------------------------------------------------------------------------


@dataclass
class TrainedOn:
    """What a run trained on, so its evaluation uses the same task parameters and skips its training prompts."""

    params: dict[str, dict[str, Any]] = field(default_factory=dict)  # task -> params (the first source's)
    prompts: set[str] = field(default_factory=set)  # training prompts of the evaluated tasks
    chat: bool = False  # the run rendered prompts through the chat template


def is_run_folder(path: Path) -> bool:
    return (path / "manifest.json").is_file() and (path / "config.yaml").is_file()


def read_run_config(run_dir: Path) -> dict[str, Any]:
    """The run's resolved config.yaml as plain data (no validation: plug-ins it imported need not load)."""
    path = run_dir / "config.yaml"
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise TrainguardError(f"{path} cannot be read: {err}") from None
    if not isinstance(cfg, dict):
        raise TrainguardError(f"{path} is not a run config (a YAML mapping)")
    return cfg


def objective_name(objective: Any) -> str:
    return str(objective.get("name", "")) if isinstance(objective, dict) else str(objective)


def resolve_model(path: Path | str) -> tuple[Path, str]:
    """The model folder MODEL names, and a line saying which one was chosen and why.

    A model folder (config.json) is used as is. In a run folder, the policy of the latest stage (in config
    order) whose export exists, preferring RL stages (grpo, ppo), then the others (sft and plug-in
    objectives); reward and cost stages export scorers, never a policy, and are skipped. A stage exports to
    exports/<stage>/, the last one to final/. With no such export, the base model (model.path)."""
    path = Path(path)
    if (path / "config.json").is_file():
        return path, f"model folder {path}"
    if not path.exists():
        raise TrainguardError(f"{path} does not exist")
    if not is_run_folder(path):
        raise TrainguardError(
            f"{path} is neither a model folder (config.json) nor a run folder (manifest.json and config.yaml)"
        )
    cfg = read_run_config(path)
    stages = [s for s in cfg.get("stages") or [] if isinstance(s, dict)]
    candidates = []
    for index, stage in enumerate(stages):
        objective = objective_name(stage.get("objective"))
        if objective in MODEL_OBJECTIVES:
            continue
        folder = path / "final" if index == len(stages) - 1 else path / "exports" / str(stage.get("name"))
        if (folder / "config.json").is_file():
            candidates.append((objective in RL_OBJECTIVES, index, str(stage.get("name")), objective, folder))
    if candidates:
        rl, _, name, objective, folder = max(candidates)
        kind = "RL" if rl else "trained"
        return folder, f"run {path}: evaluating stage {name} ({objective}), its last {kind} stage: {folder}"
    model = cfg.get("model") or {}
    base = model.get("path")
    if base and (Path(base) / "config.json").is_file():
        return Path(base), f"run {path}: no stage has exported a policy; evaluating the base model {base}"
    what = f"the base model is the preset {model.get('preset')!r} (no folder)" if not base else f"{base} is missing"
    raise TrainguardError(
        f"{path}: no stage has exported a policy yet (exports/<stage>/, final/) and {what}; nothing to evaluate"
    )


def run_of(path: Path) -> Path | None:
    """The run folder `path` is, or whose export it is (final/, best/, exports/<stage>/); None for a model
    folder from elsewhere."""
    if is_run_folder(path):
        return path
    if path.name in ("final", "best") and is_run_folder(path.parent):
        return path.parent
    if path.parent.name == "exports" and is_run_folder(path.parent.parent):
        return path.parent.parent
    return None


def trained_on(path: Path | str, tasks: Sequence[str]) -> TrainedOn:
    """Task parameters and training prompts of the run a MODEL belongs to (a run folder or one of its exports),
    for the evaluated `tasks` only (regenerated from the task sources' ids: cheap); nothing for a model folder
    from elsewhere. Sources: the run's data, each stage's own data, and each rollout stage's prompt pool (task,
    start, n_prompts). An environment takes the params of the run's first `episodes` source of it (its training
    seeds lie far below the held-out ones, so none is excluded)."""
    run = run_of(Path(path))
    if run is None:
        return TrainedOn()
    cfg = read_run_config(run)
    data = cfg.get("data") or {}
    pools: list[tuple[str, dict[str, Any], int, int]] = []  # (task, params, start, n)
    env_params: dict[str, dict[str, Any]] = {}

    def add_sources(section: Any) -> None:
        for src in (section or {}).get("sources") or []:
            if isinstance(src, dict) and "task" in src and "n" in src:
                pools.append((src["task"], src.get("params") or {}, int(src.get("start", 0)), int(src["n"])))

    add_sources(data)
    for stage in cfg.get("stages") or []:
        source = stage.get("source") if isinstance(stage, dict) else None
        if isinstance(source, dict):
            add_sources(source.get("data"))
            if "task" in source and "n_prompts" in source:
                pools.append(
                    (source["task"], source.get("params") or {}, int(source.get("start", 0)), source["n_prompts"])
                )
            if source.get("env") in tasks:
                env_params.setdefault(str(source["env"]), dict(source.get("params") or {}))
    out = TrainedOn(params=env_params, chat=bool(data.get("chat", False)))
    for task, params, start, n in pools:
        if task not in tasks or task not in TASKS:
            continue
        out.params.setdefault(task, dict(params))
        built = build_task(task, params)
        out.prompts.update(built.instance(i).prompt for i in range(start, start + int(n)))
    return out


def load_policy(folder: Path) -> tuple[Any, Any]:
    """(model, tokenizer) through AutoModelForCausalLM/AutoTokenizer, offline; a folder that does not load
    fails with its path and the reason."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)
    except Exception as err:  # transformers raises OSError, ValueError, KeyError, ... depending on the cause
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise TrainguardError(f"cannot load the model in {folder}: {reason}") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token  # batched left-padded generation needs a pad id
    return model.eval(), tokenizer
