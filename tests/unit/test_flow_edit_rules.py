"""Flow-edit's fields and rules without a model: names, ranges, which tasks and models take it, what it
leaves unused, and the sampling plan it runs under."""

import pytest

from acestep_worker.errors import InputError
from acestep_worker.models.variants import detect_variant
from acestep_worker.pipeline.plan import EngineFacts, resolve
from acestep_worker.pipeline.sampling_plan import sampling_plan
from acestep_worker.schema.request import parse, unused_fields

INSTALLED = {"acestep-v15-turbo": "turbo", "acestep-v15-base": "base", "acestep-v15-xl-sft": "xl-sft"}
SOURCE = "https://example.com/take.mp3"


def _plan(fields, model="acestep-v15-base", **kwargs):
    family = INSTALLED[model]
    config = {"is_turbo": family == "turbo", "hidden_size": 64 if family.startswith("xl") else 32,
              "encoder_hidden_size": 32}
    facts = EngineFacts(detect_variant(model, config), INSTALLED, False)
    return resolve(parse(fields), facts, (1,), **kwargs)


def test_upstream_names_and_camel_case_aliases_with_upstreams_defaults():
    plain = parse({})
    assert (plain.flow_edit_morph, plain.flow_edit_source_caption, plain.flow_edit_source_lyrics) == (False, "", "")
    assert (plain.flow_edit_n_min, plain.flow_edit_n_max, plain.flow_edit_n_avg) == (0.0, 1.0, 1)
    camel = parse({"flowEditMorph": True, "flowEditSourceCaption": "lofi", "flowEditSourceLyrics": "la",
                   "flowEditNMin": 0.2, "flowEditNMax": 0.8, "flowEditNAvg": 3})
    assert (camel.flow_edit_morph, camel.flow_edit_source_caption, camel.flow_edit_source_lyrics,
            camel.flow_edit_n_min, camel.flow_edit_n_max, camel.flow_edit_n_avg) == (True, "lofi", "la", 0.2, 0.8, 3)


@pytest.mark.parametrize("fields, field", [
    ({"flow_edit_n_min": 0.8, "flow_edit_n_max": 0.2}, "flow_edit_n_min"),
    ({"flow_edit_n_min": 1.5}, "flow_edit_n_min"),
    ({"flow_edit_n_max": -0.1}, "flow_edit_n_max"),
    ({"flow_edit_n_avg": 0}, "flow_edit_n_avg"),
    ({"flow_edit_n_avg": 9}, "flow_edit_n_avg"),
    ({"flow_edit_source_caption": "x" * 4001}, "flow_edit_source_caption"),
    ({"flow_edit_morph": "sometimes"}, "flow_edit_morph"),
])
def test_bad_values_are_refused_naming_the_field(fields, field):
    with pytest.raises(InputError) as err:
        parse(fields)
    assert err.value.field == field and field in str(err.value)


def test_turbo_is_refused_at_submission_naming_the_field_and_the_models_that_take_it():
    with pytest.raises(InputError) as err:
        _plan({"task_type": "cover", "src_audio": SOURCE, "flow_edit_morph": True}, model="acestep-v15-turbo")
    assert err.value.field == "flow_edit_morph"
    assert "acestep-v15-base, acestep-v15-xl-sft" in str(err.value) and "turbo" in str(err.value)


def test_xl_and_base_models_take_it():
    for model in ("acestep-v15-base", "acestep-v15-xl-sft"):
        assert _plan({"task_type": "cover", "src_audio": SOURCE, "flow_edit_morph": True}, model=model).flow_edit


def test_a_text2music_flow_edit_needs_a_source_and_takes_its_length():
    with pytest.raises(InputError) as err:
        _plan({"flow_edit_morph": True})
    assert err.value.field == "src_audio" and "flow_edit_morph" in str(err.value)
    plan = _plan({"flow_edit_morph": True, "src_audio": SOURCE, "duration": 60})
    assert plan.uses_source and plan.length.source == "source" and "src_audio" in plan.audio_fields


def test_codes_cannot_stand_in_for_a_covers_source_and_are_dropped_by_text2music():
    with pytest.raises(InputError) as err:
        _plan({"task_type": "cover", "flow_edit_morph": True, "audio_code_string": "<|audio_code_5|>" * 30})
    assert err.value.field == "audio_code_string"
    request = {"flow_edit_morph": True, "src_audio": SOURCE, "audio_code_string": "<|audio_code_5|>" * 30}
    plan = _plan(request)
    assert plan.codes is None and plan.uses_source and "src_audio" in plan.audio_fields
    assert "audio_code_string" in unused_fields(parse(request), plan.replaced)


def test_on_other_tasks_the_flag_is_reported_unused_as_upstream_ignores_it():
    request = parse({"task_type": "repaint", "src_audio": SOURCE, "flow_edit_morph": True, "flow_edit_n_max": 0.5})
    unused = unused_fields(request)
    assert set(unused) == {"flow_edit_morph", "flow_edit_n_max"} and "'repaint'" in unused["flow_edit_morph"]
    assert not _plan(request.model_dump()).flow_edit


def test_window_fields_without_the_flag_are_reported_unused():
    unused = unused_fields(parse({"flow_edit_n_min": 0.3, "flow_edit_source_caption": "x"}))
    assert set(unused) == {"flow_edit_n_min", "flow_edit_source_caption"}
    assert unused_fields(parse({"flow_edit_morph": False})) == {}


def test_what_flow_edit_leaves_out_is_reported_unused():
    request = parse({"task_type": "cover", "src_audio": SOURCE, "flow_edit_morph": True, "audio_cover_strength": 0.5,
                     "cover_noise_strength": 0.3, "use_adg": True, "dcw_enabled": True, "infer_method": "sde"})
    assert set(unused_fields(request)) == {"audio_cover_strength", "cover_noise_strength", "use_adg", "dcw_enabled",
                                           "infer_method"}


def test_the_sampler_runs_euler_ode_with_apg_and_no_dcw_and_reports_the_window():
    request = parse({"task_type": "cover", "src_audio": SOURCE, "flow_edit_morph": True, "use_adg": True,
                     "dcw_enabled": True, "infer_method": "sde", "flow_edit_n_min": 0.25, "flow_edit_n_max": 0.9,
                     "flow_edit_n_avg": 2})
    plan = _plan(request.model_dump())
    schedule, used = sampling_plan(request, plan.steps, plan.variant)
    assert (schedule.infer_method, schedule.guidance, schedule.dcw) == ("ode", "apg", None)
    assert used["flow_edit"] == {"n_min": 0.25, "n_max": 0.9, "n_avg": 2, "window_steps": [8, 28]}
    assert plan.steps == 32  # the base model's default steps, as upstream's flow-edit takes the request's
