"""Errors a user can act on: the CLI prints them on one line and exits with status 2."""


class TrainguardError(Exception):
    """Base of every error caused by the user's input (config, data, paths, disk), not by a bug."""

    exit_code = 2


class ConfigError(TrainguardError):
    """The run file is malformed or names a value that is not allowed."""


class DataError(TrainguardError):
    """A data file is missing, empty or has no usable rows."""


class RunDirError(TrainguardError):
    """The run folder cannot be created, reused or resumed."""


class CheckpointError(TrainguardError):
    """A checkpoint could not be written, or none on disk is complete and intact."""


class ExportError(TrainguardError):
    """An exported model folder could not be written (a full disk, a read-only folder)."""
