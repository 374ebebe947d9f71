"""A rich progress bar per stage and the one-screen summary printed when a run ends."""

from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table


class StageProgress:
    """Shows step/total, ETA, loss, lr and throughput as a live bar; without one (a pipe, a log file,
    `progress: off`) it prints the same as a line every `log_every` steps, like the Trainer's logging_steps."""

    def __init__(self, console: Console, stage: str, total: int, start: int, enabled: bool, log_every: int = 0) -> None:
        self.enabled, self.console, self.stage, self.total, self.log_every = enabled, console, stage, total, log_every
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=not enabled,
        )
        self.task = self.progress.add_task(stage, total=total, completed=start, info="")

    def __enter__(self) -> "StageProgress":
        self.progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.progress.stop()

    def update(self, step: int, metrics: dict[str, float]) -> None:
        if "loss/train" not in metrics:  # a step the guard skipped before its forward pass
            self.progress.update(self.task, completed=step)
            return
        info = (
            f"loss {metrics['loss/train']:.4f}  lr {metrics['opt/lr']:.2e}  {metrics['perf/tokens_per_s']:,.0f} tok/s"
        )
        self.progress.update(self.task, completed=step, info=info)
        if not self.enabled and self.log_every and (step % self.log_every == 0 or step == self.total):
            self.console.print(f"{self.stage} step {step}/{self.total}  {info}", highlight=False)


def progress_enabled(setting: str, console: Console) -> bool:
    return setting == "on" or (setting == "auto" and console.is_terminal)


def summary_table(run_dir: str, stages: list[Any], accuracy: list[tuple[str, dict[str, Any]]]) -> Table:
    """One screen: per stage (from the store, so a resume counts the whole stage) its steps, training time,
    mean throughput, final train loss, last held-out number (loss; accuracy for RL and reward stages), and the
    guard's rollbacks and skipped steps; `accuracy` is (label, eval/<when>.json) before, after earlier policy
    stages and after."""
    table = Table(title=f"trainguard run {run_dir}", title_justify="left")
    columns = ("stage", "steps", "time", "tok/s", "train loss", "eval", "rollbacks", "skips")
    for col in columns:  # fits 80 columns (a pipe, a log file) without cutting a header
        table.add_column(col, justify="right" if col != "stage" else "left", no_wrap=True)
    for s in stages:
        table.add_row(
            s.name,
            str(s.steps),
            f"{s.seconds:.1f}s",
            f"{s.tokens_per_s:,.0f}",
            f"{s.train_loss:.4f}",
            s.eval_text,
            str(s.rollbacks),
            str(s.skipped),
        )
    notes = ["tok/s: stage mean; train loss: mean of the stage's last 10% of steps"]
    if len(accuracy) >= 2 and accuracy[0][0] == "before" and accuracy[-1][0] == "after":
        path = [
            f"{acc['accuracy']:.1%}" + (f" ({label})" if label not in ("before", "after") else "")
            for label, acc in accuracy
        ]
        last = accuracy[-1][1]
        notes.append(f"held-out {last['task']} accuracy: {' -> '.join(path)} (n={last['n']})")
    table.caption = "\n".join(notes)
    return table
