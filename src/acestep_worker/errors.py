"""The errors the engine raises on purpose.

Every adapter (Runpod handler, HTTP API, CLI) turns these into its own error shape; anything else
that escapes is a bug or a fault of the machine and is reported as such.
"""

from __future__ import annotations

MAX_MESSAGE_CHARS = 2_000  # longer than any sentence we write; input echoed in full would not fit
ECHO_CHARS = 60  # how much of a caller's value an error message shows


def bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def echo(value: object, limit: int = ECHO_CHARS) -> str:
    """A caller's value as an error message shows it: at most `limit` characters, computed without
    recursion or a full `repr` (a 1 MB string, a 10,000-digit integer or a list nested 5,000 deep
    are summarised, not printed)."""
    if isinstance(value, str):
        return bounded(repr(value[: limit + 1]), limit)
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return bounded(repr(value), limit)
    if isinstance(value, int):
        return bounded(repr(value), limit) if value.bit_length() < 190 else f"an integer of {value.bit_length()} bits"
    if isinstance(value, (list, tuple)) and len(value) <= 8 and all(
            v is None or isinstance(v, (str, int, float, bool)) for v in value):
        return bounded("[" + ", ".join(echo(v, limit) for v in value) + "]", limit)
    if isinstance(value, (list, tuple, dict, set)):
        return f"a {'list' if isinstance(value, (list, tuple)) else type(value).__name__} of {len(value)} item(s)"
    return f"a value of type {type(value).__name__}"


class AceStepError(Exception):
    """Base class: a failure with a message meant for the person who sent the request.

    Every message is bounded here, once, so no error can grow with the input that caused it."""

    def __init__(self, message: object = ""):
        super().__init__(bounded(str(message), MAX_MESSAGE_CHARS))


class InputError(AceStepError, ValueError):
    """A request value is out of range or malformed. `field` names the offending input."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = bounded(str(field), ECHO_CHARS)


class CheckpointError(AceStepError):
    """A checkpoint folder or file is missing, corrupt, or of a layout we do not understand."""

    def __init__(self, path: object, message: str):
        super().__init__(f"{message} ({path})")
        self.path = str(path)


class PlannerUnavailableError(InputError):
    """The request needs the 5 Hz language model, but none is loaded; `field` names what asked for it."""

    def __init__(self, message: str, field: str = "thinking"):
        super().__init__(field, message)


class GenerationCancelled(AceStepError):
    """`should_stop` asked the engine to stop; raised at the next step boundary."""


class GenerationFailed(AceStepError):
    """The models produced unusable output (NaN/Inf latents), which retrying with another seed may fix."""
