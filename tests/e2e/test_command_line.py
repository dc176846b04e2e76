"""The local `generate`, `download` and `serve` commands, run as a user would."""

import json
import os
import subprocess
import sys

from acestep_worker.audio.encode import decode


def test_generate_writes_playable_files_and_says_they_are_noise(tiny_root, tmp_path):
    out = tmp_path / "song.mp3"
    env = dict(os.environ, ACESTEP_DEVICE="cpu")
    result = subprocess.run(
        [sys.executable, "-m", "acestep_worker", "generate", "--checkpoints", str(tiny_root), "--caption", "test",
         "--duration", "10", "--batch-size", "2", "--seed", "4", "--out", str(out), "--quiet"],
        capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["seeds"] == [4, 5] and summary["random_weights"] is True
    assert "random-weight" in result.stderr
    for name in ("song_1.mp3", "song_2.mp3"):
        audio, rate = decode((tmp_path / name).read_bytes())
        assert rate == 48000 and audio.shape == (480000, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["song_1.mp3", "song_2.mp3"]


def test_bad_input_is_one_line_and_exit_code_2(tiny_root, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "acestep_worker", "generate", "--checkpoints", str(tiny_root), "--duration", "3",
         "--out", str(tmp_path / "x.mp3"), "--quiet"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "duration must be seconds between 10 and 600" in result.stderr
    assert not any(tmp_path.iterdir())


def test_a_missing_model_folder_names_it_and_the_download_command(tiny_root, tmp_path):
    import shutil

    root = tmp_path / "checkpoints"
    shutil.copytree(tiny_root / "acestep-v15-turbo", root / "acestep-v15-turbo")
    shutil.copytree(tiny_root / "vae", root / "vae")  # the text encoder and the base DiT are missing
    env = dict(os.environ, ACESTEP_CONFIG_PATH=str(root / "acestep-v15-base"), ACESTEP_DEVICE="cpu",
               ACESTEP_LM_MODEL_PATH="")
    result = subprocess.run([sys.executable, "-m", "acestep_worker", "generate", "--caption", "x", "--out",
                             str(tmp_path / "x.mp3")], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert (f"the DiT model folder {root / 'acestep-v15-base'} (ACESTEP_CONFIG_PATH), the text encoder folder "
            f"{root / 'Qwen3-Embedding-0.6B'} (ACESTEP_TEXT_ENCODER_PATH)") in result.stderr
    assert f"download them with: python -m acestep_worker download --dir {root} base main" in result.stderr


def test_the_download_command_it_names_exists():
    result = subprocess.run([sys.executable, "-m", "acestep_worker", "download", "--list"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0 and "ACE-Step/Ace-Step1.5" in result.stdout and "acestep-v15-base" in result.stdout


def test_a_bad_serve_port_is_one_sentence():
    result = subprocess.run([sys.executable, "-m", "acestep_worker", "serve", "--port", "99999"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--port: must be a port number from 1 to 65535, not '99999'" in result.stderr
