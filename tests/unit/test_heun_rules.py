"""sampler_mode "heun" without a model: which requests take Heun steps, what the plan reports, and where upstream
ignores it (SDE, flow-edit) it is reported unused."""

import pytest

from acestep_worker.models.variants import detect_variant
from acestep_worker.pipeline.plan import EngineFacts, resolve
from acestep_worker.pipeline.sampling_plan import sampling_plan
from acestep_worker.schema.request import parse, unused_fields

INSTALLED = {"acestep-v15-turbo": "turbo", "acestep-v15-base": "base"}
SOURCE = "https://example.com/take.mp3"


def _sampling(fields, model):
    config = {"is_turbo": model.endswith("turbo"), "hidden_size": 32, "encoder_hidden_size": 32}
    request = parse({"model": model, **fields})
    plan = resolve(request, EngineFacts(detect_variant(model, config), INSTALLED, False), (1,))
    return sampling_plan(request, plan.steps, plan.variant)


@pytest.mark.parametrize("model", sorted(INSTALLED))
def test_heun_is_planned_used_and_not_reported_unused_on_turbo_and_base(model):
    schedule, used = _sampling({"sampler_mode": "heun"}, model)
    assert schedule.heun and used["sampler_mode"] == "heun"
    assert unused_fields(parse({"samplerMode": "heun"})) == {}
    plain, used = _sampling({}, model)
    assert not plain.heun and used["sampler_mode"] == "euler"


def test_heun_with_sde_takes_euler_steps_and_says_so():
    schedule, used = _sampling({"sampler_mode": "heun", "infer_method": "sde"}, "acestep-v15-base")
    assert not schedule.heun and used["sampler_mode"] == "euler"
    reason = unused_fields(parse({"sampler_mode": "heun", "infer_method": "sde"}))["sampler_mode"]
    assert "Euler" in reason
    assert "sampler_mode" not in unused_fields(parse({"sampler_mode": "euler", "infer_method": "sde"}))


def test_flow_edit_keeps_euler_and_reports_heun_unused_as_upstreams_flow_edit_forces_euler():
    fields = {"task_type": "cover", "src_audio": SOURCE, "flow_edit_morph": True, "sampler_mode": "heun"}
    schedule, used = _sampling(fields, "acestep-v15-base")
    assert schedule.sampler_mode == "euler" and used["sampler_mode"] == "euler"
    assert "Euler" in unused_fields(parse(fields))["sampler_mode"]


def test_the_cli_sends_its_sampler_flag_as_sampler_mode():
    import argparse

    from acestep_worker.doors import cli

    parser = argparse.ArgumentParser()
    cli._generate_parser(parser.add_subparsers())
    heun = cli._request(parser.parse_args(["generate", "-c", "x", "--sampler", "heun"]))
    assert parse(heun).sampler_mode == "heun"
    assert "sampler_mode" not in cli._request(parser.parse_args(["generate", "-c", "x"]))
