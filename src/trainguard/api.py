"""trainguard from Python (notebooks, scripts): the functions the CLI calls, returning results instead of exit codes.

Heavy modules (torch, transformers) are imported inside the functions, so `import trainguard` stays cheap.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainguard.errors import RunDirError
from trainguard.track.summary import StageSummary, stage_summaries

if TYPE_CHECKING:
    from rich.console import Console

    from trainguard.config import RunConfig
    from trainguard.engine.pipeline import Pipeline
    from trainguard.rundir import RunDir

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class RunResult:
    """What a run left behind: its folder, status, stages, held-out accuracy and model folders."""

    path: Path
    status: str  # the manifest's status: "completed" (a guard stop or an interrupt raises instead)
    stages: list[StageSummary]  # per stage: steps, seconds, tokens_per_s, losses, rollbacks, actions, last
    accuracy_before: float | None  # held-out task accuracy (eval.task), None without one
    accuracy_after: float | None
    final: Path | None  # final/: AutoModelForCausalLM/AutoTokenizer.from_pretrained
    best: Path | None  # best/: the best eval metric of the last stage that wrote one


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped a run; its folder is marked `interrupted` and `resume` continues it.

    A KeyboardInterrupt, so a script or notebook stops as it would on any Ctrl-C."""

    def __init__(self, run_dir: Path | None, signum: int = signal.SIGINT) -> None:
        hint = f"; continue with: trainguard resume {run_dir}" if run_dir is not None else ""
        super().__init__(f"interrupted{hint}")
        self.run_dir, self.signum = run_dir, signum

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process ended by a signal: 130 for SIGINT, 143 for SIGTERM."""
        return 128 + self.signum


# -- configs ---------------------------------------------------------------------------------------------
def load_config(source: RunConfig | Mapping[str, Any] | PathLike, overrides: Iterable[str] | None = None) -> RunConfig:
    """A validated run config from a run file or a dict shaped like its YAML; `overrides` are `--set` strings
    (`KEY.PATH=VALUE`, the value read as YAML). Bad input raises ConfigError with the CLI's messages."""
    from trainguard import config
    from trainguard.config_tree import apply_overrides

    overrides = list(overrides or [])
    if isinstance(source, config.RunConfig):
        if not overrides:
            return source
        source = source.model_dump(mode="json")
    if isinstance(source, Mapping):
        tree = copy.deepcopy(dict(source))  # parse_config rewrites `imports`; the caller's dict stays as given
        apply_overrides(tree, overrides)
        return config.parse_config(tree, "config", Path.cwd())
    return config.load_config(Path(source), overrides)


def config_diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted paths where two parsed configs differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [p for k in sorted(set(a) | set(b)) for p in config_diff(a.get(k), b.get(k), f"{prefix}{k}.")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [p for i, (x, y) in enumerate(zip(a, b, strict=True)) for p in config_diff(x, y, f"{prefix}{i}.")]
    return [] if a == b else [prefix.rstrip(".")]


# -- training --------------------------------------------------------------------------------------------
def run(
    config: RunConfig | Mapping[str, Any] | PathLike,
    overwrite: bool = False,
    resume: bool = False,
    quiet: bool = True,
    overrides: Iterable[str] | None = None,
) -> RunResult:
    """Train every stage in runs/<name>/, as `trainguard run` does (it calls this).

    `resume` continues an existing folder (whose config must be the same, except a longer `max_steps` for
    the last stage: that extends a finished run, its schedule recomputed over the new length); a guard stop
    raises GuardStop (guard_report.json says why); Ctrl-C or SIGTERM raise Interrupted. `quiet` prints
    nothing: everything is still recorded in the run folder."""
    from trainguard import ranks
    from trainguard.rundir import RunDir

    cfg = load_config(config, overrides)
    console = _console(quiet or ranks.launched_rank() > 0)  # one process speaks
    with _sigterm_interrupts(), _quiet_transformers(), _torch_settings_restored():
        if resume and (cfg.run_dir / "manifest.json").is_file():
            saved = load_config(cfg.run_dir / "config.yaml")
            changed = config_diff(saved.model_dump(mode="json"), cfg.model_dump(mode="json"))
            extends = bool(changed) and _extends(saved, cfg, changed)
            if changed and not extends:
                source = config if isinstance(config, str | os.PathLike) else "the config"
                raise RunDirError(
                    f"{source} differs from {cfg.run_dir / 'config.yaml'} at {', '.join(changed)}; "
                    "resume needs the same config, except a longer max_steps for the last stage (or use "
                    "--overwrite to start over)"
                )
            return _resume(cfg.run_dir, console, extend_to=cfg if extends else None)
        if ranks.launched_rank() == 0:
            RunDir.check_new(cfg, overwrite)
        pipeline = _pipeline(cfg, console)  # with many processes, its Accelerator joins them here
        return _execute(pipeline, _create(cfg, overwrite), resume=False)


def resume(run_dir: PathLike | RunResult, quiet: bool = True) -> RunResult:
    """Continue a run from its newest complete checkpoint, as `trainguard resume` does; a run that is already
    complete is left alone and summarised from its metrics.db."""
    from trainguard import ranks

    with _sigterm_interrupts(), _quiet_transformers(), _torch_settings_restored():
        return _resume(_folder(run_dir), _console(quiet or ranks.launched_rank() > 0))


def _create(cfg: RunConfig, overwrite: bool) -> RunDir:
    """Rank 0 makes the run folder; each other process, once it exists, its own corner of it."""
    from trainguard import ranks
    from trainguard.rundir import RunDir

    run_dir = RunDir.create(cfg, overwrite) if ranks.is_main() else None
    if run_dir is not None:
        run_dir.update_manifest(world_size=ranks.world_size())
    ranks.barrier()
    return run_dir or RunDir.for_rank(cfg.run_dir, ranks.rank())


def _extends(saved: RunConfig, cfg: RunConfig, changed: list[str]) -> bool:
    """Whether the only change is more steps for the last stage: training it longer, not a different run. A
    warm-up derived from the stage's length (a preset's default) moves with it: the saved one is kept, since
    the run has warmed up already."""
    last = len(cfg.stages) - 1
    old, new = saved.stages[-1].max_steps, cfg.stages[-1].max_steps
    allowed = {f"stages.{last}.max_steps", f"stages.{last}.schedule.warmup_steps"}
    if not (set(changed) <= allowed and old is not None and new is not None and new > old):
        return False
    cfg.stages[-1].schedule.warmup_steps = saved.stages[-1].schedule.warmup_steps
    return True


def _resume(path: Path, console: Console, extend_to: RunConfig | None = None) -> RunResult:
    from trainguard import ranks
    from trainguard.atomic import atomic_write_text
    from trainguard.rundir import RunDir

    rank = ranks.launched_rank()
    run_dir = RunDir.reopen(path) if rank == 0 else RunDir.for_rank(path, rank)
    try:
        if extend_to is not None:  # under the folder's lock; the folder changes only once the pipeline is built
            pipeline = _pipeline(extend_to, console)
            stage = extend_to.stages[-1].name
            old, new = load_config(path / "config.yaml").stages[-1].max_steps, extend_to.stages[-1].max_steps
            ranks.barrier()  # every process read the old config
            if rank == 0:
                atomic_write_text(run_dir.config_path, extend_to.to_yaml())
                extended = [*run_dir.manifest().get("extended", []), {"stage": stage, "from": old, "to": new}]
                run_dir.update_manifest(status="running", extended=extended)
            run_dir.event("extend", f"stage {stage} extended from {old} to {new} steps")
            console.print(f"extending stage {stage} from {old} to {new} steps")
            return _execute(pipeline, run_dir, resume=True)
        if RunDir(path).manifest().get("status") == "completed":
            console.print(f"{run_dir.path} is already complete; nothing to do")
            run_dir.close()
            return _result(run_dir.path, "completed")
        pipeline = _pipeline(load_config(path / "config.yaml"), console)
    except BaseException:
        run_dir.close()
        raise
    return _execute(pipeline, run_dir, resume=True)


def _pipeline(cfg: RunConfig, console: Console) -> Pipeline:
    from trainguard.engine.pipeline import Pipeline

    return Pipeline(cfg, console)


def _execute(pipeline: Pipeline, run_dir: RunDir, resume: bool) -> RunResult:
    """Run the pipeline in its folder; whatever happens, the manifest ends with the run's status."""
    from trainguard.engine.outcome import GuardStop
    from trainguard.engine.review import DeploymentRejected

    status = "failed"
    try:
        pipeline.attach(run_dir)
        pipeline.run_all(resume=resume)
        status = "completed"
    except GuardStop:
        status = "stopped"
        raise
    except DeploymentRejected:
        status = "rejected"  # trained to the end; the deployment gate said no (final/verdict.json)
        raise
    except KeyboardInterrupt as err:
        status = "interrupted"
        raise Interrupted(run_dir.path, getattr(err, "signum", signal.SIGINT)) from None
    finally:
        if resume:
            manifest = run_dir.manifest()
            run_dir.update_manifest(resumes=[*manifest.get("resumes", []), {"pid": os.getpid()}])
        run_dir.close(status=status)
    return _result(run_dir.path, status)


@contextmanager
def _torch_settings_restored() -> Iterator[None]:
    """A run sets torch's process-wide switches (deterministic kernels, threads); the caller's notebook or
    script gets its own back afterwards."""
    import torch

    det, warn = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    fill, threads = torch.utils.deterministic.fill_uninitialized_memory, torch.get_num_threads()  # type: ignore[attr-defined]
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(det, warn_only=warn)
        torch.utils.deterministic.fill_uninitialized_memory = fill  # type: ignore[attr-defined]
        torch.set_num_threads(threads)


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM (`kill`, a scheduler's preemption, `docker stop`) stops a run the way Ctrl-C does, so its folder
    is marked and resumable. Only the main thread may install handlers; elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        signal.signal(signum, signal.SIG_IGN)  # a second SIGTERM must not cut the clean-up short
        raise Interrupted(None, signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """transformers' info lines and progress bars (every export writes "model shards") are noise in a run's
    output, as in the CLI's; the caller's settings come back afterwards."""
    from transformers.utils import logging

    verbosity, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()


def _console(quiet: bool) -> Console:
    if quiet:
        from rich.console import Console

        return Console(quiet=True)
    from trainguard.ui.console import console

    return console


# -- reading a run folder ----------------------------------------------------------------------------------
def metrics(run_dir: PathLike | RunResult, keys: str | Iterable[str] | None = None, as_frame: bool = False) -> Any:
    """Every metric row (step, stage, key, value, time) in logging order, optionally only some keys; a long
    pandas DataFrame with `as_frame` (wide: `df.pivot_table(index="step", columns="key", values="value")`)."""
    from trainguard.track.store import read_metrics

    wanted = None if keys is None else {keys} if isinstance(keys, str) else set(keys)
    rows = [
        {"step": step, "stage": stage, "key": key, "value": value, "time": time}
        for step, stage, key, value, time in read_metrics(_store(run_dir))
        if wanted is None or key in wanted
    ]
    if not as_frame:
        return rows
    try:
        import pandas as pd
    except ImportError:
        raise ImportError(
            "metrics(..., as_frame=True) needs pandas (pip install pandas); without it, as_frame=False gives dicts"
        ) from None
    return pd.DataFrame(rows, columns=["step", "stage", "key", "value", "time"])


def alerts(run_dir: PathLike | RunResult) -> list[dict[str, Any]]:
    """The guard's alerts, oldest first (kind, severity, step, stage, value, threshold, recommendation, data)."""
    return _table(run_dir, "alerts")


def events(run_dir: PathLike | RunResult) -> list[dict[str, Any]]:
    """The run's events, oldest first (kind, severity, step, stage, message, data): stages, checkpoints,
    actions, resumes, accuracy."""
    return _table(run_dir, "events")


def _table(run_dir: PathLike | RunResult, table: str) -> list[dict[str, Any]]:
    from trainguard.track.store import read_table

    rows = read_table(_store(run_dir), table)
    return [{**row, "data": json.loads(row["data"] or "{}")} for row in rows]


def load_model(run_dir_or_folder: PathLike | RunResult, which: str = "final") -> tuple[Any, Any]:
    """(model, tokenizer) through AutoModelForCausalLM/AutoTokenizer, in eval mode: from a run folder's `final/`,
    `best/` or a stage's export (`which` is its name), or from a model folder given directly."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = _model_folder(_folder(run_dir_or_folder), which)
    with _quiet_transformers():
        model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    return model.eval(), tokenizer


def _model_folder(path: Path, which: str) -> Path:
    if (path / "manifest.json").is_file():
        folder = path / which if which in ("final", "best") else path / "exports" / which
        if not (folder / "config.json").is_file():
            raise RunDirError(f"{folder} holds no model (which: 'final', 'best' or the name of an earlier stage)")
        return folder
    if (path / "config.json").is_file():
        return path
    raise RunDirError(f"{path} is neither a run folder (manifest.json) nor a model folder (config.json)")


def _folder(run_dir: PathLike | RunResult) -> Path:
    return run_dir.path if isinstance(run_dir, RunResult) else Path(run_dir)


def _store(run_dir: PathLike | RunResult) -> Path:
    db = _folder(run_dir) / "metrics.db"
    if not db.is_file():
        raise RunDirError(f"{_folder(run_dir)} is not a run folder (no metrics.db)")
    return db


def _result(path: Path, status: str) -> RunResult:
    """The run as its folder records it: stages from metrics.db (the whole stage, across resumes)."""

    def accuracy(when: str) -> float | None:
        file = path / "eval" / f"{when}.json"
        return json.loads(file.read_text())["accuracy"] if file.is_file() else None

    def model(folder: Path) -> Path | None:
        return folder if (folder / "config.json").is_file() else None

    before, after = accuracy("before"), accuracy("after")
    stages = stage_summaries(path / "metrics.db")
    return RunResult(path, status, stages, before, after, model(path / "final"), model(path / "best"))
