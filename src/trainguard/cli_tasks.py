"""CLI verbs for tasks, the data they make and the sandbox that checks them: `tasks`, `data`, `sandbox`.
Text environments are named like tasks (and the Affine guide's `affine:sat`, `agentgym:webshop` spellings)."""

import json
import random
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from trainguard.errors import ConfigError, DataError, TrainguardError
from trainguard.ui.console import console, err_console, fail

tasks_app = typer.Typer(no_args_is_help=True, help="Verifiable tasks: inspect them and measure trivial baselines.")
data_app = typer.Typer(no_args_is_help=True, help="Make training data from tasks.")
sandbox_app = typer.Typer(no_args_is_help=True, help="Run an untrusted Python program in the sandbox.")

ParamOption = Annotated[
    list[str], typer.Option("--param", help="Task parameter KEY=VALUE (YAML value); TASK.KEY=VALUE with several.")
]


def parse_params(items: list[str], task: str, several: bool) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--param {item!r}: expected KEY=VALUE")
        owner, dot, name = key.partition(".")
        if several and not dot:
            raise ConfigError(f"--param {item!r}: with several tasks, name the task: TASK.KEY=VALUE")
        if not several or owner == task:
            params[name if several else key] = yaml.safe_load(value)
    return params


def env_spec(name: str, params: dict[str, Any]) -> Any:
    """A collectable environment (name and checked parameters), with errors that name the bad field."""
    from pydantic import ValidationError

    from trainguard.config_tree import format_validation_error
    from trainguard.data.collect import EnvSpec
    from trainguard.tasks.envs import ENVS

    try:
        ENVS.get(name).Config.model_validate(params)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, f"environment {name}")) from None
    return EnvSpec(name, params)


def eos_text(model: Path | None) -> str:
    """The EOS token's text in `model`'s tokenizer (the presets' byte tokenizer's without one)."""
    from trainguard.tasks.envs.play import DEFAULT_EOS

    if model is None:
        return DEFAULT_EOS
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model, local_files_only=True)
    except Exception as err:  # transformers raises OSError, ValueError, ... depending on the cause
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"cannot load the tokenizer in {model}: {reason}") from None
    if tokenizer.eos_token is None:
        raise DataError(f"the tokenizer in {model} has no EOS token to end each action with")
    return str(tokenizer.eos_token)


def build(name: str, params: dict[str, Any]) -> Any:
    """A task from its name and parameters, with errors that name the field and the allowed values."""
    from pydantic import ValidationError

    from trainguard.config_tree import format_validation_error
    from trainguard.tasks import build_task

    try:
        return build_task(name, params)
    except KeyError as err:
        raise ConfigError(str(err.args[0])) from None
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, f"task {name}")) from None


@tasks_app.command("baseline")
def tasks_baseline(
    task: Annotated[str, typer.Argument(help="Task or environment name, e.g. sat or textcraft.")],
    n: Annotated[int, typer.Option(help="Instances to score (episodes to play).")] = 1000,
    param: ParamOption = [],  # noqa: B006
) -> None:
    """Pass rates of answers that need no thought (all-True for SAT, a constant or an echo for DED, the output
    as input for ABD), overall and in the worst family or difficulty: they must stay low. For an environment:
    a uniformly random valid action each round, over seeds 0..n-1 (success, return, rounds, ci80)."""
    from collections import Counter

    from rich.table import Table

    from trainguard.tasks.aliases import canonical, is_env

    try:
        task = canonical(task)
        if is_env(task):
            return env_baseline(task, n, parse_params(param, task, several=False))
        built = build(task, parse_params(param, task, several=False))
        rng = random.Random(0)
        passed: dict[str, Counter] = {}
        sizes: Counter = Counter()
        asked: list[tuple[str, str, Any, str]] = []  # (strategy, group, instance, answer), scored in one batch
        for id in range(n):
            inst = built.instance(id)
            group = str(inst.meta.get("family") or inst.meta.get("difficulty") or "all")
            sizes[group] += 1
            asked += [(strategy, group, inst, answer) for strategy, answer in built.baselines(inst, rng).items()]
        scores = built.score_many([a[2] for a in asked], [a[3] for a in asked])
        for (strategy, group, _, _), score in zip(asked, scores, strict=True):
            passed.setdefault(strategy, Counter())[group] += int(score.value == 1.0)
        if not passed:
            raise ConfigError(f"task {task!r} defines no trivial baselines")
    except TrainguardError as err:
        fail(err)
    table = Table(title=f"{task}: trivial answers over {n} instances")
    for column in ("answer", "passed", "pass rate", "worst group"):
        table.add_column(column, justify="left" if column in ("answer", "worst group") else "right")
    for strategy, counts in passed.items():
        rate, group = max((counts[g] / sizes[g], g) for g in sizes)
        table.add_row(strategy, str(sum(counts.values())), f"{sum(counts.values()) / n:.1%}", f"{group} {rate:.1%}")
    console.print(table)


def env_baseline(env: str, n: int, params: dict[str, Any]) -> None:
    """Print the random-valid-action baseline of `env` as a one-row table."""
    from rich.table import Table

    from trainguard.tasks.envs.play import random_baseline

    spec = env_spec(env, params)
    result = random_baseline(env, n, **spec.params)
    table = Table(title=f"{env}: a random valid action each round, {n} episodes (seeds 0..{n - 1})")
    for column in ("policy", "success", "ci80", "mean return", "mean rounds"):
        table.add_column(column, justify="left" if column == "policy" else "right")
    lo, hi = result["ci80"]
    success = f"{result['successes']} ({result['success_rate']:.1%})"
    means = f"{result['return_mean']:.3f}", f"{result['rounds_mean']:.2f}"
    table.add_row("random valid", success, f"[{lo:.3f}, {hi:.3f}]", *means)
    console.print(table)


@data_app.command("collect")
def data_collect(
    tasks: Annotated[
        str,
        typer.Option(
            help="Comma-separated task names, e.g. sat,abd,ded, or environment names, e.g. textcraft,alfworld "
            "(their scripted expert's solved episodes; not mixed with tasks in one file)."
        ),
    ],
    n: Annotated[int, typer.Option(help="Rows in all, tasks interleaved (for environments: episodes).")],
    out: Annotated[Path, typer.Option(help="JSONL file to write (appended to; ids already there are skipped).")],
    seed: Annotated[int, typer.Option(help="Which instances: seed s uses ids from s * 10^7.")] = 0,
    workers: Annotated[int, typer.Option(help="Sandbox workers and builder threads.")] = 2,
    pairs: Annotated[bool, typer.Option(help="Write preference pairs instead of SFT records.")] = False,
    source: Annotated[
        str,
        typer.Option(
            help="Who decides a pair: verifier (the reference over a verified-wrong answer), constitution (two "
            "samples of --model, compared by it against the principles, rules deciding where scores differ) or "
            "critique (--model's answer revised after a critique against the principles: revision preferred)."
        ),
    ] = "verifier",
    model: Annotated[
        Path | None,
        typer.Option(
            help="Model folder that answers and judges (constitution, critique); for environments, whose "
            "tokenizer's EOS text separates the turns in SFT prompts (default: the presets' <eos>)."
        ),
    ] = None,
    episodes: Annotated[
        bool, typer.Option(help="Environments: write episode records {env, seed, turns, return, success} instead.")
    ] = False,
    param: ParamOption = [],  # noqa: B006
) -> None:
    """Write SFT records {id, task, prompt, completion} (or pairs) whose answers were verified. From environments:
    one record per expert action, its prompt the transcript so far as the RL stage renders it (with --model, its
    tokenizer's EOS text between turns)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from trainguard.data.ai_pairs import collect_ai_pairs
    from trainguard.data.collect import collect
    from trainguard.sandbox import shared_pool
    from trainguard.tasks.aliases import canonical_list, is_env

    try:
        names = canonical_list(t for t in tasks.split(",") if t.strip())
        if not names or n < 1 or not 0 <= seed < 100 or workers < 1:
            raise ConfigError("need --tasks with at least one name, --n >= 1, 0 <= --seed < 100, --workers >= 1")
        env_names = [name for name in names if is_env(name)]
        if env_names:
            if len(env_names) < len(names):
                raise ConfigError("--tasks mixes tasks and environments: collect each kind into its own --out file")
            if pairs or source != "verifier":
                raise ConfigError("environments give expert demonstrations: no --pairs or --source")
            return collect_env_episodes(names, n, out, seed, episodes, model, param)
        if episodes:
            raise ConfigError("--episodes needs environments in --tasks (e.g. textcraft,alfworld)")
        if source not in ("verifier", "constitution", "critique"):
            raise ConfigError(f"--source {source!r}: allowed: verifier, constitution, critique")
        if source != "verifier" and (not pairs or model is None):
            raise ConfigError(f"--source {source} makes preference pairs with a model: add --pairs and --model DIR")
        built = [build(name, parse_params(param, name, several=True)) for name in names]
        if {"abd", "ded"} & set(names):
            shared_pool(workers)
        columns = (TextColumn("collect"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, console=console, transient=False) as bar:
            job = bar.add_task("collect", total=n)
            if source == "verifier":
                report = collect(built, n, out, seed, workers, pairs, on_row=lambda: bar.advance(job))
            else:
                assert model is not None
                report = collect_ai_pairs(built, n, out, model, source, seed, on_row=lambda: bar.advance(job))
    except TrainguardError as err:
        fail(err)
    except OSError as err:
        fail(DataError(f"cannot write {out}: {err.strerror}"))
    console.print(report.summary(), highlight=False)


def collect_env_episodes(
    names: list[str], n: int, out: Path, seed: int, episodes: bool, model: Path | None, param: list[str]
) -> None:
    """`data collect` for environments: the expert's solved episodes, with a progress bar and a summary."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from trainguard.data.collect import collect_episodes

    specs = [env_spec(name, parse_params(param, name, several=True)) for name in names]
    eos = eos_text(model) if not episodes else ""
    columns = (TextColumn("collect"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    try:
        with Progress(*columns, console=console, transient=False) as bar:
            job = bar.add_task("collect", total=n)
            report = collect_episodes(specs, n, out, seed, episodes, eos, on_row=lambda: bar.advance(job))
    except OSError as err:
        raise DataError(f"cannot write {out}: {err.strerror}") from None
    console.print(report.summary().replace("written", "episodes written", 1), highlight=False)


@sandbox_app.command("exec")
def sandbox_exec(
    file: Annotated[Path, typer.Argument(help="Python program to run.")],
    stdin: Annotated[Path | None, typer.Option(help="File fed to the program's standard input.")] = None,
    timeout: Annotated[float, typer.Option(help="Wall-clock seconds.")] = 5.0,
    memory: Annotated[int, typer.Option(help="Memory cap in MiB.")] = 512,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as one JSON object.")] = False,
    isolation: Annotated[str, typer.Option(help="auto, bwrap (fail without it) or rlimits.")] = "auto",
) -> None:
    """Run FILE isolated and report status (ok, error, timeout, memory, output_limit, killed) and its output."""
    from pydantic import ValidationError

    from trainguard.config_tree import format_validation_error
    from trainguard.sandbox import Limits, SandboxPool, SandboxUnavailable

    try:
        if isolation not in ("auto", "bwrap", "rlimits"):
            raise ConfigError(f"--isolation {isolation!r}: allowed: auto, bwrap, rlimits")
        source = file.read_text(encoding="utf-8", errors="replace")
        given = stdin.read_text(encoding="utf-8", errors="replace") if stdin else ""
        try:
            limits = Limits(timeout=timeout, memory_mb=memory)
        except ValidationError as err:
            raise ConfigError(format_validation_error(err, "sandbox exec")) from None
        with SandboxPool(workers=1, limits=limits, isolation=isolation) as pool:
            result = pool.run(source, given)
    except OSError as err:
        fail(DataError(f"cannot read {err.filename}: {err.strerror}"))
    except SandboxUnavailable as err:
        fail(TrainguardError(str(err)))
    except TrainguardError as err:
        fail(err)
    if as_json:
        print(json.dumps(result.to_dict()))
        raise typer.Exit(0 if result.ok else 1)  # the same status as without --json
    print(result.stdout, end="")
    typer.echo(result.stderr, err=True, nl=False)
    err_console.print(
        f"status {result.status} (return code {result.returncode}, {result.wall:.3f} s wall, {result.cpu:.3f} s cpu)",
        highlight=False,
    )
    raise typer.Exit(0 if result.ok else 1)
