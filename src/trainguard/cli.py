"""The `trainguard` command: a fixed set of verbs; every knob lives in the config file."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is ever downloaded at run time
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from trainguard.cli_tasks import data_app, sandbox_app, tasks_app
from trainguard.errors import TrainguardError
from trainguard.ui.console import console, err_console, fail

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


def quiet_libraries() -> None:
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def config_diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted paths where two parsed configs differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [p for k in sorted(set(a) | set(b)) for p in config_diff(a.get(k), b.get(k), f"{prefix}{k}.")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [p for i, (x, y) in enumerate(zip(a, b, strict=True)) for p in config_diff(x, y, f"{prefix}{i}.")]
    return [] if a == b else [prefix.rstrip(".")]


def prepare(cfg: Any) -> Any:
    from trainguard.engine.pipeline import Pipeline

    return Pipeline(cfg, console)


def execute(pipeline: Any, run: Any, resume: bool) -> None:
    from trainguard.engine.outcome import GuardStop

    status = "failed"
    try:
        pipeline.attach(run)
        pipeline.run_all(resume=resume)
        status = "completed"
    except GuardStop:
        status = "stopped"
        raise
    except KeyboardInterrupt:
        status = "interrupted"
        err_console.print(f"interrupted; continue with: trainguard resume {run.path}")
        raise typer.Exit(130) from None
    finally:
        if resume:
            manifest = run.manifest()
            run.update_manifest(resumes=[*manifest.get("resumes", []), {"pid": os.getpid()}])
        run.close(status=status)


@app.command()
def run(
    config: Annotated[Path, typer.Argument(help="Run file (YAML).")],
    resume: Annotated[bool, typer.Option(help="Continue the run folder from its newest complete checkpoint.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Delete an existing run folder of the same name first.")] = False,
    set_: SetOption = [],  # noqa: B006  (typer reads the default)
) -> None:
    """Train every stage of a run file inside runs/<name>/."""
    from trainguard.config import load_config
    from trainguard.run import RunDir

    try:
        quiet_libraries()
        cfg = load_config(config, set_)
        if resume and (cfg.run_dir / "manifest.json").is_file():
            saved = load_config(cfg.run_dir / "config.yaml")
            changed = config_diff(saved.model_dump(mode="json"), cfg.model_dump(mode="json"))
            if changed:
                raise TrainguardError(
                    f"{config} differs from {cfg.run_dir / 'config.yaml'} at {', '.join(changed)}; "
                    "resume needs the same config (or use --overwrite to start over)"
                )
            _resume(cfg.run_dir)
        else:
            RunDir.check_new(cfg, overwrite)
            pipeline = prepare(cfg)
            execute(pipeline, RunDir.create(cfg, overwrite), resume=False)
    except TrainguardError as err:
        fail(err)


def _resume(path: Path) -> None:
    from trainguard.config import load_config
    from trainguard.run import RunDir

    run_dir = RunDir.reopen(path)
    try:
        if run_dir.manifest().get("status") == "completed":
            console.print(f"{run_dir.path} is already complete; nothing to do")
            run_dir.close()
            return
        pipeline = prepare(load_config(run_dir.config_path))
    except BaseException:
        run_dir.close()
        raise
    execute(pipeline, run_dir, resume=True)


@app.command()
def resume(run_dir: Annotated[Path, typer.Argument(help="Run folder to continue.")]) -> None:
    """Continue a run from its newest complete checkpoint (same as `run CONFIG --resume`)."""
    try:
        quiet_libraries()
        _resume(run_dir)
    except TrainguardError as err:
        fail(err)


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
    plot: Annotated[Path | None, typer.Option(help="Write loss, grad norm and LR with alert markers (PNG).")] = None,
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
