"""Files on disk: writes are all or nothing with a sentence for each failure, and partial files and old
outputs do not pile up."""

import errno
import os

import pytest

from acestep_worker.delivery import files
from acestep_worker.delivery.files import (
    OutputWriteError,
    prune_outputs,
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


def test_no_budget_means_unbounded(tmp_path):
    for index in range(5):
        (tmp_path / f"s-{index}.mp3").write_bytes(b"x")
    assert prune_outputs(tmp_path, None, None) == 0 and len(list(tmp_path.iterdir())) == 5
