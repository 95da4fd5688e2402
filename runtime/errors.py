"""The errors a user sees: each one's message is one line, which
:func:`runtime.cli.run` prints before exiting with its status."""


def one_line(e):
    """The first line of an exception's message (its type without one)."""
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


class UsageError(ValueError):
    """A bad flag or path (exit status 2)."""


class DatasetError(ValueError):
    """A dataset that cannot be read; the message names the file."""


class ModelFileError(ValueError):
    """A model file that cannot be used."""


class OutputError(ValueError):
    """An ``--out`` that cannot be used."""


class TrainingStopped(RuntimeError):
    """Training ended early on purpose."""
    exit_status = 3
    prefix = 'error'


class NonFiniteError(TrainingStopped):
    """A loss term or a weight became NaN or infinite."""


class Interrupted(TrainingStopped):
    """SIGINT or SIGTERM: a snapshot was written, rerun to resume."""
    prefix = 'interrupted'

    def __init__(self, message, signum):
        super().__init__(message)
        self.exit_status = 128 + int(signum)


class SnapshotError(TrainingStopped):
    """No snapshot can be resumed from (explicit ``--resume`` or one that
    does not fit this run)."""
    exit_status = 2


class OutOfMemory(TrainingStopped):
    """A batch that does not fit in memory."""
    exit_status = 2


class WriteFailed(TrainingStopped):
    """A file of the run could not be written (a full disk...)."""


#: Errors of the user's inputs (exit status 2).
USER_ERRORS = (UsageError, DatasetError, ModelFileError, OutputError)
