"""Trimming an upload to the range the page's "from (s)" / "to (s)" fields name: the kept samples are
exactly the source's, bad ranges are one sentence naming the control, and nothing is left behind."""

import numpy as np
import pytest
import soundfile as sf

from acestep_worker.audio.decode import AudioLimits
from acestep_worker.audio.trim import TrimLabels, TrimRange, cut, parse_range
from acestep_worker.errors import InputError

from ..support.audio import encode

LABELS = TrimLabels("src_audio", "Source from (s)", "Source to (s)")


def _song(tmp_path, seconds=3.0, rate=44_100, fmt="WAV", subtype="PCM_16", name="take.wav"):
    rng = np.random.default_rng(0)
    data = (rng.integers(-20_000, 20_000, (int(seconds * rate), 2)) / 32768).astype(np.float32)
    path = tmp_path / name
    path.write_bytes(encode(data, rate, fmt, subtype))
    return path


def test_the_kept_range_is_the_sources_samples_bit_for_bit(tmp_path):
    source, target = _song(tmp_path), tmp_path / "cut.flac"
    kept = cut(LABELS, source, target, TrimRange(0.5, 2.0), AudioLimits())
    original, _ = sf.read(source, dtype="int16")
    trimmed, rate = sf.read(target, dtype="int16")
    assert kept == pytest.approx(1.5) and rate == 44_100 and sf.info(target).subtype == "PCM_16"
    assert np.array_equal(trimmed, original[22_050:88_200])


def test_an_open_end_keeps_the_rest_and_an_open_start_keeps_the_beginning(tmp_path):
    source = _song(tmp_path)
    assert cut(LABELS, source, tmp_path / "tail.flac", TrimRange(2.25, None), AudioLimits()) == pytest.approx(0.75)
    assert cut(LABELS, source, tmp_path / "head.flac", TrimRange(None, 1.0), AudioLimits()) == pytest.approx(1.0)


def test_compressed_sources_are_kept_at_24_bits(tmp_path):
    source = _song(tmp_path, rate=48_000, fmt="OGG", subtype="VORBIS", name="take.ogg")
    target = tmp_path / "cut.flac"
    assert cut(LABELS, source, target, TrimRange(1.0, 2.0), AudioLimits()) == pytest.approx(1.0, abs=0.001)
    assert sf.info(target).subtype == "PCM_24"


def test_a_source_over_the_length_cap_can_be_trimmed_under_it(tmp_path):
    source, limits = _song(tmp_path, seconds=3.0), AudioLimits(max_seconds=2.0)
    assert cut(LABELS, source, tmp_path / "ok.flac", TrimRange(0.5, 2.0), limits) == pytest.approx(1.5)
    with pytest.raises(InputError, match=r"longer than 2 s \(ACESTEP_MAX_AUDIO_SECONDS\)"):
        cut(LABELS, source, tmp_path / "long.flac", TrimRange(0.5, None), limits)
    assert not (tmp_path / "long.flac").exists()


@pytest.mark.parametrize("start,end,message", [
    ("abc", "", r"Source from \(s\) is 'abc'; give seconds as a number from 0"),
    ("-1", "", r"Source from \(s\) is '-1'"),
    ("", "nan", r"Source to \(s\) is 'nan'"),
    ("2", "1", r"Source to \(s\) \(1\) must be after Source from \(s\) \(2\)"),
    ("2", "2", r"must be after"),
])
def test_typed_values_that_are_not_a_range_are_refused_by_name(start, end, message):
    with pytest.raises(InputError, match=message) as caught:
        parse_range(LABELS, start, end)
    assert caught.value.field == "src_audio"


def test_empty_fields_mean_the_whole_song():
    assert parse_range(LABELS, "", None).whole and parse_range(LABELS, " 1.5 ", "3").end_s == 3.0


@pytest.mark.parametrize("trim,message", [
    (TrimRange(3.5, None), r"Source from \(s\) \(3.5\) is past the end of the uploaded song \(3.00 s long\)"),
    (TrimRange(1.0, 4.0), r"Source to \(s\) \(4\) is past the end of the uploaded song \(3.00 s long\)"),
    (TrimRange(1.0, 1.01), r"keep 0.010 s of the uploaded song; keep at least 0.04 s"),
])
def test_ranges_outside_the_song_are_refused_and_leave_no_file(tmp_path, trim, message):
    source, target = _song(tmp_path), tmp_path / "cut.flac"
    with pytest.raises(InputError, match=message):
        cut(LABELS, source, target, trim, AudioLimits())
    assert not target.exists()


def test_a_file_that_is_not_audio_is_refused_by_field(tmp_path):
    source = tmp_path / "notes.wav"
    source.write_bytes(b"not a song" * 100)
    with pytest.raises(InputError, match="src_audio is not audio"):
        cut(LABELS, source, tmp_path / "cut.flac", TrimRange(0.0, 1.0), AudioLimits())
    assert not (tmp_path / "cut.flac").exists()
