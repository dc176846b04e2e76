"""The DiT's state-dict layout against upstream's key patterns (tests/golden/state_dict_key_patterns.json):
every key the loader expects, with its count per pattern and its shape, for the real-size turbo config
and for the golden checkpoints. The loader refuses missing or unexpected keys, so a layout that drifts
from upstream's would fail every real checkpoint; this proves the real-size one without downloading it."""

import json
import re

import pytest
import torch
from safetensors import safe_open

from acestep_worker.models.dit.loading import diffusers_to_official_key
from acestep_worker.models.dit.model import build_modules
from acestep_worker.models.weights import empty_modules

from ..support.repo import REPO

GOLDEN = REPO / "tests" / "golden"  # the repository's own copy, whatever ACESTEP_GOLDEN_DIR names
PATTERNS = json.loads((GOLDEN / "state_dict_key_patterns.json").read_text())
LAYER = re.compile(r"(?<=layers)\.\d+\.")  # layer indices only; proj_in.1 is a fixed index


def _by_pattern(shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, tuple[int, ...]]]:
    grouped: dict[str, tuple[int, tuple[int, ...]]] = {}
    for key, shape in shapes.items():
        pattern = LAYER.sub(".{i}.", key)
        count, first = grouped.get(pattern, (0, shape))
        assert shape == first, f"{key}: shape {shape} differs from its pattern's {first}"
        grouped[pattern] = (count + 1, first)
    return grouped


def test_the_real_turbo_layout_is_upstreams_key_for_key():
    config = json.loads((GOLDEN / "real_configs" / "acestep-v15-turbo.config.json").read_text())
    with empty_modules("meta", torch.float32):  # shapes only: nothing is allocated
        modules = build_modules(config)
    shapes = {diffusers_to_official_key(f"{name}.{key}"): tuple(tensor.shape)
              for name, module in modules.items() for key, tensor in module.state_dict().items()
              if key != "silence_latent"}  # upstream keeps it in silence_latent.pt, not in the weights
    assert len(shapes) == PATTERNS["num_keys_real_turbo"]
    expected = {p: (v["count_real_turbo"], tuple(v["shape_real_turbo"])) for p, v in PATTERNS["patterns"].items()}
    assert _by_pattern(shapes) == expected


@pytest.mark.parametrize("variant", ["turbo_a", "base_a"])
def test_the_golden_checkpoints_have_upstreams_key_patterns(variant):
    with safe_open(str(GOLDEN / variant / "model.safetensors"), "pt") as handle:
        shapes = {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
    expected = {p: (v["variants"][variant]["count"], tuple(v["variants"][variant]["shape"]))
                for p, v in PATTERNS["patterns"].items() if variant in v["variants"]}
    assert _by_pattern(shapes) == expected
