"""One job's deadline and cancel flag, passed down through every stage that can take time.

The engine polls it between planner tokens, diffusion steps and decoded songs; the job polls it
between encoded songs, before writing and between uploads, and sizes the bucket client's timeouts
from the time left. So a job past its deadline, or cancelled, stops within one step of it.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Callable

from ..errors import AceStepError, GenerationCancelled


class JobTimedOut(GenerationCancelled):
    """The job ran past its `timeout_seconds`."""


class Deadline:
    def __init__(self, seconds: float | None = None, cancelled: threading.Event | None = None,
                 clock: Callable[[], float] | None = None):
        self.seconds = seconds
        self.cancelled = cancelled if cancelled is not None else threading.Event()
        self.clock = clock or (lambda: time.monotonic())  # looked up per call: tests may replace it
        self.started = self.clock()

    @property
    def at(self) -> float | None:
        """The deadline as a `clock()` reading (None without a limit)."""
        return None if self.seconds is None else self.started + self.seconds

    def remaining(self) -> float:
        """Seconds left (infinite without a limit; never negative)."""
        if self.seconds is None:
            return math.inf
        return max(0.0, self.started + self.seconds - self.clock())

    def expired(self) -> bool:
        return self.seconds is not None and self.clock() > self.started + self.seconds

    def cancel(self) -> None:
        self.cancelled.set()

    def __call__(self) -> bool:
        """True when the work should stop: the `should_stop` callable the engine takes."""
        return self.cancelled.is_set() or self.expired()

    def check(self) -> None:
        """Raise the reason to stop, if there is one: a cancel wins over a timeout."""
        if self.cancelled.is_set():
            raise GenerationCancelled("the job was cancelled")
        if self.expired():
            raise self.timed_out()

    def timed_out(self) -> AceStepError:
        return JobTimedOut(f"the job timed out after {self.seconds:g} s (timeout_seconds) and was stopped; "
                           "raise timeout_seconds or ask for a shorter duration")

    def reason(self, stopped: GenerationCancelled) -> AceStepError:
        """Turn the engine's generic stop into the reason the caller should read."""
        if isinstance(stopped, JobTimedOut) or self.cancelled.is_set():
            return stopped if isinstance(stopped, JobTimedOut) else GenerationCancelled("the job was cancelled")
        return self.timed_out() if self.expired() else stopped
