"""Files on disk: a job's songs are all written or none are, names are unique per job whatever its
id, partial files and old outputs do not pile up."""

import errno
import hashlib
import os
import time
from dataclasses import replace

import pytest

from acestep_worker.delivery import files as outputs
from acestep_worker.delivery.files import (
    OutputWriteError,
    file_stem,
    prune_outputs,
    remove_stale_parts,
    tidy_output_dir,
    write_all,
)
from acestep_worker.doors.serverless import run_job


class InFolder:
    """The real engine, with settings that point at a test's own folder and budget."""

    def __init__(self, engine, **settings):
        self.engine, self.settings = engine, replace(engine.settings, **settings)
        self.planner = engine.planner

    def check(self, request, audio=None):
        self.engine.check(request, audio)

    def generate(self, request, **kwargs):
        return self.engine.generate(request, **kwargs)


def test_a_full_disk_keeps_no_song_of_the_job(engine, tmp_path, monkeypatch):
    real_fdopen = os.fdopen
    opened = []

    def failing_second_file(fd, *args, **kwargs):
        opened.append(fd)
        if len(opened) == 2:
            os.close(fd)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fdopen(fd, *args, **kwargs)

    monkeypatch.setattr(outputs.os, "fdopen", failing_second_file)
    job = InFolder(engine, output_dir=tmp_path)
    with pytest.raises(OutputWriteError, match="the disk is full") as err:
        run_job(job, "full-disk", {"duration": 10, "batch_size": 2, "audio_format": "wav"}, env={})
    assert "nothing of this job was kept" in str(err.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("code,reason", [(errno.EFBIG, "file size limit"), (errno.EDQUOT, "quota"),
                                         (errno.EIO, "Input/output error")])
def test_write_errors_say_what_happened(tmp_path, monkeypatch, code, reason):
    def failing_write(fd, *args, **kwargs):
        os.close(fd)
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(outputs.os, "fdopen", failing_write)
    with pytest.raises(OutputWriteError, match=reason):
        write_all([(tmp_path / "a-1.wav", b"one")])
    assert list(tmp_path.iterdir()) == []


def test_a_failed_rename_removes_the_songs_already_placed(tmp_path, monkeypatch):
    real_replace = os.replace
    calls = []

    def second_fails(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(outputs.os, "replace", second_fails)
    with pytest.raises(OutputWriteError, match="disk is full"):
        write_all([(tmp_path / "a-1.mp3", b"one"), (tmp_path / "a-2.mp3", b"two")])
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


def test_stale_partial_files_are_removed_and_fresh_ones_kept(tmp_path):
    stale, fresh = tmp_path / ".song-1.mp3.abc.part", tmp_path / ".song-2.mp3.def.part"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"half")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    (tmp_path / "keep.mp3").write_bytes(b"song")
    assert remove_stale_parts(tmp_path) == 1
    assert not stale.exists() and fresh.exists() and (tmp_path / "keep.mp3").exists()


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


def test_no_budget_means_unbounded(tmp_path):
    for index in range(5):
        (tmp_path / f"s-{index}.mp3").write_bytes(b"x")
    assert prune_outputs(tmp_path, None, None) == 0 and len(list(tmp_path.iterdir())) == 5
