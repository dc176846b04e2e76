"""Checkpoint key mapping and the safetensors reader, without a model."""

import pytest
import torch
from safetensors.torch import load_file, save_file

from acestep_worker.errors import CheckpointError
from acestep_worker.models.dit.loading import diffusers_to_official_key, official_to_diffusers_key

from ..support.repo import GOLDEN


def test_official_key_mapping_is_invertible_on_upstream_keys():
    keys = load_file(str(GOLDEN / "turbo_a" / "model.safetensors")).keys()
    for key in keys:
        mapped = official_to_diffusers_key(key)
        assert not mapped.startswith("<unmapped>"), key
        assert diffusers_to_official_key(mapped) == key


def test_attention_and_patch_renames():
    assert official_to_diffusers_key("decoder.layers.3.cross_attn.o_proj.weight") == \
        "transformer.layers.3.cross_attn.to_out.0.weight"
    assert official_to_diffusers_key("decoder.proj_in.1.bias") == "transformer.proj_in_conv.bias"
    assert official_to_diffusers_key("detokenizer.layers.0.self_attn.k_norm.weight") == \
        "audio_detokenizer.layers.0.self_attn.norm_k.weight"
    assert official_to_diffusers_key("null_condition_emb") == "condition_encoder.null_condition_emb"


def test_mapped_tensors_equal_safetensors_own_reader(tmp_path):
    from acestep_worker.models.weights import iter_tensors

    tensors = {"a": torch.randn(3, 4).to(torch.bfloat16), "b": torch.arange(7, dtype=torch.int64),
               "c": torch.zeros(0, 5), "d": torch.randn(2, 2, 2, dtype=torch.float16), "e": torch.tensor(1.5)}
    save_file(tensors, str(tmp_path / "m.safetensors"), metadata={"format": "pt"})
    loaded = dict(iter_tensors([tmp_path / "m.safetensors"]))
    assert loaded.keys() == tensors.keys()
    assert all(loaded[k].dtype == t.dtype and torch.equal(loaded[k], t) for k, t in tensors.items())


def test_truncated_safetensors_file_is_named(tmp_path):
    from acestep_worker.models.weights import iter_tensors

    save_file({"w": torch.randn(64, 64)}, str(tmp_path / "m.safetensors"))
    data = (tmp_path / "m.safetensors").read_bytes()
    (tmp_path / "m.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or unreadable.*'w'"):
        list(iter_tensors([tmp_path / "m.safetensors"]))
