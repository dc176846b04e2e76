"""Encoding: every format decodes back to the same length and channel count."""

import numpy as np
import pytest

from acestep_worker.audio.encode import decode, encode, encode_all
from acestep_worker.schema.formats import FORMAT_OF_SUFFIX, FORMATS


def _tone(seconds=2.0, rate=48000):
    t = np.arange(int(seconds * rate)) / rate
    left = 0.5 * np.sin(2 * np.pi * 440 * t)
    right = 0.5 * np.sin(2 * np.pi * 660 * t)
    return np.stack([left, right], axis=1).astype(np.float32)


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_round_trip_keeps_duration_and_channels(fmt):
    audio = _tone()
    data = encode(audio, 48000, fmt)
    decoded, rate = decode(data)
    assert rate == 48000 and decoded.shape[1] == 2
    assert abs(decoded.shape[0] - audio.shape[0]) <= 0.01 * audio.shape[0]
    # the tone survives: left and right stay distinct and loud
    assert 0.3 < np.abs(decoded).max() <= 1.0
    assert np.corrcoef(decoded[:, 0], decoded[:, 1])[0, 1] < 0.5


def test_lossless_formats_are_exact_to_their_bit_depth():
    audio = _tone()
    assert np.abs(decode(encode(audio, 48000, "wav32"))[0] - audio).max() == 0
    assert np.abs(decode(encode(audio, 48000, "flac"))[0] - audio).max() < 1 / 2**14


@pytest.mark.parametrize("kbps", [64, 128, 320])
def test_mp3_bitrate_is_honoured(kbps):
    data = encode(_tone(seconds=10.0), 48000, "mp3", bitrate_kbps=kbps)
    measured = len(data) * 8 / 10 / 1000
    assert abs(measured - kbps) / kbps < 0.05


def test_tags_are_written():
    import io

    import soundfile as sf

    data = encode(_tone(), 48000, "flac", tags={"comment": "random weights"})
    assert sf.SoundFile(io.BytesIO(data)).comment == "random weights"


def test_clipping_input_is_limited():
    loud = _tone() * 4
    decoded, _ = decode(encode(loud, 48000, "wav32"))
    assert np.abs(decoded).max() <= 1.0


@pytest.mark.parametrize("title", ["", "\x00", "a\x00b", "日本語", "x" * 2000])
def test_awkward_tags_never_fail_an_encode(title):
    decoded, _ = decode(encode(_tone(0.5), 48000, "mp3", tags={"title": title, "comment": "c"}))
    assert decoded.shape[1] == 2


def test_aac_is_an_m4a_file_with_tags_and_its_own_content_type():
    import io

    import av

    data = encode(_tone(), 48000, "aac", tags={"title": "a song", "comment": "random weights"})
    with av.open(io.BytesIO(data)) as container:
        assert container.format.name.split(",")[0] in {"mov", "mp4", "m4a"}
        assert container.streams.audio[0].codec_context.name == "aac"
        assert container.metadata.get("title") == "a song"
    assert FORMATS["aac"].extension == "m4a" and FORMATS["aac"].content_type == "audio/mp4"
    assert FORMAT_OF_SUFFIX["m4a"] == "aac"


def test_aac_keeps_the_timing_of_the_input():
    """The encoder's priming samples are trimmed on decoding: the waveform is not shifted."""
    rng = np.random.default_rng(0)
    audio = np.clip(0.2 * rng.standard_normal((48000, 2)), -1, 1).astype(np.float32)
    decoded, _ = decode(encode(audio, 48000, "aac"))
    errors = {lag: np.abs(decoded[100 + lag:40000 + lag] - audio[100:40000]).mean() for lag in range(-64, 65)}
    assert min(errors, key=errors.get) == 0


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac"])
def test_a_batch_encoded_in_parallel_equals_songs_encoded_one_by_one(fmt):
    songs = [(_tone(seconds=1.0 + i), 48000) for i in range(3)]
    together = [decode(data)[0] for data in encode_all(songs, fmt)]
    alone = [decode(encode(audio, rate, fmt))[0] for audio, rate in songs]  # Ogg serials are random
    assert len(together) == 3 and all(np.array_equal(a, b) for a, b in zip(together, alone))
