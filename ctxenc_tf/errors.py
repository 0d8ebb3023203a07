"""The project's error types and the one function that turns any of them into one line.

Every command catches :class:`CtxencError` (and ``OSError``) at the top and prints
``error: <one line>``: the message names the flag or file at fault and what to do.
"""


class CtxencError(Exception):
    """Base of the errors a command reports as one ``error:`` line (no traceback)."""


class ConfigError(CtxencError, ValueError):
    """A configuration value is out of range; the message names the field. ``field`` and
    ``why``, when given, say the same in parts (a file's checker names the field its way)."""

    def __init__(self, message: str, field: str = "", why: str = ""):
        super().__init__(message)
        self.field, self.why = field, why


class DataError(CtxencError, ValueError):
    """Training or evaluation data is missing or unusable; the message names the path."""


class CheckpointError(CtxencError, ValueError):
    """A model file cannot be used; the message names the file and the reason."""


class TrainingError(CtxencError, RuntimeError):
    """Training cannot go on (non-finite loss, an output that cannot be written); the
    message says what happened and which files were kept."""


class ServingError(CtxencError, RuntimeError):
    """TF Serving cannot be reached or refused the request; the message says which."""


def one_line(error: BaseException, limit: int = 200, last: bool = False) -> str:
    """The first (``last``: the last) non-empty line of ``error``'s message (its type name
    if it has none), at most ``limit`` characters. ``OSError`` with a file name reads
    ``file: reason``. TensorFlow's decode errors put the cause on their last line."""
    if isinstance(error, OSError) and error.filename:
        return f"{error.filename}: {error.strerror or error}"
    message = getattr(error, "message", None) or str(error)  # TF errors keep theirs in .message
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    return (lines[-1 if last else 0] if lines else type(error).__name__)[:limit]
