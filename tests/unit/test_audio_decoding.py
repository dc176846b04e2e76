"""Decoding user audio: every readable format arrives as 48 kHz stereo float32; every bad file is one
sentence naming the field. Each bad case is generated here, byte for byte."""

import hashlib
import io

import numpy as np
import pytest

from acestep_worker.audio.decode import SAMPLE_RATE, AudioLimits, decode, probe
from acestep_worker.errors import InputError

from ..support.audio import encode, tone, wav


def peak_hz(samples):
    spectrum = np.abs(np.fft.rfft(samples[:, 0]))
    return np.argmax(spectrum) * SAMPLE_RATE / len(samples)


@pytest.mark.parametrize("fmt,subtype,rate", [
    ("WAV", "PCM_16", 44_100), ("WAV", "FLOAT", 48_000), ("FLAC", None, 22_050), ("OGG", "VORBIS", 44_100),
    ("OGG", "OPUS", 48_000), ("MP3", "MPEG_LAYER_III", 44_100)])
def test_each_format_becomes_stereo_48k_float32_at_the_same_pitch(fmt, subtype, rate):
    data = encode(tone(1.0, rate), rate, fmt, subtype)
    audio = decode("src_audio", data)
    assert audio.samples.dtype == np.float32 and audio.samples.shape[1] == 2
    assert abs(audio.duration_s - 1.0) < 0.06  # codec priming may add a few ms
    assert abs(peak_hz(audio.samples) - 1_000) < 5
    assert audio.sha256 == hashlib.sha256(data).hexdigest() and audio.bytes == len(data)
    assert audio.report()["field"] == "src_audio" and audio.report()["format"] == fmt.lower()


def test_mono_is_copied_to_both_channels_and_loud_samples_are_clipped():
    mono = tone(0.5, 48_000, channels=1) * 3
    audio = decode("reference_audio", encode(mono, 48_000, "WAV", "FLOAT"))
    assert np.array_equal(audio.samples[:, 0], audio.samples[:, 1])
    assert audio.samples.max() == 1.0 and audio.samples.min() == -1.0
    assert audio.probe.channels == 1


def _truncated_mp3():
    data = encode(tone(2.0), 44_100, "MP3", "MPEG_LAYER_III")
    return data[: len(data) // 2]


BAD = {
    "empty": (b"", AudioLimits(), "empty"),
    "not audio": (b"<html>not a song</html>" * 20, AudioLimits(), "not audio"),
    "text posing as a WAV": (b"RIFF\x00\x00\x00\x00WAVEjunk", AudioLimits(), "not audio"),
    "truncated WAV": (wav()[:50_000], AudioLimits(), "truncated"),
    "truncated FLAC": (encode(tone(2.0), 44_100, "FLAC")[:9_000], AudioLimits(), "truncated"),
    "truncated MP3": (_truncated_mp3(), AudioLimits(), "truncated"),
    "NaN samples": (encode(np.full((4_800, 2), np.nan, np.float32), 48_000, "WAV", "FLOAT"), AudioLimits(), "NaN"),
    "infinite samples": (encode(np.full((4_800, 2), np.inf, np.float32), 48_000, "WAV", "FLOAT"), AudioLimits(),
                         "infinite"),
    "too long": (wav(seconds=3.0), AudioLimits(max_seconds=2.0), "limit is 2 s"),
    "too big": (wav(), AudioLimits(max_bytes=1_000), "the limit is 0.0 MB"),
    "8 channels": (wav(channels=8), AudioLimits(), "8 channels"),
    "8 kHz": (wav(rate=8_000), AudioLimits(), "8000 Hz"),
    "too short": (wav(seconds=0.01), AudioLimits(), "at least 0.04 s"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_audio_is_one_sentence_naming_the_field(case):
    data, limits, fragment = BAD[case]
    with pytest.raises(InputError) as err:
        decode("src_audio", data, limits)
    message = str(err.value)
    assert err.value.field == "src_audio" and message.startswith("src_audio ")
    assert fragment in message and "\n" not in message and len(message) < 300


@pytest.mark.parametrize("case", ["NaN samples", "infinite samples"])
def test_a_refusal_found_while_decoding_is_not_wrapped_in_another(case):
    data, limits, _ = BAD[case]
    with pytest.raises(InputError) as err:
        decode("src_audio", data, limits)
    message = str(err.value)  # once: "src_audio is truncated or corrupt (src_audio contains NaN ...)" before
    assert message.count("src_audio") == 1 and "corrupt" not in message and "(" not in message


def test_the_header_alone_refuses_a_long_file_before_decoding_it():
    long_file = io.BytesIO(wav(seconds=5.0))
    with pytest.raises(InputError, match="5.0 s long; the limit is 4 s"):
        probe("src_audio", long_file, AudioLimits(max_seconds=4.0))
    assert probe("src_audio", io.BytesIO(wav())).sample_rate == 44_100


def test_a_streaming_wav_without_a_length_is_not_called_truncated():
    data = bytearray(wav(rate=48_000))
    data[40:44] = b"\xff\xff\xff\xff"  # the data chunk size a streaming writer leaves unknown
    assert decode("src_audio", bytes(data)).duration_s > 0.9


def test_resampling_keeps_the_exact_length():
    assert decode("src_audio", encode(tone(1.0, 44_100), 44_100)).samples.shape == (48_000, 2)


def test_a_small_file_of_long_high_rate_audio_decodes_in_bounded_memory():
    import tracemalloc

    silence = encode(np.zeros((30 * 384_000, 2), np.float32), 384_000, "FLAC")  # tiny file, 92 MB as PCM
    tracemalloc.start()
    try:
        audio = decode("src_audio", silence)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert audio.samples.shape == (30 * 48_000, 2) and len(silence) < 2_000_000
    assert peak < 40_000_000  # the 48 kHz result (11.5 MB) and a few blocks, not the 384 kHz PCM
