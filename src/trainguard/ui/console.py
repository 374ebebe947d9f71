"""The CLI's two consoles and its one way to report a user error."""

import typer
from rich.console import Console

from trainguard.errors import TrainguardError

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


def fail(err: TrainguardError) -> None:
    """Print the error one line per problem (no traceback) and exit with its status."""
    for line in str(err).splitlines() or [type(err).__name__]:
        err_console.print(f"[red]error:[/] {line}", highlight=False, soft_wrap=True)
    raise typer.Exit(err.exit_code)
