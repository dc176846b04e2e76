"""Segment-parallel MP3: a long song encoded as segments on several cores and joined is a valid,
gapless file that decodes like the single pass, to within the codec's own noise, with no clicks."""

import dataclasses

import numpy as np
import pytest

from acestep_worker.audio import encode as audio_encode
from acestep_worker.audio import mp3_segments, mp3_stream, segmenting
from acestep_worker.audio.encode import decode, encode

from ..support.repo import load_bench

RATE = 48_000
TAGS = {"comment": "RANDOM-WEIGHT TEST MODEL: noise, not music", "title": "a title"}  # as delivery/files.song_tags sets them


_music = load_bench("encode").music_signal  # (seconds, seed=0): notes with transients and noise bursts, 48 kHz stereo


@pytest.fixture
def short_segments(monkeypatch):
    """MP3 segments from 2.5 s, so a 12 s song splits four ways in a test."""
    monkeypatch.setitem(audio_encode.FORMATS, "mp3", dataclasses.replace(audio_encode.FORMATS["mp3"], segment_min_s=2.5))
    joined = []
    real = mp3_segments.encode_segmented

    def spy(*args, **kwargs):
        joined.append(real(*args, **kwargs))
        return joined[-1]

    monkeypatch.setattr(mp3_segments, "encode_segmented", spy)
    return joined


@pytest.mark.parametrize("seconds,seed", [(12.0, 0), (11.3, 1)])
def test_segmented_mp3_decodes_like_the_single_pass_without_clicks(short_segments, seconds, seed):
    audio = _music(seconds, seed)
    single = encode(audio, RATE, "mp3", tags=TAGS)
    segmented = encode(audio, RATE, "mp3", tags=TAGS, threads=4)
    assert len(short_segments) == 1 and short_segments[0] is not None  # the segmented path ran and joined
    assert segmented[:300] == single[:300] and segmented[-128:] == single[-128:]  # same ID3v2, Info start, ID3v1

    reference, _ = decode(single)
    joined, rate = decode(segmented)
    assert rate == RATE and joined.shape == audio.shape == reference.shape  # gapless: the song's exact length
    codec_noise = reference - audio
    difference = joined - reference
    assert np.sqrt((difference ** 2).mean()) <= 0.1 * np.sqrt((codec_noise ** 2).mean())
    frames = [first for first, _ in segmenting.plan(audio.shape[0], 4, mp3_stream.FRAME_SAMPLES)][1:]
    for frame in frames:  # around each join: no error beyond what the codec itself makes there
        near = slice((frame - 4) * mp3_stream.FRAME_SAMPLES, (frame + 4) * mp3_stream.FRAME_SAMPLES)
        assert np.abs(difference[near]).max() <= np.abs(codec_noise[near]).max()
        jump = np.abs(np.diff(joined[near], axis=0)).max()
        assert jump <= np.abs(np.diff(reference[near], axis=0)).max() + np.abs(codec_noise[near]).max()


def test_short_songs_single_cores_and_low_bitrates_encode_in_one_pass(short_segments):
    encode(_music(4.0), RATE, "mp3", threads=4)  # shorter than two segments
    encode(_music(6.0), RATE, "mp3", threads=1)
    data = encode(_music(6.0), RATE, "mp3", threads=4, bitrate_kbps=56)  # no Info frame fits in 168 bytes
    assert short_segments == [] and b"Info" not in data[:1000]


def test_a_batch_shares_the_cores_between_songs_and_segments(short_segments):
    songs = [(_music(6.0, seed), RATE) for seed in range(2)]
    datas = audio_encode.encode_all(songs, "mp3", threads=4, tags=TAGS)  # two songs, two segments each
    assert len(short_segments) == 2 and all(joined is not None for joined in short_segments)
    for (audio, _), data in zip(songs, datas):
        assert decode(data)[0].shape == audio.shape


def test_without_a_valid_join_the_song_is_encoded_in_one_pass(short_segments, monkeypatch):
    monkeypatch.setattr(mp3_segments, "WARM_FRAMES", 10_000)  # no frame qualifies for a join
    audio = _music(6.0)
    assert encode(audio, RATE, "mp3", threads=2) == encode(audio, RATE, "mp3")
    assert short_segments == [None]


def test_a_failure_inside_the_joiner_falls_back_to_the_one_pass(short_segments, monkeypatch, caplog):
    def broken(data):
        raise IndexError("a stream the parser did not expect")

    monkeypatch.setattr(mp3_segments, "parse", broken)
    audio = _music(6.0)
    assert encode(audio, RATE, "mp3", threads=2) == encode(audio, RATE, "mp3")
    assert "segmented MP3 failed" in caplog.text


@pytest.mark.parametrize("seconds", [0.5, 10.0, 20.5])
def test_reassembling_a_single_pass_reproduces_its_info_frame_byte_for_byte(seconds):
    """Frame and byte counts, LAME's seek table (including its halving past 400 frames), delay and
    padding, and both CRC-16s are rebuilt exactly as the encoder wrote them."""
    audio = _music(seconds)
    data = encode(audio, RATE, "mp3", tags=TAGS)
    stream = mp3_stream.parse(data)
    assert stream.prefix.startswith(b"ID3")  # libsndfile writes ID3v2 when a comment is set
    assert mp3_stream.assemble(stream.prefix, stream.info, stream.frames, stream.trailer, audio.shape[0]) == data


def test_crc16_is_the_arc_variant():
    assert mp3_stream.crc16(b"123456789") == 0xBB3D
    long = bytes(range(256)) * 41  # several numpy lanes and a partial one
    crc = 0
    for byte in long:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    assert mp3_stream.crc16(long) == crc


def test_streams_this_module_cannot_join_are_refused():
    with pytest.raises(mp3_stream.NotJoinable):
        mp3_stream.parse(b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\xff\xfb" * 10)  # a frame cut short
    with pytest.raises(mp3_stream.NotJoinable):
        mp3_stream.parse(encode(_music(0.5), RATE, "flac"))


def test_a_44_1_khz_song_with_padded_frames_joins_gaplessly(short_segments):
    """At 44.1 kHz frames differ in size by a padding byte; the reservoir copy must not assume equal
    frames (a join at 48 kHz never sees that)."""
    audio = _music(6.0)
    reference, _ = decode(encode(audio, 44_100, "mp3"))
    joined, rate = decode(encode(audio, 44_100, "mp3", threads=2))
    assert short_segments[0] is not None and rate == 44_100 and joined.shape == audio.shape
    codec_noise = reference - audio
    assert np.sqrt(((joined - reference) ** 2).mean()) <= 0.1 * np.sqrt((codec_noise ** 2).mean())
