"""Upstream's analysis flags as a job mode: parsed as real fields, resolved once into the plan, and refused
at submission (by field) when the source or the planner they need is missing."""

import pytest

from acestep_worker.errors import InputError, PlannerUnavailableError
from acestep_worker.models.variants import detect_variant
from acestep_worker.pipeline.plan import EngineFacts, job_mode, resolve
from acestep_worker.schema.request import (
    GenerationRequest,
    JobRequest,
    parse,
    unused_fields,
)
from acestep_worker.schema.values import format_audio_codes, parse_audio_codes

FLAGS = ("extract_codes_only", "full_analysis_only", "analysis_only")


def _plan(planner_loaded=True, **fields):
    facts = EngineFacts(detect_variant("acestep-v15-turbo", {}), {"acestep-v15-turbo": "turbo"}, planner_loaded)
    return resolve(parse(fields), facts)


@pytest.mark.parametrize("flag", FLAGS)
def test_the_analysis_flags_are_fields_the_server_acts_on(flag):
    request = parse({flag: True, "src_audio": "https://example.com/a.wav"}, JobRequest)
    assert getattr(request, flag) is True and flag not in unused_fields(request)
    allowed = GenerationRequest.model_fields[flag].json_schema_extra
    assert "unused" not in allowed and "no audio" in allowed["allowed"]
    camel = {"extract_codes_only": "extractCodesOnly", "full_analysis_only": "fullAnalysisOnly",
             "analysis_only": "analysisOnly"}[flag]
    assert getattr(parse({camel: "true"}), flag) is True  # form posts send text


def test_upstreams_order_decides_when_several_flags_are_sent():
    assert job_mode(parse({})) == "generate"
    assert job_mode(parse({"analysis_only": True, "full_analysis_only": True})) == "full_analysis_only"
    assert job_mode(parse({"full_analysis_only": True, "extract_codes_only": True})) == "extract_codes_only"


@pytest.mark.parametrize("flag", ["extract_codes_only", "full_analysis_only"])
def test_an_audio_analysis_without_a_source_is_refused_naming_src_audio(flag):
    with pytest.raises(InputError) as refused:
        _plan(**{flag: True})
    assert refused.value.field == "src_audio" and flag in str(refused.value)


@pytest.mark.parametrize("flag", ["full_analysis_only", "analysis_only"])
def test_the_planner_analyses_are_refused_without_a_planner_naming_the_flag(flag):
    with pytest.raises(PlannerUnavailableError) as refused:
        _plan(planner_loaded=False, src_audio="https://example.com/a.wav", **{flag: True})
    assert refused.value.field == flag and "ACESTEP_LM_MODEL_PATH" in str(refused.value)


def test_code_extraction_needs_no_planner_and_fetches_only_the_source():
    plan = _plan(planner_loaded=False, extract_codes_only=True, src_audio="https://example.com/a.wav",
                 reference_audio="https://example.com/r.wav", caption="x", duration=30, thinking=True)
    assert plan.mode == "extract_codes_only" and not plan.generates
    assert plan.audio_fields == ("src_audio",)
    unused = unused_fields(plan.request, plan.replaced)
    assert set(unused) == {"reference_audio", "caption", "duration", "thinking"}
    assert "makes no audio" in unused["caption"]


def test_the_metadata_analysis_reads_caption_and_lyrics_and_no_audio():
    plan = _plan(analysis_only=True, caption="lofi", lyrics="[Verse]\nla", src_audio="https://example.com/a.wav",
                 lm_temperature=0.5)
    assert plan.mode == "analysis_only" and plan.audio_fields == ()
    assert set(unused_fields(plan.request, plan.replaced)) == {"src_audio"}


def test_a_generation_plan_is_unchanged_by_the_mode():
    plan = _plan(caption="x", duration=10)
    assert plan.mode == "generate" and plan.generates and plan.length.seconds


def test_the_code_string_is_upstreams_tokens_without_separators():
    assert format_audio_codes([12, 7, 63999]) == "<|audio_code_12|><|audio_code_7|><|audio_code_63999|>"
    assert parse_audio_codes(format_audio_codes(range(5))) == [0, 1, 2, 3, 4]
