"""Every adapter file and value is checked into one typed description before use (issue #18): the hostile
corpus of tests/support/hostile_loras.py is refused with one sentence naming loras[i], and generated
configs and tensors give a refusal or an adapter, never another exception."""

import json
import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from acestep_worker.errors import InputError
from acestep_worker.models.lora.adapters import Adapters
from acestep_worker.models.lora.formats import normalise
from acestep_worker.models.lora.spec import AdapterConfig
from acestep_worker.schema.lora_refs import parse_loras
from acestep_worker.settings import Settings

from ..support import hostile_loras


@pytest.fixture(scope="module")
def adapters(hostile_lora_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("none")
    return Adapters(Settings(dit_path=folder, vae_path=folder, text_encoder_path=folder, lora_dir=hostile_lora_dir,
                             lora_cache_dir=tmp_path_factory.mktemp("cache")))


def _refusal(adapters, entry) -> InputError:
    with pytest.raises(InputError) as err:
        adapters.prepare(parse_loras([{"name": "h-good"}, entry]))
    return err.value


@pytest.mark.parametrize("case,entry,fragment", hostile_loras.CASES, ids=[c[0] for c in hostile_loras.CASES])
def test_each_hostile_adapter_is_one_sentence_naming_the_entry(adapters, case, entry, fragment):
    error = _refusal(adapters, entry)
    assert error.field == "loras[1]", (error.field, str(error))
    assert fragment in str(error) and str(error).startswith("loras[1]"), str(error)
    assert "\n" not in str(error) and len(str(error)) < 600


@pytest.mark.parametrize("case,entry", hostile_loras.ACCEPTED, ids=[c[0] for c in hostile_loras.ACCEPTED])
def test_odd_but_valid_configs_load(adapters, case, entry):
    (prepared,) = adapters.prepare(parse_loras([entry]))
    assert prepared.weights.rank == 2 and prepared.weights.format == "peft"


def test_null_lora_alpha_means_the_default_scaling_of_one(adapters, hostile_lora_dir):
    (prepared,) = adapters.prepare(parse_loras([{"name": "h-alpha-null"}]))
    tensors = prepared.weights.state_dict
    up = tensors["transformer.layers.0.self_attn.to_q.lora_B.weight"]
    from safetensors.torch import load_file
    raw = load_file(str(hostile_lora_dir / "h-alpha-null" / "adapter_model.safetensors"))
    torch.testing.assert_close(up, raw[f"{hostile_loras.PEFT_KEY}.lora_B.weight"])  # alpha = rank


def test_more_adapters_than_slots_are_refused_before_any_is_read(adapters):
    with pytest.raises(InputError, match="5 adapters at once exceed the 4"):
        adapters.prepare(parse_loras([{"name": "h-nan"}] * 5))


# -- generated configs and tensors ---------------------------------------------------------------

_leaf = st.one_of(st.none(), st.booleans(), st.integers(min_value=-10**30, max_value=10**30),
                  st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
                  st.sampled_from(["(", "q_proj", ".*", "(x+x+)+y", "[a-", "\\", "LORA", "LOKR", "LOHA", "OFT"]))
_value = st.recursive(_leaf, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                     st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                      max_leaves=6)
_KEYS = ["peft_type", "r", "lora_alpha", "alpha", "use_rslora", "use_dora", "alpha_pattern", "rank_pattern",
         "target_modules"]
_config = st.dictionaries(st.sampled_from(_KEYS), _value, max_size=6)

_SUFFIXES = ["lora_A.weight", "lora_B.weight", "lora_down.weight", "lora_up.weight", "alpha", "lokr_w1", "lokr_w1_a",
             "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b", "hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b",
             "dora_scale", "lora_magnitude_vector", "weird"]
_MODULES = ["base_model.model.layers.0.self_attn.q_proj", "lycoris_layers_0_mlp_up_proj", "layers.1.cross_attn.to_k",
            "text_encoder.x", "lora_unet_bad"]
_DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.int32, torch.bool, torch.float64]


@st.composite
def _tensor(draw):
    shape = draw(st.lists(st.integers(0, 9), min_size=0, max_size=3))
    dtype = draw(st.sampled_from(_DTYPES))
    fill = draw(st.sampled_from([0.5, 1.0, -2.0, math.nan, math.inf, 1e30]))
    return torch.full(shape, fill).to(dtype) if dtype != torch.bool else torch.ones(shape, dtype=torch.bool)


_tensors = st.dictionaries(st.builds(lambda m, s: f"{m}.{s}", st.sampled_from(_MODULES), st.sampled_from(_SUFFIXES)),
                           _tensor(), max_size=6)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(config=_config)
def test_generated_configs_are_typed_or_refused(config):
    try:
        parsed = AdapterConfig.parse("loras[0]", json.dumps(config, allow_nan=True).encode())
    except InputError as err:
        assert err.field == "loras[0]" and "\n" not in str(err)
        return
    assert parsed.peft_type.isupper() or not parsed.peft_type.isalpha()
    assert parsed.r is None or parsed.r >= 1
    for alpha in (parsed.lora_alpha, parsed.alpha):
        assert alpha is None or math.isfinite(alpha)


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(tensors=_tensors, config=st.one_of(st.none(), _config))
def test_generated_adapters_load_or_are_refused(tensors, config):
    try:
        weights = normalise("loras[3]", tensors, config)
    except InputError as err:
        assert err.field == "loras[3]" and "\n" not in str(err)
        return
    for tensor in [*weights.state_dict.values(), *(f for pair in weights.krons.values() for f in pair)]:
        assert torch.isfinite(tensor).all()
