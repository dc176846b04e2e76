"""One long song's MP3 encoded as frame-aligned segments on several cores, joined into one file.

LAME is single-threaded (about 14x real time per core), so a 4-minute song costs ~17 s on one core
however many a GPU host has. Here the song is cut at frame boundaries into one segment per core;
each segment is encoded by the same encoder with the same settings as the single pass, and the
encoded frames are joined into one valid, gapless stream:

- every segment but the first starts encoding `LEAD_IN_FRAMES` early, so its psychoacoustic model
  and window decisions are warm where it takes over; every segment but the last runs
  `LEAD_OUT_FRAMES` past its end, so its frames up to the join are exactly the single pass's;
- segments start on multiples of 1152 samples, so frame j of every segment's stream covers the same
  samples as frame j of the single pass, and the joined file has exactly the single pass's frames,
  length, delay and padding (`mp3_stream.assemble` rewrites the Info frame for it);
- the join is placed at the last frame j near the cut where (a) the earlier segment's stream has at
  least as many free reservoir bytes before j as the later segment's frame j reaches back into
  (those bytes are then copied over), and (b) both streams chose the same window shape for the
  granule before j, so the decoder's overlap-add at the join sees matching windows.

Frames before the first join are the single pass's bytes; later frames are another encoding of the
same audio by a warmed-up encoder, so the decoded file differs from a single pass's decode by the
codec's own noise, without clicks (measured in bench/README.md, asserted in tests/unit/test_segmented_mp3.py).
When no frame near a cut satisfies (a) and (b), `encode_segmented` returns None and the caller
encodes in one pass.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np

from .mp3_stream import FRAME_SAMPLES, NotJoinable, Stream, assemble, parse, splice
from .segmenting import SegmentFraming, encode_parts

log = logging.getLogger(__name__)

LEAD_IN_FRAMES = 48  # ~1.2 s at 48 kHz: what a later segment encodes before its cut
WARM_FRAMES = 16  # a join never falls in the first frames of a segment's stream
LEAD_OUT_FRAMES = 4  # LAME's last two frames depend on where the input ends
FRAMING = SegmentFraming(FRAME_SAMPLES, LEAD_IN_FRAMES, LEAD_OUT_FRAMES)


def encode_segmented(audio: np.ndarray, segments: int, encode_one: Callable[[np.ndarray], bytes],
                     pool: ThreadPoolExecutor | None = None) -> bytes | None:
    """Encode `audio` [samples, channels] as `segments` parts with `encode_one` (a libsndfile MP3
    encode at the final settings) and join them; None when no valid join was found near a cut."""
    samples = audio.shape[0]
    encoded = encode_parts(audio, segments, FRAMING, encode_one, pool)
    try:
        streams = [parse(data) for data in encoded.outputs]
        return join(streams, encoded.starts, encoded.cuts, samples)
    except NotJoinable as exc:
        log.info("segmented MP3 not joinable (%s); encoding in one pass", exc)
        return None


def join(streams: list[Stream], starts: list[int], cuts: list[int], samples: int) -> bytes | None:
    """Join segment streams (stream i's frame 0 is the song's frame starts[i]) near `cuts`."""
    frames = list(streams[0].frames)  # the song's frames 0 .. len(frames) - 1 so far
    at = 0
    for stream, start, cut in zip(streams[1:], starts[1:], cuts[1:]):
        at = _join_frame(frames, stream, max(start + WARM_FRAMES, at + 1), start, cut)
        if at is None:
            log.info("no valid MP3 join near frame %d; encoding in one pass", cut)
            return None
        local = at - start
        frames = splice(frames[:at], stream.frames[local:], stream.frames[:local])
    return assemble(streams[0].prefix, streams[0].info, frames, streams[-1].trailer, samples)


def _join_frame(earlier: list, later: Stream, lowest: int, start: int, cut: int) -> int | None:
    """The last song frame j in [lowest, cut + 1] at which `later` can take over from `earlier`."""
    highest = min(cut + 1, len(earlier) - LEAD_OUT_FRAMES + 1, start + len(later.frames) - 1)
    for j in range(highest, lowest - 1, -1):
        taking_over, before = later.frames[j - start], later.frames[j - start - 1]
        if (earlier[j].main_data_begin >= taking_over.main_data_begin
                and earlier[j - 1].last_windows == before.last_windows):
            return j
    return None
