"""Condition projections are computed once per generation, with bitwise-identical results."""

import pytest
import torch
from torch.overrides import TorchFunctionMode

from acestep_worker.dev import parity
from acestep_worker.models.dit.condition_cache import reuse_condition_projections
from acestep_worker.models.dit.loading import load_dit
from acestep_worker.models.dit.sampler import SamplingPlan, sample
from acestep_worker.models.dit.schedules import base_timesteps, turbo_timesteps

from ..support.dit import dit_inputs
from ..support.repo import GOLDEN


class CountLinear(TorchFunctionMode):
    """Counts F.linear calls whose weight is one of `weights` (real projections, however reached)."""

    def __init__(self, weights):
        super().__init__()
        self.ids = {id(w) for w in weights}
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is torch.nn.functional.linear and id(args[1]) in self.ids:
            self.calls += 1
        return func(*args, **(kwargs or {}))


def _kv_weights(dit):
    return [w for layer in dit.transformer.layers for w in (layer.cross_attn.to_k.weight, layer.cross_attn.to_v.weight)]


@pytest.fixture(scope="module", params=["acestep-v15-turbo", "acestep-v15-base"])
def dit_and_plan(request, tiny_root):
    dit = load_dit(tiny_root / request.param)
    if request.param.endswith("turbo"):
        return dit, SamplingPlan(turbo_timesteps(3.0))
    return dit, SamplingPlan(base_timesteps(6, 1.0), guidance_scale=7.0)


def test_cached_loop_is_bitwise_identical_to_recomputing(dit_and_plan):
    dit, plan = dit_and_plan
    conditions, noise = dit_inputs(dit, batch=2)
    cached = sample(dit, conditions, noise, plan)
    recomputed = sample.__wrapped__(dit, conditions, noise, plan)  # the loop without the cache
    assert torch.equal(cached, recomputed)


def test_cross_attention_keys_and_values_are_projected_once_per_layer(dit_and_plan):
    dit, plan = dit_and_plan
    conditions, noise = dit_inputs(dit)
    layers = len(dit.transformer.layers)
    with CountLinear(_kv_weights(dit)) as counter:
        sample(dit, conditions, noise, plan)
    assert counter.calls == 2 * layers  # K and V per layer: not layers x steps
    with CountLinear(_kv_weights(dit)) as counter:
        sample.__wrapped__(dit, conditions, noise, plan)
    assert counter.calls == 2 * layers * plan.steps  # the count can tell the two apart


def test_new_condition_tensor_is_recomputed_and_modules_are_restored(dit_and_plan):
    dit, _ = dit_and_plan
    (a, noise), (b, _) = dit_inputs(dit, seed=1), dit_inputs(dit, seed=2)
    t = torch.full((1,), 0.5)
    run = lambda c: dit.transformer(noise, t, t, c.encoder_hidden_states, c.context_latents, return_dict=False)[0]
    plain_a, plain_b = run(a), run(b)
    with reuse_condition_projections(dit.transformer) as memos:
        assert torch.equal(run(a), plain_a)
        assert torch.equal(run(b), plain_b)  # a switch of conditions mid-loop is a miss, not a stale hit
        a.encoder_hidden_states.mul_(2.0)  # in-place change of the same tensor is seen too
        changed = run(a)
        assert torch.equal(run(a), changed)
        assert {m.computed for m in memos} == {3}
    assert "forward" not in vars(dit.transformer.condition_embedder)
    assert not torch.equal(changed, plain_a)


GOLDEN_VARIANTS = sorted(p for p in GOLDEN.glob("*") if (p / "manifest.json").is_file()) if GOLDEN.is_dir() else []


@pytest.mark.parametrize("golden", GOLDEN_VARIANTS, ids=lambda p: p.name)
def test_golden_samplings_are_bitwise_identical_with_the_cache(golden, tmp_path, monkeypatch):
    """Upstream's recorded sampler inputs (generation, repaint, cover switch): same bits either way."""
    _, entries = parity._manifest_entries(golden)
    dit = load_dit(parity._checkpoint_copy(golden, entries, tmp_path))
    names = [n for n in entries if n.startswith(("generate_", "edit_")) and (golden / n).is_file()]
    assert names
    for name in names:
        manifest, entry = entries[name]
        tensors = parity._golden_tensors(golden, name, entry)  # a heun file takes its inputs from another
        cached, _ = parity._run_file(dit, name.removesuffix(".safetensors"), tensors, manifest, entry)
        monkeypatch.setattr(parity, "sample", sample.__wrapped__)
        plain, _ = parity._run_file(dit, name.removesuffix(".safetensors"), tensors, manifest, entry)
        monkeypatch.undo()
        assert all(torch.equal(cached[k], plain[k]) for k in plain), name
