"""One song cut at codec-frame boundaries into segments that are encoded at once on threads.

What MP3 (mp3_segments.py) and AAC/Opus (av_segments.py) share; each then joins its segments'
streams by its own codec's rules. Every segment but the first starts encoding `lead_in_frames`
early, so the encoder's state has converged where it takes over, and every segment but the last
runs `lead_out_frames` past its end, so its frames up to a join see the input the single pass saw.
Segments start on whole frames: frame k of a segment's stream covers frame start + k of the song.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import numpy as np


class NotJoinable(ValueError):
    """Segment streams that a joiner cannot split or join as it expects; the caller encodes in one pass."""


def plan(samples: int, segments: int, frame_samples: int) -> list[tuple[int, int]]:
    """Nominal cuts in frames: [(first frame, end frame)] per segment, end exclusive."""
    frames = -(-samples // frame_samples)
    cuts = [round(i * frames / segments) for i in range(segments + 1)]
    return [(cuts[i], cuts[i + 1]) for i in range(segments)]


@dataclass(frozen=True)
class SegmentFraming:
    """The frame grid a codec's segments are cut on, and how far each one's encoding reaches past
    its cut: `lead_in_frames` before (all but the first), `lead_out_frames` after (all but the last)."""

    frame_samples: int  # samples per codec frame
    lead_in_frames: int
    lead_out_frames: int


@dataclass(frozen=True)
class Encoded:
    outputs: list  # what `encode_one` returned for each segment, in order
    starts: list[int]  # the song frame each segment's encoding starts at, lead-in included
    cuts: list[int]  # the song frame each segment nominally starts at


def encode_parts(audio: np.ndarray, segments: int, framing: SegmentFraming, encode_one: Callable[[np.ndarray], object],
                 pool: ThreadPoolExecutor | None = None) -> Encoded:
    """Encode `audio` [samples, channels] as `segments` frame-aligned parts, on `pool` (or threads of
    its own); the encoders release the GIL, so the parts run on as many cores."""
    samples, frame_samples = audio.shape[0], framing.frame_samples
    parts = plan(samples, segments, frame_samples)
    starts = [max(0, first - framing.lead_in_frames) if i else 0 for i, (first, _) in enumerate(parts)]
    ends = [min(samples, (end + framing.lead_out_frames) * frame_samples) if i < len(parts) - 1 else samples
            for i, (_, end) in enumerate(parts)]

    def one(i: int) -> object:
        return encode_one(audio[starts[i] * frame_samples:ends[i]])

    if pool is None:
        with ThreadPoolExecutor(max_workers=segments) as own:
            outputs = list(own.map(one, range(segments)))
    else:
        outputs = list(pool.map(one, range(segments)))
    return Encoded(outputs, starts, [first for first, _ in parts])
