"""Errors the CLI reports as one line (no traceback): the message says what to do."""


class StackError(RuntimeError):
    """A local service of the dev stack could not be started or reached."""
