"""Errors the CLI reports as one line (no traceback): the message says what to do."""

from __future__ import annotations

import functools
from collections.abc import Callable


class StackError(RuntimeError):
    """A local service of the dev stack could not be started or reached."""


def one_line_errors(fn: Callable) -> Callable:
    """CLI commands: environment problems are reported as one clear line and exit 1, not a traceback."""
    import typer
    from rich.console import Console

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except StackError as exc:
            Console(stderr=True).print(f"[red]error:[/red] {exc}")
            raise typer.Exit(1) from None

    return wrapper
