"""The request schema: aliases, ranges, normalisation, and one readable sentence per error."""

import pytest

from acestep_worker.errors import InputError
from acestep_worker.schema.request import parse


def test_defaults():
    r = parse({})
    assert (r.caption, r.lyrics, r.duration, r.batch_size, r.seed, r.audio_format) == ("", "", None, 1, None, "mp3")
    assert r.inference_steps is None and r.guidance_scale is None  # the model decides


@pytest.mark.parametrize("alias,field,value", [
    ("prompt", "caption", "x"), ("audio_duration", "duration", 42.0), ("keyscale", "key_scale", "A minor"),
    ("timeSignature", "time_signature", "3"), ("language", "vocal_language", "ja"), ("inferenceSteps", "inference_steps", 4),
    ("dit_model", "model", "acestep-v15-base"), ("batchSize", "batch_size", 3),
    ("src_audio_path", "src_audio", "a.wav"), ("ctx_audio_path", "src_audio", "a.wav"),
    ("srcAudio", "src_audio", "https://x/a.mp3"), ("ref_audio", "reference_audio", "r.flac"),
    ("reference_audio_path", "reference_audio", "r.flac"), ("refAudioPath", "reference_audio", "r.flac"),
])
def test_upstream_aliases(alias, field, value):
    assert getattr(parse({alias: value}), field) == value


def test_two_names_for_one_field_is_an_error():
    with pytest.raises(InputError, match="caption and prompt name the same field") as err:
        parse({"caption": "a", "prompt": "b"})
    assert err.value.field == "caption"


@pytest.mark.parametrize("data,field,fragment", [
    ({"duration": 5}, "duration", "between 10 and 600"),
    ({"duration": 601}, "duration", "between 10 and 600"),
    ({"duration": float("nan")}, "duration", "between 10 and 600"),
    ({"batch_size": 0}, "batch_size", "from 1 to 8"),
    ({"batch_size": 9}, "batch_size", "from 1 to 8"),
    ({"bpm": 10}, "bpm", "from 30 to 300"),
    ({"audio_format": "wma"}, "audio_format", "one of mp3, flac"),
    ({"seed": "abc"}, "seed", "-1 for random"),
    ({"seed": 2**40}, "seed", "4294967295"),
    ({"key_scale": "H major"}, "key_scale", "C major"),
    ({"time_signature": "5/4"}, "time_signature", "2, 3, 4 or 6"),
    ({"vocal_language": "klingon"}, "vocal_language", "ISO 639"),
    ({"mp3_bitrate": 100}, "mp3_bitrate", "kbps"),
    ({"caption": "x" * 4001}, "caption", "at most 4000"),
    ({"task_type": "remix"}, "task_type", "cover-nofsq"),
    ({"timesteps": "0.5,0.8"}, "timesteps", "descending"),
    ({"shift": 9}, "shift", "from 1 to 5"),
])
def test_invalid_values_name_field_and_range(data, field, fragment):
    with pytest.raises(InputError) as err:
        parse(data)
    assert err.value.field == field
    assert fragment in str(err.value) and field in str(err.value)


def test_unknown_fields_are_listed():
    with pytest.raises(InputError, match="unknown fields 'colour', 'size'"):
        parse({"colour": 1, "size": 2})


def test_not_an_object():
    with pytest.raises(InputError, match="JSON object"):
        parse(["caption"])


def test_zero_or_negative_duration_means_automatic():
    assert parse({"duration": 0}).duration is None and parse({"duration": -1}).duration is None


@pytest.mark.parametrize("value,expected", [
    (42, (42,)), ("42", (42,)), ("1, 2,3", (1, 2, 3)), ([7, 8], (7, 8)), (-1, None), ("-1", None), ("", None),
])
def test_seed_forms(value, expected):
    batch = len(expected) if expected and len(expected) > 1 else 1
    assert parse({"seed": value, "batch_size": batch}).seed == expected


def test_seed_list_must_match_batch():
    with pytest.raises(InputError, match="seed lists 3 seeds but batch_size is 2"):
        parse({"seed": [1, 2, 3], "batch_size": 2})


@pytest.mark.parametrize("value,expected", [("f# MINOR", "F# minor"), ("Bb maj", "Bb major"), ("C♯ minor", "C# minor")])
def test_key_scale_is_normalised(value, expected):
    assert parse({"key_scale": value}).key_scale == expected


@pytest.mark.parametrize("value,expected", [("4/4", "4"), ("6/8", "6"), (3, "3"), ("2", "2")])
def test_time_signature_is_beats_per_bar(value, expected):
    assert parse({"time_signature": value}).time_signature == expected


def test_lenient_scalar_strings_like_upstream_forms():
    r = parse({"duration": "30", "batch_size": "2", "use_adg": "true", "bpm": "120"})
    assert (r.duration, r.batch_size, r.use_adg, r.bpm) == (30.0, 2, True, 120)


@pytest.mark.parametrize("lyrics,instrumental", [("", True), ("  [Inst] ", True), ("[instrumental]", True),
                                                  ("[Verse]\nla la", False)])
def test_instrumental_detection(lyrics, instrumental):
    assert parse({"lyrics": lyrics}).instrumental is instrumental


def test_audio_sources_null_or_blank_mean_none():
    assert parse({"src_audio": None, "ref_audio": "  "}).src_audio is None
    assert parse({"ref_audio": "  "}).reference_audio is None
    with pytest.raises(InputError, match="src_audio and src_audio_path name the same field"):
        parse({"src_audio": "a", "src_audio_path": "b"})


@pytest.mark.parametrize("text", ["abc", "codes: none", "<|audio_code_|>"])
def test_an_audio_code_string_without_codes_is_refused_not_ignored(text):
    with pytest.raises(InputError, match="^audio_code_string must be 5 Hz audio codes") as err:
        parse({"caption": "x", "audio_code_string": text})
    assert err.value.field == "audio_code_string"


@pytest.mark.parametrize("text", ["", "   ", "<|audio_code_5|><|audio_code_63999|>", "12, 7, 3"])
def test_audio_code_strings_with_codes_or_nothing_are_taken(text):
    assert parse({"caption": "x", "audio_code_string": text}).audio_code_string == text
