"""Process settings read from the environment: the working folders are fixed at start."""

import io
from pathlib import Path

from acestep_worker.audio.sources import SourcePolicy, check
from acestep_worker.doors.pod.uploads import store
from acestep_worker.settings import Settings

from .test_audio_sources import WAV


def test_relative_folders_are_the_start_directorys(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = Settings.from_env({"ACESTEP_CONFIG_PATH": "ckpt/acestep-v15-turbo"})
    assert settings.input_dir == tmp_path / "inputs" and settings.output_dir == tmp_path / "outputs"
    assert settings.lora_cache_dir.is_absolute()
    monkeypatch.chdir("/")  # a later change of directory moves nothing
    assert settings.input_dir == tmp_path / "inputs"


def test_an_upload_under_the_default_input_folder_is_found_where_it_was_stored(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = Settings.from_env({"ACESTEP_CONFIG_PATH": "ckpt/acestep-v15-turbo"})  # ACESTEP_INPUT_DIR unset
    policy = SourcePolicy.for_pod(settings, settings.output_dir, env={})
    stored = store("src_audio", io.BytesIO(WAV), "take.wav", settings.input_dir, policy.limits)
    assert Path(stored).parent == tmp_path / "inputs"
    assert check("src_audio", str(stored), policy) == "path"
