"""CLI verbs for tasks, the data they make and the sandbox that checks them: `tasks`, `data`, `sandbox`."""

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


def build(name: str, params: dict[str, Any]) -> Any:
    """A task from its name and parameters, with errors that name the field and the allowed values."""
    from pydantic import ValidationError

    from trainguard.config import format_validation_error
    from trainguard.tasks import build_task

    try:
        return build_task(name, params)
    except KeyError as err:
        raise ConfigError(str(err.args[0])) from None
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, f"task {name}")) from None


@tasks_app.command("baseline")
def tasks_baseline(
    task: Annotated[str, typer.Argument(help="Task name, e.g. sat.")],
    n: Annotated[int, typer.Option(help="Instances to score.")] = 1000,
    param: ParamOption = [],  # noqa: B006
) -> None:
    """Pass rates of answers that need no thought (all-True for SAT, a constant or an echo for DED, the output
    as input for ABD), overall and in the worst family or difficulty: they must stay low."""
    from collections import Counter

    from rich.table import Table

    try:
        built = build(task, parse_params(param, task, several=False))
        rng = random.Random(0)
        passed: dict[str, Counter] = {}
        sizes: Counter = Counter()
        for id in range(n):
            inst = built.instance(id)
            group = str(inst.meta.get("family") or inst.meta.get("difficulty") or "all")
            sizes[group] += 1
            for strategy, answer in built.baselines(inst, rng).items():
                passed.setdefault(strategy, Counter())[group] += int(built.score(inst, answer).value == 1.0)
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


@data_app.command("collect")
def data_collect(
    tasks: Annotated[str, typer.Option(help="Comma-separated task names, e.g. sat,abd,ded.")],
    n: Annotated[int, typer.Option(help="Rows in all, tasks interleaved.")],
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
        Path | None, typer.Option(help="Model folder that answers and judges (constitution, critique).")
    ] = None,
    param: ParamOption = [],  # noqa: B006
) -> None:
    """Write SFT records {id, task, prompt, completion} (or pairs) whose answers were verified."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from trainguard.data.ai_pairs import collect_ai_pairs
    from trainguard.data.collect import collect
    from trainguard.sandbox import shared_pool

    try:
        names = [t.strip() for t in tasks.split(",") if t.strip()]
        if not names or n < 1 or not 0 <= seed < 100 or workers < 1:
            raise ConfigError("need --tasks with at least one name, --n >= 1, 0 <= --seed < 100, --workers >= 1")
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

    from trainguard.config import format_validation_error
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
