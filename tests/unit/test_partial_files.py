"""Partial files are named after the process writing them, and a sweep removes every one whose writer
is gone, whatever its age (#18 item 7); tests/e2e/test_partial_files.py kills real writers."""

import os
import time
from pathlib import Path

from acestep_worker.delivery import partial_files
from acestep_worker.delivery.files import remove_orphaned_parts


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
    assert not dead.exists() and not reused.exists() and not unowned.exists()


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
