"""The CLI's two consoles, its one way to report a user error, and alert lines. Text that comes from data
(messages, alerts) is escaped: rich would read `[warning]` or `stages[0]` as markup and drop it."""

import os
import sys

import typer
from rich.console import Console
from rich.markup import escape

from trainguard.errors import TrainguardError
from trainguard.guard.alerts import Alert

# A pipe or a log file has no width; rich would assume 80 columns and squeeze the summary and eval tables.
PIPE_WIDTH = None if sys.stdout.isatty() or "COLUMNS" in os.environ else 100
console = Console(soft_wrap=True, width=PIPE_WIDTH)
err_console = Console(stderr=True, soft_wrap=True)


def quiet_libraries() -> None:
    """transformers' info lines and progress bars are noise in a command's output."""
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def fail(err: TrainguardError) -> None:
    """Print the error one line per problem (no traceback) and exit with its status."""
    for line in str(err).splitlines() or [type(err).__name__]:
        err_console.print(f"[red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
    raise typer.Exit(err.exit_code)


def alert_markup(alert: Alert) -> str:
    """An alert's line for a rich console, coloured by severity; its own `[warning]` is text, not markup."""
    color = "red" if alert.severity == "critical" else "yellow" if alert.severity == "warning" else "dim"
    return f"[{color}]{escape(alert.line())}[/]"
