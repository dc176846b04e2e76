"""Retake on the tiny checkpoints, through the engine and the in-process doors: variance 0 is today's song
bit for bit, a retake is reproducible from its seeds, and it reaches editing tasks too."""

import json

import numpy as np
import pytest

from acestep_worker.doors import cli
from acestep_worker.doors.serverless import run_job
from acestep_worker.schema.request import parse

from ..support.audio import decoded_song

SOURCE = decoded_song(1.0)


def _audio(engine, audio=None, **fields):
    result = engine.generate(parse({"caption": "retake", "duration": 10, "seed": 3, **fields}), audio=audio)
    return result, np.stack([song.audio for song in result.songs])


def test_variance_zero_is_bitwise_the_song_without_the_fields(engine):
    plain, plain_audio = _audio(engine, batch_size=2)
    result, audio = _audio(engine, batch_size=2, retake_variance=0.0, retake_seed=77)
    assert np.array_equal(audio, plain_audio)
    assert "retake_seeds" not in result.params and "retake_seeds" not in plain.params


def test_a_retake_is_stable_and_another_retake_seed_is_another_take(engine):
    _, plain = _audio(engine)
    a, first = _audio(engine, retake_seed=7, retake_variance=0.3)
    _, again = _audio(engine, retake_seed=7, retake_variance=0.3)
    _, other = _audio(engine, retake_seed=8, retake_variance=0.3)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, plain) and not np.array_equal(first, other)
    assert (a.params["retake_seeds"], a.params["retake_variance"], a.params["seeds"]) == ([7], 0.3, [3])


def test_full_variance_is_the_retake_seeds_own_song(engine):
    _, full = _audio(engine, retake_seed=11, retake_variance=1.0)
    _, own = _audio(engine, seed=11)
    assert np.array_equal(full, own)


def test_random_retake_seeds_are_reported_and_reproduce_the_songs(engine):
    result, audio = _audio(engine, batch_size=2, retake_variance=0.5)
    drawn = result.params["retake_seeds"]
    assert len(drawn) == 2
    _, again = _audio(engine, batch_size=2, retake_variance=0.5, retake_seed=",".join(map(str, drawn)))
    assert np.array_equal(audio, again)


@pytest.mark.parametrize("task", ["cover", "repaint"])
def test_a_retake_changes_editing_tasks_and_variance_zero_does_not(engine, task):
    fields = {"task_type": task, "src_audio": "source.wav", "repainting_start": 0.2, "repainting_end": 0.8,
              "cover_noise_strength": 0.4 if task == "cover" else 0.0}
    _, plain = _audio(engine, {"src_audio": SOURCE}, **fields)
    _, zero = _audio(engine, {"src_audio": SOURCE}, retake_seed=9, retake_variance=0, **fields)
    _, retake = _audio(engine, {"src_audio": SOURCE}, retake_seed=9, retake_variance=0.6, **fields)
    assert np.array_equal(zero, plain) and not np.array_equal(retake, plain)


def test_a_serverless_job_reports_each_songs_retake_seed(engine, handler_module):
    out = run_job(engine, "retake-job", {"caption": "retake", "duration": 10, "seed": 4, "batch_size": 2,
                                         "retakeSeed": 40, "retakeVariance": 0.25}, env={})
    assert [(r["seed"], r["retake_seed"]) for r in out["results"]] == [(4, 40), (5, 41)]
    assert out["params"]["retake_variance"] == 0.25 and "retake_seeds" not in out["params"]
    unused = run_job(engine, "retake-unused", {"duration": 10, "retake_seed": 40}, env={})
    assert "retake_variance is 0" in unused["params"]["unused"]["retake_seed"]
    assert "retake_seed" not in unused["results"][0]
    bad = handler_module.handle({"id": "retake-bad", "input": {"duration": 10, "retake_variance": 3}})
    assert set(bad) == {"error"} and bad["error"].startswith("retake_variance must be a number from 0")


def test_the_page_sends_the_retake_fields(engine):
    from acestep_worker.doors.pod.page import form
    from acestep_worker.doors.pod.page.inputs import STARTING_VALUES, named

    values = dict(STARTING_VALUES, caption="page", retake_seed="12", retake_variance=0.4)
    fields = form._fields(named(tuple(values.values())))
    assert (fields["retake_seed"], fields["retake_variance"]) == ("12", 0.4)
    assert parse(fields).retake_seed == (12,)
    untouched = form._fields(named(tuple(STARTING_VALUES.values())))
    assert "retake_seed" not in untouched and "retake_variance" not in untouched


def test_the_cli_generates_a_retake_and_prints_its_seeds(tiny_env, monkeypatch, tmp_path, capsys):
    for name, value in {**tiny_env, "ACESTEP_OUTPUT_DIR": str(tmp_path)}.items():
        monkeypatch.setenv(name, value)
    out = tmp_path / "song.wav"
    assert cli.main(["generate", "-c", "retake", "-d", "10", "--seed", "3", "--retake-seed", "21",
                     "--retake-variance", "0.2", "--out", str(out), "-q"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["seeds"], summary["retake_seeds"], summary["retake_variance"]) == ([3], [21], 0.2)
    assert out.is_file()
