"""The GPU path's settings, read and checked."""

import pytest

from acestep_worker.settings import Settings, SettingsError


def test_vae_tile_setting_is_read_and_checked():
    env = {"ACESTEP_CONFIG_PATH": "x"}
    assert Settings.from_env(env).vae_tile_frames is None
    assert Settings.from_env({**env, "ACESTEP_VAE_TILE_FRAMES": "2048"}).vae_tile_frames == 2048
    with pytest.raises(SettingsError, match="ACESTEP_VAE_TILE_FRAMES"):
        Settings.from_env({**env, "ACESTEP_VAE_TILE_FRAMES": "64"})
    assert Settings.from_env({**env, "ACESTEP_DIT_COMPILE": "1"}).compile_dit is True
