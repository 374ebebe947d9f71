"""The `trainguard` command: a fixed set of verbs; every knob lives in the config file."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is ever downloaded at run time
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import json
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from trainguard import __version__, api
from trainguard.cli_eval import compare_command, eval_command
from trainguard.cli_tasks import data_app, sandbox_app, tasks_app
from trainguard.errors import TrainguardError
from trainguard.ui.console import console, err_console, fail, quiet_libraries

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Train language models through multi-stage pipelines that watch themselves.",
)
config_app = typer.Typer(no_args_is_help=True, help="Validate a run file or print its JSON schema.")
app.add_typer(config_app, name="config")
faults_app = typer.Typer(no_args_is_help=True, help="Fault injection: measure how the guard catches failures.")
app.add_typer(faults_app, name="faults")
app.add_typer(tasks_app, name="tasks")
app.add_typer(data_app, name="data")
app.add_typer(sandbox_app, name="sandbox")

SetOption = Annotated[list[str], typer.Option("--set", help="Override a config key: KEY.PATH=VALUE (YAML value).")]


def interrupted(stop: KeyboardInterrupt) -> NoReturn:
    """Ctrl-C or SIGTERM: say how to continue and exit 128 + the signal's number (130, 143)."""
    run_dir = getattr(stop, "run_dir", None)
    err_console.print(f"interrupted; continue with: trainguard resume {run_dir}" if run_dir else "interrupted")
    raise typer.Exit(getattr(stop, "exit_code", 130))


def show_version(value: bool) -> None:
    if value:
        sys.stdout.write(f"trainguard {__version__}\n")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=show_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    pass


@app.command()
def run(
    config: Annotated[Path, typer.Argument(help="Run file (YAML).")],
    resume: Annotated[bool, typer.Option(help="Continue the run folder from its newest complete checkpoint.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Delete an existing run folder of the same name first.")] = False,
    set_: SetOption = [],  # noqa: B006  (typer reads the default)
) -> None:
    """Train every stage of a run file inside runs/<name>/."""
    try:
        quiet_libraries()
        api.run(config, overwrite=overwrite, resume=resume, quiet=False, overrides=set_)
    except TrainguardError as err:
        fail(err)
    except KeyboardInterrupt as stop:
        interrupted(stop)


@app.command()
def resume(run_dir: Annotated[Path, typer.Argument(help="Run folder to continue.")]) -> None:
    """Continue a run from its newest complete checkpoint (same as `run CONFIG --resume`)."""
    try:
        quiet_libraries()
        api.resume(run_dir, quiet=False)
    except TrainguardError as err:
        fail(err)
    except KeyboardInterrupt as stop:
        interrupted(stop)


@config_app.command("check")
def config_check(
    config: Annotated[Path, typer.Argument(help="Run file (YAML).")],
    set_: SetOption = [],  # noqa: B006
) -> None:
    """Validate a run file and print it with every default filled in."""
    from trainguard.config import load_config

    try:
        cfg = load_config(config, set_)
    except TrainguardError as err:
        fail(err)
    sys.stdout.write(cfg.to_yaml())


@config_app.command("schema")
def config_schema(
    markdown: Annotated[bool, typer.Option(help="Print the README's config reference table instead.")] = False,
) -> None:
    """Print the JSON schema of run files (for editors and validation)."""
    from trainguard.config import RunConfig
    from trainguard.config_docs import config_reference

    text = config_reference() if markdown else json.dumps(RunConfig.model_json_schema(), indent=2) + "\n"
    sys.stdout.write(text)


@app.command()
def export(
    run_dir: Annotated[Path, typer.Argument(help="Run folder.")],
    csv: Annotated[Path, typer.Option("--csv", help="Write all metrics to this CSV file.")],
) -> None:
    """Export a run's metrics."""
    from trainguard.track.sinks import export_csv

    db = run_dir / "metrics.db"
    if not db.is_file():
        fail(TrainguardError(f"{run_dir} has no metrics.db"))
    rows = export_csv(db, csv)
    console.print(f"wrote {rows} rows to {csv}")


@app.command()
def inspect(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint folder (runs/NAME/checkpoints/step-N).")],
) -> None:
    """Show what a checkpoint holds and verify every file's sha256."""
    from trainguard.inspect import describe_checkpoint

    try:
        ok = describe_checkpoint(checkpoint, console)
    except TrainguardError as err:
        fail(err)
    raise typer.Exit(0 if ok else 1)


@faults_app.command("bench")
def faults_bench(
    out: Annotated[Path | None, typer.Option("--out", help="Write every scenario's numbers as JSON.")] = None,
    steps: Annotated[int, typer.Option(help="Steps per run.")] = 160,
    clean_seeds: Annotated[int, typer.Option(help="Clean runs (seeds 0..N-1).")] = 10,
) -> None:
    """Every fault x 3 onsets x 2 magnitudes plus clean runs: detection, latency, action, recovery."""
    from trainguard.atomic import atomic_write_json
    from trainguard.fault_bench import run_bench
    from trainguard.ui.bench_table import bench_table

    quiet_libraries()
    result = run_bench(steps, clean_seeds, progress=lambda line: console.print(line, highlight=False))
    console.print(bench_table(result))
    if out is not None:
        atomic_write_json(out, result)


@app.command()
def monitor(
    run_dir: Annotated[Path, typer.Argument(help="Run folder (may be training right now).")],
    once: Annotated[bool, typer.Option(help="Print one snapshot and exit.")] = False,
    plot: Annotated[
        Path | None,
        typer.Option(help="Write loss, grad norm, LR, RL reward and each constraint's λ with alert markers (PNG)."),
    ] = None,
    export: Annotated[Path | None, typer.Option("--export", help="Write all metrics as CSV.")] = None,
    interval: Annotated[float, typer.Option(help="Seconds between refreshes.")] = 2.0,
) -> None:
    """Watch a run: stage, step, ETA, loss and grad-norm sparklines, LR, latest alerts and actions."""
    from trainguard.track.sinks import export_csv
    from trainguard.ui import monitor as view

    if not (run_dir / "metrics.db").is_file():
        fail(TrainguardError(f"{run_dir} is not a run folder (no metrics.db)"))
    if plot is not None:
        view.plot(run_dir, plot)
        console.print(f"wrote {plot}")
    if export is not None:
        console.print(f"wrote {export_csv(run_dir / 'metrics.db', export)} rows to {export}")
    if once or (plot is None and export is None):
        view.watch(run_dir, console, interval, once=once)


app.command("eval")(eval_command)
app.command("compare")(compare_command)
