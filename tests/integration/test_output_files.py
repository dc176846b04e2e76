"""Files the engine's jobs write: a job's songs are all written or none are, names are unique per job whatever
its id, and the output folder stays within its budget."""

import errno
import hashlib
import os
from dataclasses import replace

import pytest

from acestep_worker.delivery import files
from acestep_worker.delivery.files import (
    OutputWriteError,
    file_stem,
    prune_outputs,
    tidy_output_dir,
)
from acestep_worker.doors.serverless import run_job


class InFolder:
    """The real engine, with settings that point at a test's own folder and budget."""

    def __init__(self, engine, **settings):
        self.engine, self.settings = engine, replace(engine.settings, **settings)

    def plan(self, request, seeds=None):
        return self.engine.plan(request, seeds)

    def run(self, plan, *args):
        return self.engine.run(plan, *args)


def test_a_full_disk_keeps_no_song_of_the_job(engine, tmp_path, monkeypatch):
    real_fdopen = os.fdopen
    opened = []

    def failing_second_file(fd, *args, **kwargs):
        opened.append(fd)
        if len(opened) == 2:
            os.close(fd)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fdopen(fd, *args, **kwargs)

    monkeypatch.setattr(files.os, "fdopen", failing_second_file)
    job = InFolder(engine, output_dir=tmp_path)
    with pytest.raises(OutputWriteError, match="the disk is full") as err:
        run_job(job, "full-disk", {"duration": 10, "batch_size": 2, "audio_format": "wav"}, env={})
    assert "nothing of this job was kept" in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_job_ids_that_clean_to_one_name_get_different_files(engine, tmp_path):
    job = InFolder(engine, output_dir=tmp_path)
    ids = ["a/b", "a_b", "a\x00b"]
    results = [run_job(job, job_id, {"duration": 10, "seed": i, "audio_format": "wav"}, env={})["results"][0]
               for i, job_id in enumerate(ids)]
    names = [r["filename"] for r in results]
    assert len(set(names)) == len(ids) and names[1] == "a_b-1.wav"
    for result in results:  # each file still is the song its result describes
        assert hashlib.sha256((tmp_path / result["filename"]).read_bytes()).hexdigest() == result["sha256"]
    assert file_stem("x" * 500) == file_stem("x" * 500) and file_stem("x" * 500) != file_stem("x" * 501)


def test_the_serverless_output_folder_stays_within_its_budget(engine, tmp_path):
    for index in range(3):
        path = tmp_path / f"older-{index}.mp3"
        path.write_bytes(b"x")
        os.utime(path, (1000 + index, 1000 + index))
    job = InFolder(engine, output_dir=tmp_path, output_max_files=3)
    names = [r["filename"] for r in run_job(job, "budget", {"duration": 10, "batch_size": 2, "audio_format": "wav"},
                                            env={})["results"]]
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(["older-2.mp3", *names])  # oldest first; the new job is always complete
    (tmp_path / "notes.txt").write_text("not ours")
    assert prune_outputs(tmp_path, max_files=0, max_bytes=None) == 3 and (tmp_path / "notes.txt").exists()


def test_the_byte_budget_and_start_up_tidy(engine, tmp_path):
    for index in range(5):
        path = tmp_path / f"old-{index}.wav"
        path.write_bytes(b"x" * 1000)
        os.utime(path, (1000 + index, 1000 + index))
    part = tmp_path / ".x.part"
    part.write_bytes(b"p")
    os.utime(part, (1000, 1000))
    tidy_output_dir(replace(engine.settings, output_dir=tmp_path, output_max_files=None, output_max_bytes=2500))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old-3.wav", "old-4.wav"]
