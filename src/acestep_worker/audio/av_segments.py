"""One long song's AAC or Opus encoded as frame-aligned segments on several cores, joined into one file.

FFmpeg's AAC encoder and libopus are single-threaded (AAC ~17x real time per core), so a 4-minute
song costs the same on a 16-core GPU host as on one core. As for MP3 (mp3_segments.py), the song is
cut at codec-frame boundaries into one segment per core, every segment is encoded by the same
encoder with the same settings as the one pass (av_codecs.encode_packets), and the packets are
joined into one stream:

- every segment but the first starts encoding `lead_in_frames` early, so that its encoder's state
  (psychoacoustic model, rate control, Opus's band energies and analysis) has converged where it
  takes over; every segment but the last runs `lead_out_frames` past its end, so that its packets
  up to the join see the same input as the one pass (lookahead, no end flush);
- segments start on multiples of the frame size, so packet k of a segment's stream covers the
  same samples as packet start + k of the one pass: the joined packets are re-stamped with the one
  pass's timestamps and durations, priming and pre-skip unchanged, and `av_codecs.mux` writes them
  as it writes the one pass (MP4 sample tables and edit list, Ogg pages and granule positions), so
  the file has the one pass's length and tags;
- AAC and Opus packets are self-contained (no reservoir pointer into earlier packets); what a
  decoder carries from packet j - 1 into j is the transform overlap and, for Opus, the band
  energies packet j is predicted from. The join goes at the last packet j near the cut where both
  streams coded packet j - 1 alike in what fixes that overlap (`carried_state`): AAC's window
  sequence and shape, Opus's TOC byte (mode, bandwidth, frame size, channels). After the warm
  frames the streams' windows agreed at every readable candidate measured; within them they did
  not always (bench/README.md), hence `warm_frames`.

Unlike LAME, neither encoder re-converges to the one pass's bytes after a lead-in (matching packets
come in short runs, and for AAC on noisy input not at all), so a later segment is another encoding
of the same audio at the same settings: the decoded file differs from the one pass about as much as
a one pass of the input plus a -100 dB dither does, has the same SNR against the input, and no frame
near a join has an error far above the one pass's there (tests/unit/test_segmented_aac_opus.py bounds it; joins
without lead-in or lead-out break that bound by 5-19 dB: bench/README.md).

When no packet near a cut qualifies, or a stream is not shaped as expected (`NotJoinable`),
`encode_segmented` returns None and the caller encodes in one pass.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Hashable

import numpy as np

from . import av_codecs
from .segmenting import NotJoinable, SegmentFraming, encode_parts

log = logging.getLogger(__name__)


def aac_window(packet: bytes) -> Hashable | None:
    """The window sequence and shape of an AAC-LC raw data block's first channel element (what the
    next frame's overlap-add depends on), with whether a channel pair shares them; None when the
    block does not start with a channel element."""
    bits = int.from_bytes(packet[:3].ljust(3, b"\0"), "big")  # 24 bits reach past the first ics_info
    element = bits >> 21  # id_syn_ele: 0 single channel, 1 channel pair
    if element == 0:  # tag (4), global_gain (8), then ics_info: reserved (1), sequence (2), shape (1)
        return "single", (bits >> 5) & 0b111
    if element == 1 and (bits >> 16) & 1:  # tag (4), common_window = 1, then the shared ics_info
        return "shared", (bits >> 12) & 0b111
    if element == 1:  # common_window = 0: the first channel's global_gain (8) and ics_info. The second
        # channel's ics_info lies behind the first's Huffman-coded spectrum; its windows come from the
        # same transient detector on the same input, which agreed in both streams at every readable
        # packet measured after the warm frames (bench/README.md).
        return "separate", (bits >> 4) & 0b111
    return None


def opus_toc(packet: bytes) -> Hashable | None:
    """An Opus packet's TOC byte: mode, audio bandwidth, frame duration and stereo flag."""
    return packet[0] if packet else None


@dataclass(frozen=True)
class Joining(SegmentFraming):
    """A codec's framing (frame_samples: samples per packet at the rates the product encodes) and
    where its segments may be joined."""

    warm_frames: int  # a join never falls in the first packets of a segment's stream
    carried_state: Callable[[bytes], Hashable | None]  # what of packet j - 1 must agree for a join at j


# By FFmpeg encoder name. AAC: 1024-sample frames, 48 lead-in frames ~1 s at 48 kHz. Opus: FFmpeg's
# libopus wrapper sends 20 ms frames (960 samples at 48 kHz, the only rate libopus takes here).
CODECS = {
    "aac": Joining(1024, 48, 4, 16, aac_window),
    "libopus": Joining(960, 50, 4, 16, opus_toc),
}


def encode_segmented(audio: np.ndarray, sample_rate: int, segments: int, output: av_codecs.AvOutput, *,
                     pool: ThreadPoolExecutor | None = None,
                     encode_packets: Callable | None = None) -> bytes | None:
    """Encode `audio` [samples, channels] as `segments` parts on threads and join them into the one
    file `output` describes; None when no valid join was found near a cut. `encode_packets`
    (default av_codecs.encode_packets) is replaceable so a benchmark can time each segment."""
    joining = CODECS[output.codec]
    encode_one = encode_packets or av_codecs.encode_packets
    encoded = encode_parts(audio, segments, joining, lambda part: encode_one(
        part, sample_rate, codec=output.codec, bitrate_kbps=output.bitrate_kbps), pool)
    try:
        packets = join(encoded.outputs, encoded.starts, encoded.cuts, joining)
    except NotJoinable as exc:
        log.info("segmented %s not joinable (%s); encoding in one pass", output.codec, exc)
        return None
    if packets is None:
        return None
    return av_codecs.mux(packets, sample_rate, audio.shape[1], output)


def join(streams: list[list], starts: list[int], cuts: list[int], joining: Joining) -> list | None:
    """Join segment streams (stream i's packet 0 is the song's packet starts[i]) near `cuts`; the
    result's packets carry the one pass's timestamps. None when some cut has no valid join."""
    priming = _check(streams[0], joining.frame_samples, None)
    for stream in streams[1:]:
        _check(stream, joining.frame_samples, priming)
    packets = list(streams[0])  # the song's packets 0 .. len - 1 so far
    at = 0
    for stream, start, cut in zip(streams[1:], starts[1:], cuts[1:]):
        at = _join_packet(packets, stream, max(start + max(1, joining.warm_frames), at + 1), start, cut, joining)
        if at is None:
            log.info("no valid join near frame %d; encoding in one pass", cut)
            return None
        packets = packets[:at] + stream[at - start:]
    for index, packet in enumerate(packets):  # a later stream's packet k is the song's start + k
        packet.pts = packet.dts = index * joining.frame_samples - priming
    return packets


def _check(stream: list, frame_samples: int, priming: int | None) -> int:
    """The stream's priming in samples, after checking that packet k starts at k frames minus it
    and all but the last are one frame long."""
    if not stream:
        raise NotJoinable("a segment produced no packets")
    first = -stream[0].pts
    if priming is not None and first != priming:
        raise NotJoinable(f"priming {first} samples, the first segment's {priming}")
    for index, packet in enumerate(stream):
        if packet.pts != index * frame_samples - first or packet.duration != frame_samples and index < len(stream) - 1:
            raise NotJoinable(f"packet {index} at {packet.pts} lasting {packet.duration}, frames of {frame_samples}")
    return first


def _join_packet(earlier: list, later: list, lowest: int, start: int, cut: int, joining: Joining) -> int | None:
    """The last song packet j in [lowest, cut + 1] at which `later` can take over from `earlier`."""
    highest = min(cut + 1, len(earlier) - joining.lead_out_frames, start + len(later) - 1)
    for j in range(highest, lowest - 1, -1):
        carried = joining.carried_state(bytes(earlier[j - 1]))
        if carried is not None and carried == joining.carried_state(bytes(later[j - start - 1])):
            return j
    return None
