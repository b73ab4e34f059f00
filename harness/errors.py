"""Exceptions whose type decides the CLI exit code.

`UsageError` and `DataError` mean "nothing was run, nothing was written" (exit 2);
`RunError` means a run started and failed (exit 1).
"""


class HarnessError(Exception):
    """Base class for errors the CLI reports without a traceback."""

    exit_code = 1


class UsageError(HarnessError):
    """A bad option, an unknown plugin name, an incompatible combination."""

    exit_code = 2


class DataError(HarnessError):
    """Missing, incomplete or unreadable data, weights or checkpoints."""

    exit_code = 2


class RunError(HarnessError):
    """A run that started and then failed."""

    exit_code = 1


class Terminated(KeyboardInterrupt):
    """An interruption by SIGTERM (a scheduler, `kill`): handled like Ctrl-C, but the CLI exits 143
    (128 + 15, the conventional status) instead of 130."""
