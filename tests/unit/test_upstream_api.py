"""Upstream's current request fields: null as the default, key spellings, sampling switches, unused fields
that say why, and documented fields all defined."""

import pytest

from acestep_worker.errors import InputError
from acestep_worker.schema.request import GenerationRequest, JobRequest, parse, unused_fields

from ..support.upstream_api import DOC_FIELDS, PENDING_ELSEWHERE


@pytest.mark.parametrize("name", list(JobRequest.model_fields))
def test_null_means_the_default_for_every_field(name):
    assert parse({name: None}, JobRequest) == parse({}, JobRequest)


def test_null_alias_does_not_clash_with_a_value():
    assert parse({"caption": "x", "prompt": None}).caption == "x"


def test_unknown_fields_are_still_refused_even_when_null():
    with pytest.raises(InputError, match="unknown field 'colour'; accepted fields are: caption"):
        parse({"colour": None})


@pytest.mark.parametrize("spelling,expected", [
    ("Am", "A minor"), ("C#m", "C# minor"), ("Bbm", "Bb minor"), ("A minor", "A minor"), ("F# Major", "F# major"),
    ("Ebmaj", "Eb major"), ("C", "C major"), ("CM", "C major"), ("g min", "G minor"), ("Db", "Db major"),
    ("C sharp minor", "C# minor"), ("E-flat major", "Eb major"), ("F♯m", "F# minor"),
])
def test_key_spellings_users_send(spelling, expected):
    assert parse({"key_scale": spelling}).key_scale == expected


def test_sampling_switches_take_upstreams_off_values():
    assert parse({"lm_top_k": -1}).lm_top_k == 0 and parse({"lm_top_p": 1.5}).lm_top_p == 1.0
    with pytest.raises(InputError, match="lm_top_p must be a number above 0"):
        parse({"lm_top_p": 0})


def test_every_unused_field_says_why():
    unused = {name: (f.json_schema_extra or {}).get("unused") for name, f in GenerationRequest.model_fields.items()}
    assert {"lm_backend", "lm_model_path", "allow_lm_batch"} <= {n for n, why in unused.items() if why}
    assert not {"lm_repetition_penalty", "constrained_decoding"} & {n for n, why in unused.items() if why}
    assert all(len(why) > 20 for why in unused.values() if why)


def test_unused_fields_are_those_the_request_sent():
    request = parse({"lm_backend": "pt", "constrained": True, "caption": "x"})
    assert set(unused_fields(request)) == {"lm_backend"}
    assert "one LM backend" in unused_fields(request)["lm_backend"]
    assert unused_fields(parse({"caption": "x"})) == {}


def test_planner_fields_a_task_ignores_are_reported_only_when_they_ask_for_something():
    """Upstream skips the LM for tasks that only transform a source, and writes no codes where a source
    or given codes lead: fields that ask the planner for something are reported; `false` asks nothing."""
    cover = parse({"task_type": "cover", "src_audio": "https://example.com/a.wav", "thinking": True,
                   "use_format": True, "use_cot_metas": False, "sample_query": ""})
    assert set(unused_fields(cover)) == {"thinking", "use_format"}
    assert "does not run for it" in unused_fields(cover)["use_format"]
    lego = parse({"task_type": "lego", "src_audio": "https://example.com/a.wav", "thinking": False, "use_format": True})
    assert unused_fields(lego) == {}  # lego runs the planner; thinking false asks for nothing
    codes = parse({"audio_code_string": "<|audio_code_5|>", "thinking": True, "src_audio": "https://example.com/a"})
    assert set(unused_fields(codes)) == {"thinking", "src_audio"}
    assert unused_fields(parse({"audio_code_string": "<|audio_code_5|>", "thinking": False})) == {}


def _known(name: str) -> bool:
    return any(name == field or name in (getattr(f.validation_alias, "choices", None) or ())
               for field, f in GenerationRequest.model_fields.items())


def test_pending_fields_are_exactly_those_not_yet_in_the_schema():
    not_defined = {name for name in DOC_FIELDS if not _known(name)}
    assert not_defined == PENDING_ELSEWHERE
