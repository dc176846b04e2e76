"""The songs' seeds, drawn once when a job is planned, and the retake seeds beside them."""

from __future__ import annotations

import random

from ..schema.request import GenerationRequest
from ..schema.values import MAX_SEED


def draw_seeds(request: GenerationRequest) -> tuple[int, ...]:
    """One seed per song. A single seed s seeds the batch as s, s+1, ...; -1 entries are random."""
    return _spread(None if request.use_random_seed else request.seed, request.batch_size)


def draw_retake_seeds(request: GenerationRequest) -> tuple[int, ...] | None:
    """One retake seed per song, drawn only while retake_variance > 0 (upstream resolves none otherwise,
    so a request without a retake draws nothing more). Read as `seed` is, whatever `use_random_seed` says:
    upstream resolves retake seeds apart from it. Upstream gives a single retake seed to the first song
    and random ones to the rest; here it spreads as `seed` does (s, s+1, ...), so that the request alone
    reproduces every song's retake."""
    if request.retake_variance <= 0:
        return None
    return _spread(request.retake_seed, request.batch_size)


def _spread(given: tuple[int, ...] | None, count: int) -> tuple[int, ...]:
    if given is None:
        return tuple(random.randint(0, MAX_SEED) for _ in range(count))
    if len(given) == 1:
        return tuple((given[0] + i) % (MAX_SEED + 1) for i in range(count))
    return tuple(random.randint(0, MAX_SEED) if s == -1 else s for s in given)
