"""Flow-edit (upstream's remix by flow-edit) on the tiny base DiT: the properties upstream's formula
implies, checked on the sampler itself, and the feature end to end through `Engine.generate`."""

import numpy as np
import pytest
import torch

from acestep_worker.errors import InputError
from acestep_worker.models.dit.flow_edit import FlowEdit
from acestep_worker.models.dit.loading import load_dit
from acestep_worker.models.dit.sampler import (
    SamplerHooks,
    SamplerTrace,
    SamplingPlan,
    sample,
)
from acestep_worker.models.dit.sampler_edits import Edit, renoise
from acestep_worker.models.dit.schedules import base_timesteps
from acestep_worker.schema.request import parse

from ..support.audio import decoded_song
from ..support.dit import dit_inputs

STEPS = 6
BASE = "acestep-v15-base"


@pytest.fixture(scope="module")
def base_dit(tiny_root):
    return load_dit(tiny_root / BASE)


@pytest.fixture(scope="module")
def inputs(base_dit):
    """Target and source conditions (different texts over one context), a clean source, two songs."""
    target, _ = dit_inputs(base_dit, batch=2, frames=24, seed=1)
    source, _ = dit_inputs(base_dit, batch=2, frames=24, seed=2)
    source.context_latents = target.context_latents
    clean = torch.randn(2, 24, base_dit.silence_latent.shape[-1], generator=torch.Generator().manual_seed(3))
    return target, source, clean


def _noise_from(seeds, shape):
    generators = [torch.Generator().manual_seed(s) for s in seeds]
    return lambda: torch.cat([torch.randn((1, *shape[1:]), generator=g) for g in generators])


def _plan(**options):
    return SamplingPlan(base_timesteps(STEPS, 3.0), guidance_scale=7.0, kind="base", **options)


def _flow(dit, inputs, seeds=(11, 12), plan=None, trace=None, **window):
    target, source, clean = inputs
    flow = FlowEdit(source, clean, _noise_from(seeds, clean.shape), **window)
    unused_noise = torch.zeros_like(clean)
    return sample(dit, target, unused_noise, plan or _plan(), SamplerHooks(trace=trace), Edit(flow_edit=flow))


def test_an_empty_window_at_the_end_returns_the_source_exactly(base_dit, inputs):
    trace = SamplerTrace()
    out = _flow(base_dit, inputs, n_min=1.0, n_max=1.0, trace=trace)
    assert torch.equal(out, inputs[2]) and trace.calls == []  # no DiT call at all


def test_an_empty_window_inside_the_schedule_is_a_plain_run_from_the_noised_source(base_dit, inputs):
    """n_min = n_max = k/N: upstream's formula reduces to plain sampling from the source noised to t_k
    with the first draw of each song's generator: a cover's `cover_noise_strength` start."""
    target, _, clean = inputs
    k, plan = 2, _plan()
    out = _flow(base_dit, inputs, n_min=k / STEPS, n_max=k / STEPS)
    first_noise = _noise_from((11, 12), clean.shape)()
    start = renoise(clean, first_noise, float(plan.timesteps[k]))
    plain_plan = SamplingPlan(plan.timesteps[k:], guidance_scale=7.0, kind="base")
    plain = sample(base_dit, target, first_noise, plain_plan, edit=Edit(start=start))
    torch.testing.assert_close(out, plain, atol=1e-5, rtol=1e-5)


def test_the_same_seeds_give_the_same_edit_and_each_song_follows_its_own_seed(base_dit, inputs):
    a = _flow(base_dit, inputs, seeds=(11, 12), n_min=0.0, n_max=0.7, n_avg=2)
    b = _flow(base_dit, inputs, seeds=(11, 12), n_min=0.0, n_max=0.7, n_avg=2)
    c = _flow(base_dit, inputs, seeds=(11, 99), n_min=0.0, n_max=0.7, n_avg=2)
    assert torch.equal(a, b)
    assert torch.equal(a[0], c[0]) and not torch.allclose(a[1], c[1])


def test_averaging_more_noise_samples_changes_the_edit_and_calls_the_dit_per_sample(base_dit, inputs):
    one_trace, two_trace = SamplerTrace(), SamplerTrace()
    one = _flow(base_dit, inputs, n_min=0.0, n_max=0.5, n_avg=1, trace=one_trace)
    two = _flow(base_dit, inputs, n_min=0.0, n_max=0.5, n_avg=2, trace=two_trace)
    window = int(STEPS * 0.5)
    assert len(one_trace.calls) == 2 * window + (STEPS - window)  # source + target per edit step, then target
    assert len(two_trace.calls) == 4 * window + (STEPS - window)
    assert not torch.allclose(one, two)


def test_the_edit_window_skips_the_first_steps(base_dit, inputs):
    trace = SamplerTrace()
    _flow(base_dit, inputs, n_min=0.5, n_max=1.0, trace=trace)
    times = [float(call.timestep[0]) for call in trace.calls]
    plan_times = _plan().timesteps.tolist()
    assert times == [t for t in plan_times[STEPS // 2:] for _ in range(2)]


def test_identical_source_and_target_text_leaves_the_source_nearly_unchanged(base_dit, inputs):
    """V_tar - V_src vanishes when both branches see the same condition (upstream warns of a no-op)."""
    target, _, clean = inputs
    out = _flow(base_dit, (target, target, clean), n_min=0.0, n_max=1.0, n_avg=2)
    torch.testing.assert_close(out, clean, atol=1e-4, rtol=1e-4)
    edited = _flow(base_dit, inputs, n_min=0.0, n_max=1.0)
    assert (edited - clean).abs().max() > 1e-2


def test_each_conditions_projections_are_computed_once_though_the_branches_alternate(base_dit, inputs):
    from .test_condition_cache import CountLinear, _kv_weights

    with CountLinear(_kv_weights(base_dit)) as counter:
        _flow(base_dit, inputs, n_min=0.0, n_max=0.5, n_avg=2)
    assert counter.calls == 2 * 2 * len(base_dit.transformer.layers)  # K and V, source and target, per layer


def test_guidance_momentum_advances_once_per_step_whatever_the_number_of_samples(base_dit, inputs):
    """With every draw identical, n_avg = 3 must equal n_avg = 1: the APG momentum may not advance per draw."""
    target, source, clean = inputs
    fixed = torch.randn(clean.shape, generator=torch.Generator().manual_seed(5))
    plan = _plan()

    def run(n):
        flow = FlowEdit(source, clean, lambda: fixed.clone(), 0.0, 1.0, n)
        return sample(base_dit, target, torch.zeros_like(clean), plan, edit=Edit(flow_edit=flow))

    torch.testing.assert_close(run(3), run(1), atol=1e-5, rtol=1e-5)


def _upstream_loop(dit, target, source, clean, noise, *, steps, shift, scale, interval, n_min, n_max, n_avg,
                   norm_threshold, ema):
    """Upstream's flow-edit loop (acestep/models/common/flow_edit.py and flow_edit_helpers.py), restated
    step by step over the tiny DiT: an independent statement of its order of operations (per-branch APG
    momentum snapshot/restore, the norm cap per draw, the EMA once per step, one noise entering the target)."""
    from diffusers.guiders.adaptive_projected_guidance import (
        MomentumBuffer,
        normalized_guidance,
    )

    t = torch.linspace(1.0, 0.0, steps + 1)
    t = shift * t / (1 + (shift - 1) * t)
    lo, hi = int(steps * n_min), int(steps * n_max)
    null = dit.null_condition_emb

    def forward(z, c, tc):
        enc = torch.cat([c.encoder_hidden_states, null.expand_as(c.encoder_hidden_states)])
        tt = tc * torch.ones(2 * z.shape[0])
        return dit.transformer(torch.cat([z, z]), tt, tt, enc, torch.cat([c.context_latents] * 2),
                               return_dict=False)[0].chunk(2)

    def apg(cond, uncond, momentum):
        return normalized_guidance(cond, uncond, scale - 1.0, momentum_buffer=momentum, eta=0.0, norm_threshold=2.5,
                                   use_original_formulation=True, norm_dim=(1,))

    def cap(v, x):
        vn, xn = torch.norm(v, dim=(1, 2), keepdim=True), torch.norm(x, dim=(1, 2), keepdim=True) + 1e-10
        return v * torch.clamp(norm_threshold * xn / (vn + 1e-10), max=1.0)

    def smooth(v, prev):
        return v if prev is None else (1 - ema) * v + ema * prev

    z_edit, x_tar = clean.clone(), None
    momentum = {"src": MomentumBuffer(-0.75), "tar": MomentumBuffer(-0.75)}
    prev = {"src": None, "tar": None}
    for i in range(lo, steps):
        tc, tp = t[i], t[i + 1]
        guided = interval[0] <= float(tc) <= interval[1]
        if i < hi:
            before = {k: m.running_average for k, m in momentum.items()}
            sums, diffs = {"src": 0, "tar": 0}, {"src": 0, "tar": 0}
            for _ in range(n_avg):
                for k, m in momentum.items():
                    m.running_average = before[k]
                zs = (1.0 - float(tc)) * clean + float(tc) * noise()
                z = {"src": zs, "tar": z_edit + zs - clean}
                for k, c in (("src", source), ("tar", target)):
                    cond, uncond = forward(z[k], c, tc)
                    diffs[k] = diffs[k] + (cond - uncond)
                    sums[k] = sums[k] + cap(apg(cond, uncond, momentum[k]) if guided else cond, z[k])
            for k, m in momentum.items():
                m.running_average = before[k]
                if guided:
                    m.update(diffs[k] / n_avg)
            v = {k: smooth(sums[k] / n_avg, prev[k]) for k in sums}
            prev = v
            z_edit = z_edit + (tp - tc) * (v["tar"] - v["src"])
        else:
            if x_tar is None:
                x_tar = z_edit + (1.0 - float(tc)) * clean + float(tc) * noise() - clean
            cond, uncond = forward(x_tar, target, tc)
            v = smooth(cap(apg(cond, uncond, momentum["tar"]) if guided else cond, x_tar), prev["tar"])
            prev["tar"] = v
            x_tar = x_tar + (tp - tc) * v
    return z_edit if x_tar is None else x_tar


def test_the_sampler_follows_upstreams_loop_step_for_step(base_dit, inputs):
    """Window inside the schedule, two samples per step, a CFG interval and both velocity stabilisers on."""
    target, source, clean = inputs
    options = {"n_min": 0.2, "n_max": 0.7, "n_avg": 2}
    plan = SamplingPlan(base_timesteps(STEPS, 3.0), guidance_scale=5.0, cfg_interval=(0.3, 0.9), kind="base",
                        velocity_norm_threshold=0.5, velocity_ema_factor=0.2)
    ours = _flow(base_dit, inputs, plan=plan, **options)
    with torch.no_grad():
        theirs = _upstream_loop(base_dit, target, source, clean, _noise_from((11, 12), clean.shape), steps=STEPS,
                                shift=3.0, scale=5.0, interval=(0.3, 0.9), norm_threshold=0.5, ema=0.2, **options)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def _generate(engine, audio=None, **fields):
    return engine.generate(parse({"caption": "bright synth pop", "seed": 5, "model": BASE, "inference_steps": 4,
                                  **fields}), audio=audio)


SOURCE = decoded_song(1.0)


@pytest.mark.parametrize("task", ["cover", "cover-nofsq", "text2music"])
def test_flow_edit_runs_end_to_end_and_keeps_the_source_length(engine, task):
    result = _generate(engine, {"src_audio": SOURCE}, task_type=task, flow_edit_morph=True,
                       flow_edit_source_caption="dark ambient", flow_edit_n_max=0.75, flow_edit_n_avg=2)
    song, = result.songs
    assert song.audio.shape == SOURCE.shape and np.isfinite(song.audio).all()
    assert result.params["flow_edit"] == {"n_min": 0.0, "n_max": 0.75, "n_avg": 2, "window_steps": [0, 3]}
    assert result.params["duration_from"] == "source" and result.params["dcw"] is None


def test_a_full_length_empty_window_gives_back_the_source_whatever_the_caption(engine):
    fields = {"task_type": "cover", "flow_edit_morph": True, "flow_edit_n_min": 1.0, "flow_edit_n_max": 1.0}
    a = _generate(engine, {"src_audio": SOURCE}, **fields).songs[0].audio
    b = _generate(engine, {"src_audio": SOURCE}, caption="a different song", flow_edit_source_caption="another",
                  **fields).songs[0].audio  # same seed: the VAE samples the same source latents
    np.testing.assert_array_equal(a, b)
    edited = _generate(engine, {"src_audio": SOURCE}, **{**fields, "flow_edit_n_min": 0.0}).songs[0].audio
    assert not np.allclose(a, edited)


def test_flow_edit_is_refused_on_turbo_naming_the_field_and_the_models_that_take_it(engine):
    with pytest.raises(InputError) as err:
        engine.plan(parse({"task_type": "cover", "src_audio": "https://example.com/a.mp3",
                            "flow_edit_morph": True}))
    assert err.value.field == "flow_edit_morph"
    assert "base, sft or XL" in str(err.value) and BASE in str(err.value)


@pytest.mark.parametrize("fields, field", [
    ({"task_type": "text2music"}, "src_audio"),
    ({"task_type": "cover", "audio_code_string": "<|audio_code_5|>" * 30}, "audio_code_string"),
])
def test_flow_edit_needs_a_source_song(engine, fields, field):
    with pytest.raises(InputError) as err:
        engine.plan(parse({"model": BASE, "flow_edit_morph": True, **fields}))
    assert err.value.field == field


def test_the_cfg_interval_is_compared_in_float64_in_a_flow_edit_and_in_float32_in_a_plain_run(base_dit, inputs):
    """Shift 1, 10 steps: t = float32(0.8) = 0.800000011920929. Upstream's flow-edit loop compares float(t)
    with cfg_interval_end 0.8, so that step is unguided there, as with an end of 0.75; its generate_audio
    compares the float32 tensor, where t equals the bound, so a plain run guides it."""
    def plan(end):
        return SamplingPlan(base_timesteps(10, 1.0), guidance_scale=7.0, cfg_interval=(0.3, end), kind="base")

    assert torch.equal(_flow(base_dit, inputs, plan=plan(0.8)), _flow(base_dit, inputs, plan=plan(0.75)))
    target, _, clean = inputs
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(5))
    assert not torch.equal(sample(base_dit, target, noise, plan(0.8)), sample(base_dit, target, noise, plan(0.75)))
