"""Checkpoint loading on the tiny tree: both layouts, shards, and every way a folder or its weights can be
wrong, refused at load time with a message naming the file, never a model with random weights in places."""

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from acestep_worker.dev import tiny
from acestep_worker.errors import CheckpointError
from acestep_worker.models.dit.loading import load_dit
from acestep_worker.models.planner.lm import PlannerLM
from acestep_worker.models.text_encoder import TextEncoder

COMPONENTS = {"text encoder": ("Qwen3-Embedding-0.6B", TextEncoder.load),
              "planner LM": (tiny.LM_FOLDER, PlannerLM.load)}


def _copy(source: Path, target: Path) -> Path:
    """The folder as symlinks, so a test can replace one file without copying the others."""
    target.mkdir()
    for item in source.iterdir():
        os.symlink(item, target / item.name)
    return target


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.unlink()
    path.write_bytes(data[: len(data) // 2])


def _garble(path: Path) -> None:
    path.unlink()
    path.write_bytes(b"\x00" * 64)


def _drop_a_key(path: Path) -> None:
    tensors = load_file(str(path))
    tensors.pop(sorted(k for k in tensors if "layers.0." in k)[0])
    path.unlink()
    save_file(tensors, str(path), metadata={"format": "pt"})


def _reshape_a_key(path: Path) -> None:
    tensors = load_file(str(path))
    key = sorted(k for k in tensors if k.endswith("norm.weight"))[0]
    tensors[key] = tensors[key][:-1].clone()
    path.unlink()
    save_file(tensors, str(path), metadata={"format": "pt"})


@pytest.mark.parametrize("component", list(COMPONENTS))
@pytest.mark.parametrize("damage,fragment", [(_truncate, "corrupt or unreadable safetensors file"),
                                             (_garble, "corrupt or unreadable safetensors file"),
                                             (_drop_a_key, "missing keys"), (_reshape_a_key, "")])
def test_damaged_weights_name_the_file(tiny_root, tmp_path, component, damage, fragment):
    folder_name, load = COMPONENTS[component]
    folder = _copy(tiny_root / folder_name, tmp_path / folder_name)
    damage(folder / "model.safetensors")
    with pytest.raises(CheckpointError) as err:
        load(folder)
    message = str(err.value)
    assert fragment in message and str(folder) in message, message
    assert "model.safetensors" in message or "weights do not match" in message or component in message


def test_a_missing_weight_file_is_named(tiny_root, tmp_path):
    folder = _copy(tiny_root / "Qwen3-Embedding-0.6B", tmp_path / "te")
    (folder / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model.safetensors"):
        TextEncoder.load(folder)


def test_the_worker_remembers_a_load_failure_instead_of_retrying_per_job(tiny_env, monkeypatch):
    import sys

    from ..support.repo import REPO

    monkeypatch.setattr(os, "environ", {**os.environ, **tiny_env})
    sys.path.insert(0, str(REPO))
    import handler

    calls = []

    def exploding(settings):
        calls.append(settings)
        raise KeyError("an error no loader foresaw")

    monkeypatch.setattr(handler, "Engine", exploding)
    monkeypatch.setattr(handler, "_engine", None)
    monkeypatch.setattr(handler, "_load_error", None)
    with pytest.raises(RuntimeError, match="failed to load"):
        handler.models_loaded()
    assert "KeyError" in handler.handle({"id": "j", "input": {}})["error"]
    assert "KeyError" in handler.handle({"id": "k", "input": {}})["error"]
    assert len(calls) == 1


def _copy_dit(tiny_root, tmp_path, name="acestep-v15-turbo"):
    target = tmp_path / name
    shutil.copytree(tiny_root / name, target)
    return target


def _velocity(dit, seed=0):
    g = torch.Generator().manual_seed(seed)
    frames, hidden = 11, dit.condition_encoder.null_condition_emb.shape[-1]
    x = torch.randn(1, frames, 64, generator=g)
    ctx = torch.randn(1, frames, 128, generator=g)
    enc = torch.randn(1, 7, hidden, generator=g)
    t = torch.tensor([0.7])
    return dit.transformer(x, t, t, enc, ctx, return_dict=False)[0]


def test_loads_official_layout_with_variant_from_config(tiny_root):
    turbo = load_dit(tiny_root / "acestep-v15-turbo")
    base = load_dit(tiny_root / "acestep-v15-base")
    assert turbo.variant.is_turbo and turbo.variant.rules.default_steps == 8
    assert not base.variant.is_turbo and base.variant.rules.default_guidance == 7.0
    assert turbo.silence_latent.shape == (1, 15000, 64)
    assert torch.isfinite(_velocity(turbo)).all()


def test_bf16_load_casts_every_weight(tiny_root):
    dit = load_dit(tiny_root / "acestep-v15-turbo", dtype=torch.bfloat16)
    dtypes = {p.dtype for m in dit.modules().values() for p in m.parameters()}
    assert dtypes == {torch.bfloat16}


def test_sharded_checkpoint_matches_single_file(tiny_root, tmp_path):
    single = load_dit(tiny_root / "acestep-v15-turbo")
    config = json.loads((tiny_root / "acestep-v15-turbo" / "config.json").read_text())
    sharded_dir = tmp_path / "acestep-v15-turbo"
    tiny.write_official_dit(sharded_dir, config, single.modules(), shard_bytes=200_000)
    assert len(list(sharded_dir.glob("model-*-of-*.safetensors"))) > 2
    assert not (sharded_dir / "model.safetensors").exists()
    sharded = load_dit(sharded_dir)
    torch.testing.assert_close(_velocity(single), _velocity(sharded), atol=1e-5, rtol=1e-5)


def test_diffusers_layout_loads_to_the_same_model(tmp_path, tiny_root):
    pipeline = tiny.build(tmp_path / "pipe", layout="diffusers")
    assert (pipeline / "model_index.json").is_file()
    from_diffusers = load_dit(pipeline)
    official = load_dit(tiny_root / "acestep-v15-turbo")  # same seed, same weights
    assert from_diffusers.variant.is_turbo
    # Same weights; float32 kernels may round differently for differently aligned buffers.
    torch.testing.assert_close(_velocity(from_diffusers), _velocity(official), atol=1e-5, rtol=1e-5)
    assert torch.equal(from_diffusers.silence_latent, official.silence_latent)


def test_missing_key_is_named(tiny_root, tmp_path):
    folder = _copy_dit(tiny_root, tmp_path)
    weights = load_file(str(folder / "model.safetensors"))
    del weights["decoder.norm_out.weight"]
    save_file(weights, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match="missing keys.*transformer.norm_out.weight"):
        load_dit(folder)


def test_unknown_key_is_named(tiny_root, tmp_path):
    folder = _copy_dit(tiny_root, tmp_path)
    weights = load_file(str(folder / "model.safetensors"))
    weights["decoder.mystery.weight"] = torch.zeros(3)
    save_file(weights, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match="unexpected keys.*decoder.mystery.weight"):
        load_dit(folder)


def test_config_that_does_not_fit_the_weights_is_an_error(tiny_root, tmp_path):
    folder = _copy_dit(tiny_root, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["intermediate_size"] = 96
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="shape mismatches.*mlp"):
        load_dit(folder)


def test_config_missing_a_field_is_named(tiny_root, tmp_path):
    folder = _copy_dit(tiny_root, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    del config["patch_size"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="patch_size"):
        load_dit(folder)


@pytest.mark.parametrize("damage,message", [
    (lambda f: (f / "silence_latent.pt").unlink(), "silence_latent.pt is missing"),
    (lambda f: (f / "silence_latent.pt").write_bytes(b"not a tensor"), "not a loadable tensor"),
    (lambda f: (f / "model.safetensors").write_bytes(b"\x00" * 64), "corrupt or unreadable"),
    (lambda f: (f / "model.safetensors").unlink(), "no model.safetensors"),
    (lambda f: (f / "config.json").write_text("{not json"), "not valid JSON"),
    (lambda f: (f / "config.json").unlink(), "config.json is missing"),
])
def test_damaged_folders_raise_checkpoint_errors(tiny_root, tmp_path, damage, message):
    folder = _copy_dit(tiny_root, tmp_path)
    damage(folder)
    with pytest.raises(CheckpointError, match=message):
        load_dit(folder)


def test_pickled_weights_are_refused(tiny_root, tmp_path):
    folder = _copy_dit(tiny_root, tmp_path)
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(CheckpointError, match="pickled weights are never loaded"):
        load_dit(folder)


def test_encoder_layer_types_follow_the_config(tiny_root, tmp_path):
    """diffusers' timbre encoder ignores layer_types; the loader must apply them (upstream rule)."""
    folder = _copy_dit(tiny_root, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["layer_types"] = ["full_attention", "sliding_attention"]
    (folder / "config.json").write_text(json.dumps(config))
    dit = load_dit(folder)
    assert dit.condition_encoder.lyric_encoder._layer_types == ["full_attention", "sliding_attention"]
    assert dit.condition_encoder.timbre_encoder._layer_types == ["full_attention"]
    assert dit.transformer.layer_types == ["full_attention", "sliding_attention"]


def test_xl_layout_wider_decoder_than_encoders(tmp_path):
    """XL checkpoints: the decoder is wider than the condition encoder, tokenizer and detokenizer,
    which the `encoder_*` fields size; condition_embedder maps between the two widths."""
    config = tiny.tiny_dit_config("turbo")
    config.update(hidden_size=96, intermediate_size=192, num_attention_heads=6, fsq_dim=64,
                  encoder_hidden_size=64, encoder_intermediate_size=128, encoder_num_attention_heads=4,
                  encoder_num_key_value_heads=2)
    folder = tmp_path / "acestep-v15-xl-turbo"
    tiny.write_official_dit(folder, config, tiny.random_dit_modules(config, seed=3))
    dit = load_dit(folder)
    assert dit.variant.family == "xl-turbo"
    assert dit.transformer.condition_embedder.weight.shape == (96, 64)
    assert dit.condition_encoder.null_condition_emb.shape[-1] == 64
    assert torch.isfinite(_velocity(dit)).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_vae_loads_without_random_init_to_the_same_weights_as_diffusers(tiny_root, dtype):
    import warnings

    from diffusers import AutoencoderOobleck

    from acestep_worker.models.vae import load_vae

    ours = load_vae(tiny_root / tiny.VAE_FOLDER, "cpu", dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        reference = AutoencoderOobleck.from_pretrained(tiny_root / tiny.VAE_FOLDER, torch_dtype=dtype,
                                                       low_cpu_mem_usage=False)
    theirs = reference.state_dict()
    assert ours.state_dict().keys() == theirs.keys()
    assert all(t.dtype == dtype and torch.equal(t, theirs[k]) for k, t in ours.state_dict().items())
    z = torch.randn(1, 64, 20, generator=torch.Generator().manual_seed(0)).to(dtype)
    with torch.no_grad():
        assert torch.equal(ours.decode(z).sample, reference.eval().decode(z).sample)


def test_vae_with_a_missing_tensor_is_named(tiny_root, tmp_path):
    from acestep_worker.models.vae import load_vae

    folder = tmp_path / "vae"
    shutil.copytree(tiny_root / tiny.VAE_FOLDER, folder)
    weights = load_file(str(folder / "diffusion_pytorch_model.safetensors"))
    dropped = sorted(weights)[0]
    del weights[dropped]
    save_file(weights, str(folder / "diffusion_pytorch_model.safetensors"))
    with pytest.raises(CheckpointError, match=dropped.replace(".", r"\.")):
        load_vae(folder, "cpu", torch.float32)
