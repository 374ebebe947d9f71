"""CLI verbs for evaluation: `eval` (held-out scores with intervals) and `compare` (the Affine rule and the Pareto
frontier over saved results). Heavy modules load inside the commands, so `trainguard --help` stays fast."""

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from trainguard.errors import ConfigError, TrainguardError
from trainguard.ui.console import console, err_console, fail, quiet_libraries


def parse_task_names(text: str) -> list[str]:
    """Our names of --tasks' tasks and environments (the Affine guide's `affine:sat`, `agentgym:webshop` too)."""
    from trainguard.tasks.aliases import canonical_list

    names = canonical_list(name for name in text.split(",") if name.strip())
    if not names:
        raise ConfigError("--tasks names no task (e.g. --tasks sat,abd,ded or --tasks webshop,textcraft)")
    return names


def read_baseline(path: Path) -> dict[str, Any]:
    """A saved `trainguard eval` result, checked before the (long) evaluation starts."""
    from trainguard.eval.pareto import check_result

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise TrainguardError(f"--baseline {path} cannot be read ({err.strerror or err})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise TrainguardError(f"--baseline {path} is not JSON ({err})") from None
    reason = check_result(data)
    if reason is not None:
        raise TrainguardError(f"--baseline {path}: {reason}")
    return data


def write_outputs(json_out: Path, result: dict[str, Any], samples_out: Path | None, rows: list[dict[str, Any]]) -> None:
    from trainguard.atomic import atomic_write_json, atomic_write_text

    try:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(json_out, result)
        if samples_out is not None:
            samples_out.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(samples_out, "".join(json.dumps(row) + "\n" for row in rows))
    except OSError as err:
        raise TrainguardError(f"cannot write {err.filename or json_out}: {err.strerror or err}") from None


def evaluate_with_bar(policy: Any, tokenizer: Any, specs: list[Any], n: int, **options: Any) -> dict[str, Any]:
    """`runner.evaluate` under a progress bar over the samples (shown on a terminal only)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from trainguard.eval.runner import evaluate

    columns = (TextColumn("[bold]eval"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, disable=not console.is_terminal) as bar:
        job = bar.add_task("eval", total=None)
        progress = lambda done, total: bar.update(job, completed=done, total=total)  # noqa: E731
        return evaluate(policy, tokenizer, specs, n, progress=progress, **options)


def eval_command(
    model: Annotated[Path, typer.Argument(help="Exported model folder, or a run folder (its last trained policy).")],
    tasks: Annotated[
        str,
        typer.Option(
            "--tasks",
            help="Comma-separated task or environment names, e.g. sat,abd,ded or webshop,textcraft (affine:sat, "
            "agentgym:webshop accepted). An environment plays --n episodes of 10 rounds at temperature 0.7.",
        ),
    ],
    json_out: Annotated[Path, typer.Option("--json", help="Write the per-task and aggregate results here.")],
    n: Annotated[int, typer.Option("--n", min=1, help="Held-out instances (episodes) per task (environment).")] = 200,
    seed: Annotated[
        int, typer.Option(min=0, help="Picks the held-out set (ids from 1e9 + seed·1e7); 0 is training's own.")
    ] = 0,
    samples: Annotated[
        Path | None,
        typer.Option(
            "--samples",
            help="Write every sample as JSONL: task, id, prompt, response, score (an environment's: its episode "
            "record env, seed, turns, return, success, with task and score).",
        ),
    ] = None,
    baseline: Annotated[
        Path | None, typer.Option("--baseline", help="An earlier result (JSON): print the differences.")
    ] = None,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Greedy generation budget per answer.")] = 64,
    batch_size: Annotated[int, typer.Option(min=1, help="Prompts generated per batch.")] = 64,
) -> None:
    """Score a model on held-out task instances, with 80% intervals per task and overall.

    Per task: n, sum, mean, std, median, accuracy, success rate and the Jeffreys interval (ci80); then their
    sample-weighted aggregate. An environment's score is episode success; its mean return and rounds are added."""
    from trainguard.eval.report import eval_table
    from trainguard.eval.runner import build_tasks, load_policy, resolve_model, trained_on

    quiet_libraries()
    try:
        names = parse_task_names(tasks)
        build_tasks(names)  # unknown names fail before the model loads
        old = read_baseline(baseline) if baseline is not None else None
        folder, note = resolve_model(model)
        console.print(escape(note), highlight=False)
        seen = trained_on(model, names)
        specs = [(name, seen.params.get(name, {})) for name in names]
        policy, tokenizer = load_policy(folder)
        rows: list[dict[str, Any]] = []
        result = evaluate_with_bar(
            policy,
            tokenizer,
            specs,
            n,
            seed=seed,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            chat=seen.chat,
            exclude_prompts=seen.prompts,
            samples=rows,
        )
        result = {"model": str(folder), **result}
        write_outputs(json_out, result, samples, rows)
    except TrainguardError as err:
        fail(err)
    console.print(eval_table(result, old))
    for name, row in result["tasks"].items():
        if "return_mean" in row:
            line = f"{name}: episode success is the score; mean return {row['return_mean']:.3f}, "
            console.print(escape(line + f"mean rounds {row['rounds_mean']:.2f}"), highlight=False)
    wrote = f"wrote {json_out}" + (f" and {samples}" if samples is not None else "")
    console.print(escape(wrote), highlight=False)


def compare_command(
    results: Annotated[list[Path], typer.Argument(help="Evaluation results (JSON), earliest first: order matters.")],
    json_: Annotated[bool, typer.Option("--json", help="Print the comparison as JSON instead of a table.")] = False,
    min_samples: Annotated[
        int, typer.Option("--min-samples", min=0, help="A model with fewer samples on a task loses it.")
    ] = 0,
) -> None:
    """Compare saved eval results: per-task winners, dominance and the Pareto frontier.

    Per task, the Affine rule picks a winner from intervals recomputed from n and sum: an earlier model keeps
    the task unless a later one's lower bound is above its upper bound. Names are the file stems."""
    from trainguard.eval.pareto import compare, load_results
    from trainguard.eval.report import compare_table

    loaded, problems = load_results(results)
    for path, reason in problems.items():
        err_console.print(f"[yellow]warning:[/] {escape(path)}: {escape(reason)}; skipped", highlight=False)
    if len(loaded) < 2:
        fail(TrainguardError(f"compare needs at least two evaluation results; {len(loaded)} of {len(results)} usable"))
    comparison = compare(loaded, min_samples)
    if not comparison["shared"]:
        having = "; ".join(f"{name}: {', '.join(tasks['tasks'])}" for name, tasks in loaded.items())
        fail(TrainguardError(f"no task is in every result ({having})"))
    for name, extra in comparison["unshared"].items():
        message = f"{name}: not compared (not in every result): {', '.join(extra)}"
        err_console.print(f"[yellow]note:[/] {escape(message)}", highlight=False)
    comparison["skipped"] = {**problems, **comparison["skipped"]}
    if json_:
        sys.stdout.write(json.dumps(comparison, indent=2) + "\n")
    else:
        console.print(compare_table(comparison))
