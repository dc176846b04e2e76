"""The errors the engine raises on purpose.

Every adapter (Runpod handler, HTTP API, CLI) turns these into its own error shape; anything else
that escapes is a bug or a fault of the machine and is reported as such.
"""

from __future__ import annotations


class AceStepError(Exception):
    """Base class: a failure with a message meant for the person who sent the request."""


class InputError(AceStepError, ValueError):
    """A request value is out of range or malformed. `field` names the offending input."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


class CheckpointError(AceStepError):
    """A checkpoint folder or file is missing, corrupt, or of a layout we do not understand."""

    def __init__(self, path: object, message: str):
        super().__init__(f"{message} ({path})")
        self.path = str(path)


class PlannerUnavailableError(AceStepError):
    """The request needs the 5 Hz language model, but none is configured or it failed to load."""


class GenerationCancelled(AceStepError):
    """`should_stop` asked the engine to stop; raised at the next step boundary."""


class GenerationFailed(AceStepError):
    """The models produced unusable output (NaN/Inf latents), which retrying with another seed may fix."""
