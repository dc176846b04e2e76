"""Files on disk: writes are all or nothing with a sentence for each failure, and partial files and old
outputs do not pile up."""

import errno
import os
import time
from pathlib import Path

import pytest

from acestep_worker import partial_files
from acestep_worker.delivery import files
from acestep_worker.delivery.files import (
    OutputWriteError,
    prune_outputs,
    remove_orphaned_parts,
    write_all,
)


@pytest.mark.parametrize("code,reason", [(errno.EFBIG, "file size limit"), (errno.EDQUOT, "quota"),
                                         (errno.EIO, "Input/output error")])
def test_write_errors_say_what_happened(tmp_path, monkeypatch, code, reason):
    def failing_write(fd, *args, **kwargs):
        os.close(fd)
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(files.os, "fdopen", failing_write)
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

    monkeypatch.setattr(files.os, "replace", second_fails)
    with pytest.raises(OutputWriteError, match="disk is full"):
        write_all([(tmp_path / "a-1.mp3", b"one"), (tmp_path / "a-2.mp3", b"two")])
    assert list(tmp_path.iterdir()) == []


def _part(folder, owner: str):
    path = folder / f".song-1.mp3.{owner}.k3x9_ab2.part"
    path.write_bytes(b"half")
    return path


def test_partial_files_go_when_their_writer_is_gone_whatever_their_age(tmp_path):
    me, host = os.getpid(), partial_files.host_tag()
    start = partial_files.process_start(me)
    gone = next(pid for pid in range(4_000_000, 1, -1) if partial_files.process_start(pid) is None)
    live = _part(tmp_path, f"{me}-{start}-{host}")
    dead = _part(tmp_path, f"{gone}-{start}-{host}")
    reused = _part(tmp_path, f"{me}-{start + 1}-{host}")  # this pid, but another process's start time
    unowned = tmp_path / ".song-2.mp3.abc123.part"  # an older version's name says no owner
    unowned.write_bytes(b"half")
    (tmp_path / "keep.mp3").write_bytes(b"song")
    assert remove_orphaned_parts(tmp_path) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, "keep.mp3"])


def test_another_machines_partial_files_go_only_when_old(tmp_path):
    fresh = _part(tmp_path, "1-5-00000000" if partial_files.host_tag() != "00000000" else "1-5-11111111")
    old = tmp_path / fresh.name.replace("song-1", "song-2")
    old.write_bytes(b"half")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    assert remove_orphaned_parts(tmp_path) == 1 and fresh.exists() and not old.exists()


def test_partial_files_are_named_after_their_writer(tmp_path):
    target = tmp_path / ("n" * 240 + ".mp3")  # a name near the limit still leaves room for the owner
    fd, temp = partial_files.create(target)
    os.close(fd)
    assert Path(temp).name.startswith(f".{target.name[:100]}.{partial_files.owner_tag()}.")
    assert remove_orphaned_parts(tmp_path) == 0 and Path(temp).exists()


def test_no_budget_means_unbounded(tmp_path):
    for index in range(5):
        (tmp_path / f"s-{index}.mp3").write_bytes(b"x")
    assert prune_outputs(tmp_path, None, None) == 0 and len(list(tmp_path.iterdir())) == 5
