"""LoKr, LoHa (LyCORIS) and DoRA adapters on the tiny DiT, each checked against the DiT's weights
merged by hand with the update computed here, straight from the file's tensors."""

import json
import re
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from acestep_worker.doors.serverless import run_job
from acestep_worker.errors import GenerationCancelled, InputError
from acestep_worker.models.lora import adapters as adapters_module
from acestep_worker.models.lora import kron, merged
from acestep_worker.models.lora.formats import read_adapter
from acestep_worker.schema.request import parse

from ..support.lora import BASE, hand_merged, lora_audio, peft_deltas

NAMES = {"q_proj": "to_q", "k_proj": "to_k", "v_proj": "to_v", "o_proj": "to_out.0", "gate_proj": "gate_proj",
         "up_proj": "up_proj", "down_proj": "down_proj"}

FLAT = re.compile(r"^layers_(\d+)_(self_attn|cross_attn|mlp)_(\w+)$")


def _module(layer, block, proj):
    return f"layers.{layer}.{block}.{NAMES[proj]}"


def _lokr_peft_deltas(lora_dir, engine):
    """peft LoKr: kron(w1, w2_a @ w2_b) * alpha / r, alpha 4 and r 2 from adapter_config.json."""
    tensors = load_file(str(lora_dir / "lokr-peft" / "adapter_model.safetensors"))
    config = json.loads((lora_dir / "lokr-peft" / "adapter_config.json").read_text())
    deltas = {}
    for key, w1 in tensors.items():
        if key.endswith(".lokr_w1"):
            stem = key.removesuffix(".lokr_w1")
            w2 = tensors[f"{stem}.lokr_w2_a"] @ tensors[f"{stem}.lokr_w2_b"]
            _, _, layer, block, proj = stem.removeprefix("base_model.").split(".")
            deltas[_module(layer, block, proj)] = torch.kron(w1, w2) * (config["alpha"] / config["r"])
    return deltas


def _lokr_lycoris_deltas(lora_dir, engine):
    """LyCORIS LoKr: kron(w1, w2) * alpha / rank when a factor is factorised (rank = w1_a's), 1 when both are full."""
    tensors = load_file(str(lora_dir / "lokr-lycoris.safetensors"))
    deltas = {}
    for key in tensors:
        if key.endswith(".alpha"):
            stem = key.removesuffix(".alpha")
            layer, block, proj = FLAT.match(stem.removeprefix("lycoris_")).groups()
            if f"{stem}.lokr_w1" in tensors:
                delta = torch.kron(tensors[f"{stem}.lokr_w1"], tensors[f"{stem}.lokr_w2"])
            else:
                w1 = tensors[f"{stem}.lokr_w1_a"] @ tensors[f"{stem}.lokr_w1_b"]
                w2 = tensors[f"{stem}.lokr_w2_a"] @ tensors[f"{stem}.lokr_w2_b"]
                delta = torch.kron(w1, w2) * (float(tensors[key]) / tensors[f"{stem}.lokr_w1_a"].shape[1])
            deltas[_module(layer, block, proj)] = delta
    return deltas


def _loha_deltas(lora_dir, engine):
    """LoHa: (w1_a @ w1_b) ⊙ (w2_a @ w2_b) * alpha / rank."""
    tensors = load_file(str(lora_dir / "loha-lycoris.safetensors"))
    deltas = {}
    for key in tensors:
        if key.endswith(".alpha"):
            stem = key.removesuffix(".alpha")
            layer, block, proj = FLAT.match(stem.removeprefix("lora_unet_")).groups()
            product = ((tensors[f"{stem}.hada_w1_a"] @ tensors[f"{stem}.hada_w1_b"])
                       * (tensors[f"{stem}.hada_w2_a"] @ tensors[f"{stem}.hada_w2_b"]))
            deltas[_module(layer, block, proj)] = product * float(tensors[key]) / tensors[f"{stem}.hada_w1_b"].shape[0]
    return deltas


def _dora_deltas(lora_dir, engine):
    """DoRA (peft): W' = m * (W + B A alpha/r) / ||W + B A alpha/r|| per output row; the update is W' - W."""
    tensors = load_file(str(lora_dir / "dora-peft" / "adapter_model.safetensors"))
    transformer = engine.models.dit().transformer
    deltas = {}
    for key, down in tensors.items():
        if key.endswith(".lora_A.weight"):
            stem = key.removesuffix(".lora_A.weight")
            _, _, layer, block, proj = stem.removeprefix("base_model.").split(".")
            module = _module(layer, block, proj)
            linear = transformer.get_submodule(module)
            weight = getattr(linear, "base_layer", linear).weight.detach().float()
            merged = weight + tensors[f"{stem}.lora_B.weight"] @ down * (8 / 4)
            updated = tensors[f"{stem}.lora_magnitude_vector"][:, None] * merged / merged.norm(dim=1, keepdim=True)
            deltas[module] = updated - weight
    return deltas


FORMATS = {"lokr-peft": ("peft-lokr", _lokr_peft_deltas), "lokr-lycoris": ("lycoris-lokr", _lokr_lycoris_deltas),
           "loha-lycoris": ("lycoris-loha", _loha_deltas), "dora-peft": ("peft-dora", _dora_deltas)}


@pytest.fixture(scope="module")
def plain(lora_engine):
    job = run_job(lora_engine, "plain", {**BASE, "audio_format": "wav"}, env={})
    return job["results"][0]["sha256"], lora_audio(lora_engine).songs[0].audio


def test_the_tiny_tree_has_each_lycoris_and_dora_layout(lora_dir):
    for folder in ("lokr-peft", "dora-peft"):
        assert (lora_dir / folder / "adapter_config.json").is_file()
    for file in ("lokr-lycoris", "loha-lycoris", "lokr-xl"):
        assert (lora_dir / f"{file}.safetensors").is_file()


@pytest.mark.parametrize("name", FORMATS)
def test_scale_zero_gives_the_same_audio_bytes_as_no_adapter(lora_engine, plain, name):
    zero = run_job(lora_engine, "zero", {**BASE, "audio_format": "wav", "loras": [{"name": name, "scale": 0}]}, env={})
    assert zero["results"][0]["sha256"] == plain[0]
    assert zero["params"]["loras"][0]["format"] == FORMATS[name][0]


@pytest.mark.parametrize("name", FORMATS)
def test_scale_one_equals_the_weights_merged_by_hand(lora_engine, lora_dir, plain, name):
    fmt, deltas = FORMATS[name]
    with_adapter = lora_audio(lora_engine, loras=[{"name": name, "scale": 1.0}])
    undo = hand_merged(lora_engine, [(deltas(lora_dir, lora_engine), 1.0)])
    try:
        merged = lora_audio(lora_engine).songs[0].audio
    finally:
        undo()
    assert with_adapter.params["loras"][0]["format"] == fmt
    # (the widest pair, the layers in Kronecker form, the layers with DoRA merged in): lokr-peft is all
    # Kronecker, lokr-lycoris' whole factors on down_proj too (its rank-4 pairs stay pairs); DoRA is merged
    echoed = with_adapter.params["loras"][0]
    assert (echoed["rank"], echoed["kron_layers"], echoed["merged_layers"]) == {
        "lokr-peft": (0, 8, 0), "lokr-lycoris": (4, 2, 0), "loha-lycoris": (4, 0, 0), "dora-peft": (0, 0, 4)}[name]
    assert np.abs(with_adapter.songs[0].audio - plain[1]).max() > 1e-4  # the adapter does something
    np.testing.assert_allclose(with_adapter.songs[0].audio, merged, atol=2e-5, rtol=0)


def test_lora_lokr_and_dora_compose_in_one_job(lora_engine, lora_dir):
    """LoRA and LoKr on the same layers, DoRA elsewhere at half strength: W + s · (W' - W) for DoRA."""
    mixed = lora_audio(lora_engine, loras=[{"name": "peft-style", "scale": 0.7}, {"name": "lokr-peft", "scale": 1.3},
                                           {"name": "dora-peft", "scale": 0.5}])
    parts = [(peft_deltas(lora_dir), 0.7), (_lokr_peft_deltas(lora_dir, lora_engine), 1.3),
             (_dora_deltas(lora_dir, lora_engine), 0.5)]
    undo = hand_merged(lora_engine, parts)
    try:
        merged = lora_audio(lora_engine).songs[0].audio
    finally:
        undo()
    np.testing.assert_allclose(mixed.songs[0].audio, merged, atol=2e-5, rtol=0)
    assert [entry["format"] for entry in mixed.params["loras"]] == ["peft", "peft-lokr", "peft-dora"]
    assert [entry["kron_layers"] for entry in mixed.params["loras"]] == [0, 8, 0]  # the LoKr is hooks, not a pair
    assert [entry["merged_layers"] for entry in mixed.params["loras"]] == [0, 0, 4]  # DoRA is in the weights


def test_a_mis_shaped_lokr_is_refused_before_generating(lora_engine):
    stages = []
    with pytest.raises(InputError) as err:
        lora_engine.generate(parse({**BASE, "loras": [{"name": "lokr-peft"}, {"name": "lokr-xl"}]}),
                             on_progress=lambda p: stages.append(p.stage))
    assert err.value.field == "loras[1]"
    assert "lokr-xl" in str(err.value) and "has 64 inputs, the adapter expects 96" in str(err.value)
    assert stages == []


def test_oft_and_other_adapter_types_are_refused_naming_the_entry(lora_engine, lora_dir):
    save_file({"lycoris_layers_0_self_attn_q_proj.oft_blocks": torch.zeros(4, 16, 16)},
              str(lora_dir / "oft-style.safetensors"))
    (lora_dir / "boft-peft").mkdir()
    save_file({"base_model.model.layers.0.self_attn.q_proj.boft_R": torch.zeros(1, 4, 2, 2)},
              str(lora_dir / "boft-peft" / "adapter_model.safetensors"))
    (lora_dir / "boft-peft" / "adapter_config.json").write_text(json.dumps({"peft_type": "BOFT"}))
    try:
        for name in ("oft-style", "boft-peft"):
            with pytest.raises(InputError) as err:
                lora_audio(lora_engine, loras=[{"name": "lokr-peft"}, {"name": name}])
            assert err.value.field == "loras[1]" and "\n" not in str(err.value)
            assert "loras[1] is an adapter type this server does not load" in str(err.value)
            assert "supported: LoRA, DoRA, LoKr and LoHa" in str(err.value)
    finally:
        (lora_dir / "oft-style.safetensors").unlink()
        shutil.rmtree(lora_dir / "boft-peft")


def test_an_upstream_lokr_folder_reads_like_the_single_file(lora_engine, lora_dir):
    """Upstream's LoKr trainer writes `<dir>/lokr_weights.safetensors` with LyCORIS `lycoris_` names."""
    folder = lora_dir / "lokr-upstream"
    folder.mkdir()
    shutil.copy(lora_dir / "lokr-lycoris.safetensors", folder / "lokr_weights.safetensors")
    try:
        assert "lokr-upstream" in lora_engine.models.adapters.available()
        from_folder = read_adapter("loras[0]", folder)
        from_file = read_adapter("loras[0]", lora_dir / "lokr-lycoris.safetensors")
        assert from_folder.format == "lycoris-lokr" and from_folder.state_dict.keys() == from_file.state_dict.keys()
        assert all(torch.equal(from_folder.state_dict[k], from_file.state_dict[k]) for k in from_file.state_dict)
    finally:
        shutil.rmtree(folder)


@pytest.mark.parametrize("name", ["lokr-peft", "lokr-lycoris.safetensors", "lokr-xl.safetensors"])
def test_the_kronecker_factors_are_the_update_the_pair_would_be(lora_dir, name):
    structured = read_adapter("loras[0]", lora_dir / name)
    paired = read_adapter("loras[0]", lora_dir / name, kron_forward=False)
    assert structured.krons and not paired.krons and structured.format == paired.format
    for module, (w1, w2) in structured.krons.items():
        down = paired.state_dict[f"transformer.{module}.lora_A.weight"]
        up = paired.state_dict[f"transformer.{module}.lora_B.weight"]
        torch.testing.assert_close(torch.kron(w1, w2), up @ down, atol=1e-5, rtol=1e-5)


def test_a_failing_job_leaves_no_hook_and_the_exact_weights_behind(lora_engine, plain):
    transformer = lora_engine.models.dit().transformer
    before = {name: tensor.clone() for name, tensor in transformer.state_dict().items() if "lora_" not in name}
    with pytest.raises(GenerationCancelled):
        lora_engine.generate(parse({**BASE, "loras": [{"name": "lokr-peft"}, {"name": "peft-style"},
                                                      {"name": "dora-peft", "scale": 0.7}]}), should_stop=lambda: True)
    assert kron.attached(transformer) == 0 and merged.merged(transformer) == 0
    assert not any(module._forward_hooks for module in transformer.modules())
    after = transformer.state_dict()
    assert all(torch.equal(after[name], tensor) for name, tensor in before.items())  # bit for bit
    assert np.array_equal(lora_audio(lora_engine).songs[0].audio, plain[1])


def test_a_dora_job_adds_its_update_into_the_weights_and_takes_it_out(lora_engine, lora_dir):
    dit = lora_engine.models.dit()
    module = "layers.0.cross_attn.to_q"
    linear = dit.transformer.get_submodule(module)
    weight = getattr(linear, "base_layer", linear).weight
    before = weight.detach().clone()
    delta = _dora_deltas(lora_dir, lora_engine)[module]  # against the base weights, so before merging
    lora_engine.models.adapters.activate(dit, parse({"loras": [{"name": "dora-peft", "scale": 0.5}]}).loras)
    try:
        assert merged.merged(dit.transformer) == 4
        torch.testing.assert_close(weight, before + 0.5 * delta, atol=1e-6, rtol=0)
    finally:
        lora_engine.models.adapters.deactivate(dit)
    assert merged.merged(dit.transformer) == 0 and torch.equal(weight, before)


def test_a_kronecker_only_adapter_takes_and_frees_an_lru_slot(tiny_env, lora_dir):
    from acestep_worker.pipeline.engine import Engine
    from acestep_worker.settings import Settings

    engine = Engine(Settings.from_env({**tiny_env, "ACESTEP_LORA_DIR": str(lora_dir), "ACESTEP_LORA_SLOTS": "1"}))
    dit = engine.models.dit()
    used = engine.models.adapters.activate(dit, parse({"loras": [{"name": "lokr-peft"}]}).loras)
    assert (used[0]["rank"], used[0]["kron_layers"]) == (0, 8) and kron.attached(dit.transformer) == 8
    assert not getattr(dit.transformer, "peft_config", None)  # nothing went into peft
    lokr_sha = used[0]["sha256"]
    engine.models.adapters.activate(dit, parse({"loras": [{"name": "peft-style"}]}).loras)  # evicts it: one slot
    assert kron.attached(dit.transformer) == 0 and len(dit.transformer.peft_config) == 1
    loaded = adapters_module._LOADED[dit.transformer]
    (kept,) = loaded.values()
    assert kept.sha256 != lokr_sha  # the LoKr left the cache, not only its hooks
    engine.models.adapters.activate(dit, parse({"loras": [{"name": "lokr-lycoris", "scale": 0.5}]}).loras)
    assert kron.attached(dit.transformer) == 2 and len(dit.transformer.peft_config) == 1  # its rank-4 pairs
    engine.models.adapters.deactivate(dit)
    assert kron.attached(dit.transformer) == 0
