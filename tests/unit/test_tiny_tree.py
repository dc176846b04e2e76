"""The tiny tree builder never overwrites a real checkpoint tree."""

import pytest

from acestep_worker.dev import tiny


def test_refuses_to_overwrite_a_real_tree(tmp_path):
    real = tmp_path / "checkpoints"
    (real / "acestep-v15-turbo").mkdir(parents=True)
    with pytest.raises(FileExistsError):
        tiny.build(real)
    assert (real / "acestep-v15-turbo").is_dir()
