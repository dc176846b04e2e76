"""Reading and re-assembling the MP3 streams libsndfile writes: an ID3v2 tag when a comment is
set, a Xing/LAME "Info" frame, MPEG-1 Layer III frames, then an ID3v1 trailer. Used to join separately encoded segments
of one song into one file (`mp3_segments.py`).

Facts relied on (ISO 11172-3 and the LAME tag format): a frame's main data may start up to
`main_data_begin` bytes before the frame, inside the main-data areas of earlier frames (the bit
reservoir), and those bytes belong to no earlier frame; each granule's window shape is in its side
information; the Info frame carries the frame and byte counts, a seek table, the encoder delay and
end padding that gapless decoders trim by, and CRC-16s of the audio frames and of itself.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from .segmenting import NotJoinable

FRAME_SAMPLES = 1152  # per MPEG-1 Layer III frame
_BITRATES_KBPS = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
_SAMPLE_RATES = (44_100, 48_000, 32_000)
# Byte offsets inside the Info frame's tag, from its b"Info" magic: the Xing part (flags, frames,
# bytes, a 100-entry seek table, quality), then the LAME part.
_FRAMES_AT, _BYTES_AT, _TOC_AT = 8, 12, 16
_DELAY_PADDING_AT = 120 + 21  # 12 bits of encoder delay, 12 bits of end padding
_MUSIC_LENGTH_AT, _MUSIC_CRC_AT, _TAG_CRC_AT = 120 + 28, 120 + 32, 120 + 34


@dataclass(frozen=True)
class Frame:
    data: bytes
    side_start: int  # where the side information begins (after the header and its optional CRC)

    @property
    def channels(self) -> int:
        return 1 if self.data[3] >> 6 == 3 else 2

    @property
    def data_start(self) -> int:
        """Where the main-data area begins, after the side information."""
        return self.side_start + (17 if self.channels == 1 else 32)

    @property
    def main_data_begin(self) -> int:
        """Bytes of this frame's main data that lie in earlier frames."""
        return (self.data[self.side_start] << 1) | (self.data[self.side_start + 1] >> 7)

    @property
    def bitrate_kbps(self) -> int:
        return _BITRATES_KBPS[self.data[2] >> 4]

    @property
    def last_windows(self) -> tuple[int, ...]:
        """Block type of the second granule, per channel (0 long, 1 start, 2 short, 3 stop)."""
        return _last_windows(self)


@dataclass(frozen=True)
class Stream:
    prefix: bytes  # an ID3v2 tag before the audio, or b""
    info: bytes  # the Info frame
    frames: list[Frame]
    trailer: bytes  # tags after the audio (ID3v1)


def _frame_length(header: int) -> int:
    if header >> 21 != 0x7FF or (header >> 19) & 3 != 3 or (header >> 17) & 3 != 1:
        raise NotJoinable("not an MPEG-1 Layer III frame")
    bitrate_index, rate_index = (header >> 12) & 15, (header >> 10) & 3
    if bitrate_index in (0, 15) or rate_index == 3:
        raise NotJoinable("free-format or reserved MPEG header")
    return 144 * _BITRATES_KBPS[bitrate_index] * 1000 // _SAMPLE_RATES[rate_index] + ((header >> 9) & 1)


def _last_windows(frame: Frame) -> tuple[int, ...]:
    channels = frame.channels
    bits = int.from_bytes(frame.data[frame.side_start:frame.data_start], "big")
    total = (frame.data_start - frame.side_start) * 8
    position = 9 + (5 if channels == 1 else 3) + 4 * channels  # main_data_begin, private bits, scfsi
    windows = []
    for _granule in range(2):
        for _channel in range(channels):
            position += 12 + 9 + 8 + 4  # part2_3_length, big_values, global_gain, scalefac_compress
            switching = (bits >> (total - position - 1)) & 1
            windows.append((bits >> (total - position - 3)) & 3 if switching else 0)
            position += 1 + 22 + 3  # window switching flag, region description, three flags
    return tuple(windows[channels:])


def parse(data: bytes) -> Stream:
    """Split a libsndfile MP3 file into its Info frame, audio frames and trailer."""
    position, raw = _id3v2_length(data), []
    while position + 4 <= len(data) and data[position] == 0xFF and data[position + 1] & 0xE0 == 0xE0:
        length = _frame_length(int.from_bytes(data[position:position + 4], "big"))
        if position + length > len(data):
            raise NotJoinable("the stream ends inside a frame")
        raw.append(data[position:position + length])
        position += length
    if not raw or _tag_offset(raw[0]) is None:
        raise NotJoinable("the stream has no Info frame")
    return Stream(data[:_id3v2_length(data)], raw[0], [Frame(frame, 4 if frame[1] & 1 else 6) for frame in raw[1:]],
                  data[position:])


def _id3v2_length(data: bytes) -> int:
    """Bytes of the ID3v2 tag at the start (10-byte header, syncsafe size, optional footer), or 0."""
    if data[:3] != b"ID3" or len(data) < 10:
        return 0
    size = (data[6] & 127) << 21 | (data[7] & 127) << 14 | (data[8] & 127) << 7 | (data[9] & 127)
    return 10 + size + (10 if data[5] & 0x10 else 0)


def _tag_offset(frame: bytes) -> int | None:
    for magic in (b"Info", b"Xing"):
        at = frame.find(magic, 4, 40)
        if at != -1:
            return at
    return None


def encoder_delay(info: bytes) -> int:
    """Samples of silence the encoder put before the song (LAME: 576)."""
    at = _tag_offset(info) + _DELAY_PADDING_AT
    return (info[at] << 4) | (info[at + 1] >> 4)


def _reservoir_tail(frames: list[Frame], count: int) -> list[tuple[int, int, int]]:
    """The last `count` bytes of the frames' main-data areas as (frame, start, stop), first to last."""
    slices = []
    index = len(frames) - 1
    while count > 0 and index >= 0:
        frame = frames[index]
        take = min(count, len(frame.data) - frame.data_start)
        slices.append((index, len(frame.data) - take, len(frame.data)))
        count -= take
        index -= 1
    if count > 0:
        raise NotJoinable("a frame's main data reaches before the start of its segment")
    return slices[::-1]


def splice(head: list[Frame], tail: list[Frame], tail_before: list[Frame]) -> list[Frame]:
    """head + tail, where tail's first frame was encoded after `tail_before` (its own encoder's earlier
    frames). That frame's reservoir bytes are copied from `tail_before` into the end of head's
    main-data areas, where head's stream holds only bytes of head's (dropped) later frames; the
    caller checks `head` has room: its next frame's main_data_begin >= tail[0].main_data_begin."""
    count = tail[0].main_data_begin
    reservoir = b"".join(tail_before[i].data[start:stop] for i, start, stop in _reservoir_tail(tail_before, count))
    frames = list(head)
    for index, start, stop in _reservoir_tail(head, count):  # frame sizes may differ (padding bits)
        old = frames[index]
        frames[index] = Frame(old.data[:start] + reservoir[:stop - start] + old.data[stop:], old.side_start)
        reservoir = reservoir[stop - start:]
    return frames + tail


def _crc_table() -> np.ndarray:
    table = np.zeros(256, dtype=np.uint32)
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table[byte] = crc
    return table


_CRC_TABLE = _crc_table()
_CRC_LANE_BYTES = 1024


def crc16(data: bytes) -> int:
    """CRC-16/ARC (polynomial 0x8005 bit-reversed, initial 0): the LAME tag's two CRCs.

    A byte-at-a-time loop in Python takes ~8 s for a 4-minute song, so the data is cut into
    1 KiB lanes whose CRCs are computed side by side with numpy and then chained: with an initial
    value of 0 the CRC is linear over GF(2), and CRC(a + b) = shift(CRC(a), len(b)) ^ CRC(b),
    where shift runs the register over len(b) zero bytes (a fixed linear map, applied per bit).
    """
    lane = _CRC_LANE_BYTES
    pad = (-len(data)) % lane  # leading zero bytes leave a CRC with initial value 0 unchanged
    lanes = np.frombuffer(b"\0" * pad + data, dtype=np.uint8).reshape(-1, lane)
    crcs = np.zeros(lanes.shape[0], dtype=np.uint32)
    for column in range(lane):
        crcs = (crcs >> 8) ^ _CRC_TABLE[(crcs ^ lanes[:, column]) & 0xFF]
    shifted_bits = _lane_shift_basis()
    crc = 0
    for lane_crc in crcs.tolist():
        shifted = 0
        for bit in range(16):
            if crc >> bit & 1:
                shifted ^= shifted_bits[bit]
        crc = shifted ^ lane_crc
    return crc


@functools.cache
def _lane_shift_basis() -> tuple[int, ...]:
    """shift() over one lane of zero bytes, of each of the 16 basis vectors: the same for every call."""
    return tuple(_crc_zeros(1 << bit, _CRC_LANE_BYTES) for bit in range(16))


def _crc_zeros(crc: int, count: int) -> int:
    for _ in range(count):
        crc = (crc >> 8) ^ int(_CRC_TABLE[crc & 0xFF])
    return crc


def assemble(prefix: bytes, info: bytes, frames: list[Frame], trailer: bytes, samples: int) -> bytes:
    """One file from the ID3v2 tag and Info frame of a stream of the same settings and tags, every
    audio frame of the song, and the trailer: the Info frame's counts, seek table, padding and CRCs
    are rewritten to match (its byte counts exclude both tags)."""
    tag = bytearray(info)
    tag[3] = frames[-1].data[3]  # LAME's Info header carries the last frame's mode extension
    at = _tag_offset(info)
    audio = b"".join(frame.data for frame in frames)
    total = len(info) + len(audio)
    tag[at + _FRAMES_AT:at + _FRAMES_AT + 4] = len(frames).to_bytes(4, "big")
    tag[at + _BYTES_AT:at + _BYTES_AT + 4] = total.to_bytes(4, "big")
    tag[at + _TOC_AT:at + _TOC_AT + 100] = seek_table([frame.bitrate_kbps for frame in frames])
    delay = encoder_delay(info)
    padding = len(frames) * FRAME_SAMPLES - delay - samples
    if not 0 <= padding < 4096:
        raise NotJoinable("the frames do not hold the song's length")
    d = at + _DELAY_PADDING_AT
    tag[d:d + 3] = ((delay << 12) | padding).to_bytes(3, "big")
    tag[at + _MUSIC_LENGTH_AT:at + _MUSIC_LENGTH_AT + 4] = total.to_bytes(4, "big")
    tag[at + _MUSIC_CRC_AT:at + _MUSIC_CRC_AT + 2] = crc16(audio).to_bytes(2, "big")
    tag[at + _TAG_CRC_AT:at + _TAG_CRC_AT + 2] = crc16(bytes(tag[:at + _TAG_CRC_AT])).to_bytes(2, "big")
    return prefix + bytes(tag) + audio + trailer


def seek_table(bitrates_kbps: list[int]) -> bytes:
    """The Info frame's 100-entry seek table as LAME fills it, so that a joined file's header equals
    a single pass's: entry i (of 256) is where i% of the song starts, read from a table of running
    bitrate sums that holds one entry per frame until it has 400, then keeps every second entry and
    adds one per two frames from then on (and so on, halving again each time it fills)."""
    sums, every, seen, running = [], 1, 0, 0
    for kbps in bitrates_kbps:
        running += kbps
        seen += 1
        if seen >= every:
            sums.append(running)
            seen = 0
            if len(sums) == 400:
                sums, every = sums[1::2], every * 2
    table = bytearray(100)
    for i in range(1, 100):
        # LAME computes the position in single precision; float32 reproduces its rounding.
        index = min(int(np.floor(np.float32(i) / np.float32(100) * np.float32(len(sums)))), len(sums) - 1)
        table[i] = min(255, int(256.0 * sums[index] / running))
    return bytes(table)
