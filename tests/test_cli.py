"""The local `generate` command, run as a user would."""

import json
import os
import subprocess
import sys

from acestep_worker.audio_io import decode


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
