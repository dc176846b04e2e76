"""The tiny tree builder never overwrites a real checkpoint tree, and rebuilds a cached tree that other
builder code wrote."""

import json

import pytest

from acestep_worker.dev import tiny


def test_refuses_to_overwrite_a_real_tree(tmp_path):
    real = tmp_path / "checkpoints"
    (real / "acestep-v15-turbo").mkdir(parents=True)
    with pytest.raises(FileExistsError):
        tiny.build(real)
    assert (real / "acestep-v15-turbo").is_dir()


def test_ensure_reuses_a_current_tree_and_rebuilds_a_stale_one(tmp_path):
    root = tiny.ensure(tmp_path / "cache")
    marker = root / tiny.RANDOM_WEIGHTS_MARKER
    assert tiny.is_current(root) and json.loads(marker.read_text())["builder"] == tiny.builder_stamp()
    weights = root / tiny.LM_FOLDER / "model.safetensors"
    built = weights.stat().st_mtime_ns
    assert tiny.ensure(root) == root and weights.stat().st_mtime_ns == built  # current: kept
    marker.write_text(json.dumps({**json.loads(marker.read_text()), "builder": "older code"}))
    assert not tiny.is_current(root)
    tiny.ensure(root)
    assert tiny.is_current(root) and weights.stat().st_mtime_ns != built  # stale: written again
