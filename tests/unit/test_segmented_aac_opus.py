"""Segment-parallel AAC (.m4a) and Opus: a long song encoded as segments on several cores and joined
is one valid file with the one pass's timestamps, length and tags, that decodes as well as the one
pass (same SNR against the input, also around each join) and without clicks at the joins."""

import dataclasses
import io

import av
import numpy as np
import pytest

from acestep_worker.audio import av_codecs, av_segments, segmenting
from acestep_worker.audio import encode as audio_encode
from acestep_worker.audio.encode import decode, encode

from ..support.repo import load_bench

TAGS = {"comment": "RANDOM-WEIGHT TEST MODEL: noise, not music", "title": "a title"}  # as delivery/files.song_tags sets them
CODEC_OF = {"aac": "aac", "opus": "libopus"}


_bench = load_bench("encode")  # the benchmark's signals, so tests and figures use the same ones
_music = _bench.music_signal  # (seconds, seed=0): notes with attacks and noise bursts, 48 kHz stereo
_tone = _bench.test_signal  # (seconds, seed=0): a tone, white noise and a random walk per channel


@pytest.fixture
def short_segments(monkeypatch):
    """AAC and Opus segments from 2 s, so an 8 s song splits three ways in a test; records what
    each segmented encode returned (None: it fell back)."""
    for fmt in CODEC_OF:
        monkeypatch.setitem(audio_encode.FORMATS, fmt, dataclasses.replace(audio_encode.FORMATS[fmt], segment_min_s=2.0))
    joined = []
    real = av_segments.encode_segmented

    def spy(*args, **kwargs):
        joined.append(real(*args, **kwargs))
        return joined[-1]

    monkeypatch.setattr(av_segments, "encode_segmented", spy)
    return joined


def _snr_db(reference: np.ndarray, other: np.ndarray) -> float:
    return float(10 * np.log10((reference ** 2).sum() / ((other - reference) ** 2).sum()))


def _layout(data: bytes) -> tuple:
    """What the container says: tags, codec header, and every packet's timestamp and duration."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        packets = [(p.pts, p.duration) for p in container.demux(stream) if p.size]
        return dict(container.metadata), bytes(stream.codec_context.extradata or b""), packets


@pytest.mark.parametrize("fmt,rate,channels,signal", [
    ("aac", 48_000, 2, _music), ("aac", 44_100, 2, _music), ("aac", 48_000, 1, _music), ("aac", 44_100, 1, _music),
    ("aac", 48_000, 2, _tone),  # its channels often take different windows: joins between separate ics_info
    ("opus", 48_000, 2, _music), ("opus", 48_000, 1, _music)])
def test_a_segmented_song_decodes_like_the_one_pass_without_clicks(short_segments, fmt, rate, channels, signal):
    audio = np.ascontiguousarray(signal(8.0)[:, :channels])
    single = encode(audio, rate, fmt, tags=TAGS)
    segmented = encode(audio, rate, fmt, tags=TAGS, threads=3)
    assert len(short_segments) == 1 and short_segments[0] is not None  # the segmented path ran and joined
    assert _layout(segmented) == _layout(single)  # tags, header, priming/pre-skip, timestamps, durations

    reference, _ = decode(single)
    joined, got_rate = decode(segmented)
    assert got_rate == rate and joined.shape == reference.shape  # exactly the one pass's length
    samples = audio.shape[0]
    reference, joined = reference[:samples], joined[:samples]  # AAC decoders may add the last frame's tail
    assert _snr_db(audio, joined) >= _snr_db(audio, reference) - 0.5
    joining = av_segments.CODECS[CODEC_OF[fmt]]
    frame = joining.frame_samples
    # No frame's error over 10 dB above the one pass's unless it is 20 dB below the music. A join
    # without lead-out (a dropout) or lead-in (a cold encoder) breaks this by 5-19 dB; a one pass of
    # the input plus a -100 dB dither breaks it in ~1 frame of 1,000 (bench/README.md).
    over_bound_db = _bench.frames_over_join_bound_db(audio, reference, joined, frame)
    for first, _ in segmenting.plan(samples, 3, frame)[1:]:
        near = range(first - joining.lead_in_frames + joining.warm_frames - 2, first + 4)  # where a join may be
        assert over_bound_db[list(near)].max() <= 0
        around = slice(near[0] * frame, near[-1] * frame)
        codec_error = np.abs(reference[around] - audio[around]).max()
        jumps = [np.abs(np.diff(x[around], axis=0)).max() for x in (joined, reference)]
        assert jumps[0] <= jumps[1] + codec_error  # no click


def test_short_songs_and_single_cores_encode_in_one_pass(short_segments):
    encode(_music(3.0), 48_000, "aac", threads=4)  # shorter than two segments
    encode(_music(6.0), 48_000, "opus", threads=1)
    assert short_segments == []


def test_a_batch_shares_the_cores_between_songs_and_segments(short_segments):
    songs = [(_music(5.0, seed), 48_000) for seed in range(2)]
    datas = audio_encode.encode_all(songs, "aac", threads=4, tags=TAGS)  # two songs, two segments each
    assert len(short_segments) == 2 and all(joined is not None for joined in short_segments)
    for (audio, rate), data in zip(songs, datas):
        assert decode(data)[0].shape == decode(encode(audio, rate, "aac"))[0].shape


def test_without_a_valid_join_the_song_is_encoded_in_one_pass(short_segments, monkeypatch):
    monkeypatch.setitem(av_segments.CODECS, "aac", dataclasses.replace(av_segments.CODECS["aac"], warm_frames=10_000))
    audio = _music(5.0)
    assert encode(audio, 48_000, "aac", threads=2, tags=TAGS) == encode(audio, 48_000, "aac", tags=TAGS)
    assert short_segments == [None]


def test_a_failure_inside_the_joiner_falls_back_to_the_one_pass(short_segments, monkeypatch, caplog):
    def broken(*args):
        raise IndexError("a stream the joiner did not expect")

    monkeypatch.setattr(av_segments, "join", broken)
    audio = _music(5.0)
    assert encode(audio, 48_000, "aac", threads=2) == encode(audio, 48_000, "aac")
    assert "segmented AAC failed" in caplog.text


def test_streams_not_laid_out_in_whole_frames_are_refused(short_segments, monkeypatch):
    """A codec whose packets are not the table's frame size (another FFmpeg's libopus frame
    duration, say) must not be joined by timestamps computed from the table."""
    monkeypatch.setitem(av_segments.CODECS, "libopus",
                        dataclasses.replace(av_segments.CODECS["libopus"], frame_samples=1920))
    audio = _music(5.0)
    assert decode(encode(audio, 48_000, "opus", threads=2))[0].shape == audio.shape
    assert short_segments == [None]


def test_aac_window_sequences_parsed_from_the_packets_follow_the_standards_order():
    """ONLY_LONG (0) is followed by LONG or LONG_START (1); LONG_START by EIGHT_SHORT (2); EIGHT_SHORT
    by EIGHT_SHORT or LONG_STOP (3); LONG_STOP by LONG or LONG_START. Bits read from the wrong
    place would break this order; the notes' attacks make the encoder use all four."""
    allowed = {0: {0, 1}, 1: {2}, 2: {2, 3}, 3: {0, 1}}
    seen = set()
    for audio in (_music(4.0)[:, :1], _music(4.0), _tone(8.0)):  # the tone's channels often window apart
        packets = av_codecs.encode_packets(np.ascontiguousarray(audio), 48_000, codec="aac", bitrate_kbps=192)
        windows = [av_segments.aac_window(bytes(p)) for p in packets]
        seen |= {w[0] for w in windows if w is not None}
        sequences = [w[1] >> 1 if w is not None else None for w in windows]
        assert {0, 2, 3} <= set(sequences)
        for previous, following in zip(sequences, sequences[1:]):
            if previous is not None and following is not None:
                assert following in allowed[previous]
    assert seen == {"single", "shared", "separate"}


def _aac_packet(window: int, element: str = "shared") -> bytes:
    """The first bits of a raw AAC block: a channel pair sharing ics_info or not, a single channel,
    or a fill element."""
    bits = {"single": (0 << 21) | (0x80 << 9) | (window << 5),  # id 0, tag, global_gain, ics_info
            "shared": (1 << 21) | (1 << 16) | (window << 12),  # id 1, tag, common_window, ics_info
            "separate": (1 << 21) | (0x80 << 8) | (window << 4),  # id 1, tag, 0, global_gain, ics_info
            "fill": 6 << 21}[element]
    return bits.to_bytes(3, "big") + b"\0" * 8


def test_the_join_goes_at_the_last_packet_near_the_cut_whose_windows_agree():
    joining = av_segments.CODECS["aac"]
    earlier = [_aac_packet(0) for _ in range(40)]
    later = [_aac_packet(0) for _ in range(30)]  # song packets 10 .. 39
    earlier[31], later[31 - 10] = _aac_packet(2), _aac_packet(6)  # packet 31: different windows
    earlier[30], later[30 - 10] = _aac_packet(0, "separate"), _aac_packet(0)  # one stream shares, one does not
    earlier[29], later[29 - 10] = _aac_packet(0, "fill"), _aac_packet(0, "fill")  # no window to compare
    # Joining at 32 (after packet 31) or 31 (after 30) would pair windows the later stream did not
    # assume, 30 follows no readable window; 29 is the last packet at or before cut + 1 = 32 where
    # both streams coded packet j - 1 alike.
    assert av_segments._join_packet(earlier, later, lowest=12, start=10, cut=31, joining=joining) == 29
    assert av_segments._join_packet(earlier, later, lowest=31, start=10, cut=31, joining=joining) is None
    earlier[30], later[30 - 10] = _aac_packet(4, "separate"), _aac_packet(4, "separate")
    assert av_segments._join_packet(earlier, later, lowest=12, start=10, cut=31, joining=joining) == 31
    assert av_segments.aac_window(_aac_packet(5, "single")) == ("single", 5)
