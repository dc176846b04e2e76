"""Settings read from the environment: the engine's and the pod's variables are checked at start with a
sentence, an empty API key means no auth, and the working folders are fixed at start."""

import io
from pathlib import Path

import pytest

from acestep_worker.audio.sources import SourcePolicy, check
from acestep_worker.doors.pod.launch import PodSettings
from acestep_worker.doors.pod.uploads import store
from acestep_worker.settings import Settings, SettingsError

from ..support.audio import WAV


@pytest.mark.parametrize("env,variable", [
    ({"ACESTEP_API_PORT": "abc"}, "ACESTEP_API_PORT"), ({"ACESTEP_API_PORT": "70000"}, "ACESTEP_API_PORT"),
    ({"ACESTEP_GRADIO_PORT": "-1"}, "ACESTEP_GRADIO_PORT"), ({"ACESTEP_QUEUE_MAXSIZE": "1.5"}, "ACESTEP_QUEUE_MAXSIZE"),
    ({"ACESTEP_RESULT_TTL": "nan"}, "ACESTEP_RESULT_TTL"), ({"ACESTEP_MAX_BODY_MB": "lots"}, "ACESTEP_MAX_BODY_MB"),
])
def test_bad_pod_variables_are_one_sentence(env, variable):
    with pytest.raises(SettingsError, match=f"^{variable} must be .*; got "):
        PodSettings.from_env(env)


@pytest.mark.parametrize("env,variable", [
    ({"ACESTEP_DTYPE": "fp16"}, "ACESTEP_DTYPE"), ({"ACESTEP_DEVICE": "gpu"}, "ACESTEP_DEVICE"),
    ({"ACESTEP_LM_COMPILE": "maybe"}, "ACESTEP_LM_COMPILE"),
])
def test_bad_engine_variables_are_one_sentence(env, variable):
    with pytest.raises(SettingsError, match=f"^{variable} must be "):
        Settings.from_env(env)


@pytest.mark.parametrize("value,mode", [("1", "on"), ("yes", "on"), ("ON", "on"), ("0", "off"), ("no", "off"),
                                        ("", "off"), ("graphs", "graphs"), ("Graphs", "graphs")])
def test_planner_compile_modes(value, mode):
    assert Settings.from_env({"ACESTEP_LM_COMPILE": value}).compile_planner == mode


def test_serve_exits_with_the_sentence_not_a_traceback():
    from acestep_worker.doors.pod.launch import serve

    with pytest.raises(SystemExit, match="ACESTEP_API_PORT must be an integer port"):
        serve({"ACESTEP_API_PORT": "abc"})


def test_good_variables_still_parse():
    pod = PodSettings.from_env({"ACESTEP_API_PORT": "9000", "ACESTEP_MAX_BODY_MB": "8", "ACESTEP_GRADIO_PORT": "0"})
    assert (pod.port, pod.max_body_bytes, pod.gradio_port) == (9000, 8_000_000, 0)
    settings = Settings.from_env({"ACESTEP_DTYPE": "Float16", "ACESTEP_DEVICE": "cuda:1", "ACESTEP_LM_COMPILE": "on"})
    assert (settings.dtype, settings.device, settings.compile_planner) == ("float16", "cuda:1", "on")


KEY = "s3cret-key"


def test_an_empty_api_key_means_no_auth():
    assert PodSettings.from_env({"ACESTEP_API_KEY": "  "}).api_key is None
    assert PodSettings.from_env({"ACESTEP_API_KEY": KEY}).api_key == KEY


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
