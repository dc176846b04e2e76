"""sampler_mode "heun" on the tiny checkpoints and the golden ones: Euler stays bit for bit what it was, Heun
takes a second decoder call per step where upstream does, and every door reports it as used."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from acestep_worker.dev import parity
from acestep_worker.doors.serverless import run_job
from acestep_worker.models.dit.loading import load_dit
from acestep_worker.schema.request import parse

from ..support.repo import GOLDEN

# upstream's Euler runs without DCW, which our sampler reproduces bit for bit
EULER_GOLDENS = {"turbo_a": ["generate_turbo_shift3", "generate_turbo_shift1_custom_timesteps"],
                 "base_a": ["generate_base_apg", "generate_base_adg", "generate_base_apg_interval",
                            "generate_base_nocfg"]}


@pytest.fixture(scope="module", params=sorted(EULER_GOLDENS))
def golden_dit(request, tmp_path_factory):
    golden = GOLDEN / request.param
    _, entries = parity._manifest_entries(golden)
    scratch = tmp_path_factory.mktemp(request.param)
    return golden, load_dit(parity._checkpoint_copy(golden, entries, scratch), "cpu", torch.float32)


def _sample(dit, golden, name, **overrides):
    manifest = json.loads((golden / "manifest.json").read_text())
    args = {**manifest["files"][f"{name}.safetensors"]["scalar_args"], **overrides}
    tensors = load_file(str(golden / f"{name}.safetensors"))
    with torch.no_grad():
        return parity.run_generate(dit, tensors, parity._sampler_kind(manifest, name), args), tensors


def test_euler_stays_bit_for_bit_upstreams_with_one_decoder_call_per_step(golden_dit):
    golden, dit = golden_dit
    for name in EULER_GOLDENS[golden.name]:
        ours, expected = _sample(dit, golden, name, sampler_mode="euler")
        assert torch.equal(ours["out.target_latents"], expected["out.target_latents"]), name
        assert torch.equal(ours["trace.decoder_timestep"], expected["trace.decoder_timestep"]), name


def test_heun_with_sde_takes_euler_steps_as_upstream_falls_back(engine):
    def song(mode):
        request = parse({"caption": "heun", "duration": 10, "seed": 5, "infer_method": "sde", "sampler_mode": mode})
        result = engine.generate(request)
        return result, result.songs[0].audio

    _, euler_audio = song("euler")
    heun, heun_audio = song("heun")
    assert np.array_equal(euler_audio, heun_audio)
    assert heun.params["sampler_mode"] == "euler"


@pytest.mark.parametrize("model", [None, "acestep-v15-base"])
def test_a_serverless_job_samples_with_heun_and_reports_it_used(engine, model):
    fields = {"caption": "heun", "duration": 10, "seed": 8, **({"model": model} if model else {})}
    euler = run_job(engine, "euler-job", fields, env={})
    heun = run_job(engine, "heun-job", {**fields, "samplerMode": "heun"}, env={})
    assert heun["params"]["sampler_mode"] == "heun" and euler["params"]["sampler_mode"] == "euler"
    assert "sampler_mode" not in heun["params"].get("unused", {})
    assert heun["results"][0]["sha256"] != euler["results"][0]["sha256"]
    sde = run_job(engine, "heun-sde-job", {**fields, "sampler_mode": "heun", "infer_method": "sde"}, env={})
    assert sde["params"]["sampler_mode"] == "euler"
    assert "falls back to Euler" in sde["params"]["unused"]["sampler_mode"]
