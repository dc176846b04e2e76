"""Partial files named after the process that writes them, so that none outlives its writer.

A file is written under a hidden temporary name and renamed into place when complete. The temporary
name says who writes it: `.<name>.<pid>-<start>-<host>.<random>.part`, where `start` is the writer's
start time (clock ticks since boot, from /proc: a reused pid has another) and `host` a digest of the
machine's name (a folder on a shared volume may hold another machine's parts). A sweep removes every
part whose writer is gone, whatever its age: one of this machine whose pid is not running, or is
running with another start time (or as a zombie), and one with no owner in its name (an older
version's). Another machine's live writer cannot be seen from here, so its parts go only once they
are older than `foreign_after_s` (writes take seconds).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import re
import socket
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)

PART_SUFFIX = ".part"
STALE_PART_S = 600.0  # another machine's part this old belongs to no live writer (writes take seconds)
SWEEP_PERIOD_S = 60.0  # how often a long-running process (the pod) sweeps its output folder again
_NAME_CHARS = 100  # of the final name kept in the temporary one (file names are capped at 255 bytes)
_OWNED = re.compile(r"\.(?P<pid>\d{1,10})-(?P<start>\d{1,20})-(?P<host>[0-9a-f]{8})\.[A-Za-z0-9_]+"
                    + re.escape(PART_SUFFIX) + r"$")
_start_times: dict[int, int | None] = {}


@functools.cache
def host_tag() -> str:
    """This machine's tag in temporary names (hashed once per process: every file written asks for it)."""
    return hashlib.sha256(socket.gethostname().encode("utf-8", "surrogatepass")).hexdigest()[:8]


def process_start(pid: int) -> int | None:
    """When `pid` started (clock ticks since boot), or None when no such process runs (or it is a
    zombie: killed, not yet reaped). Without /proc, 0 for any pid that exists."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return _exists_without_proc(pid)
    fields = stat[stat.rindex(")") + 2:].split()  # after `pid (comm)`, which may hold spaces
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])  # field 22 of proc(5): starttime


def _exists_without_proc(pid: int) -> int | None:
    if Path("/proc/self/stat").exists():
        return None  # /proc works here, and this pid has no entry
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except OSError:
        pass  # it exists, owned by someone else
    return 0


def owner_tag() -> str:
    """`<pid>-<start>-<host>` of this process."""
    pid = os.getpid()
    if pid not in _start_times:  # per pid: a forked child is another writer
        _start_times[pid] = process_start(pid)
    return f"{pid}-{_start_times[pid] or 0}-{host_tag()}"


def create(path: Path) -> tuple[int, str]:
    """Open a new partial file for `path` in its folder, named after this process: (fd, its path)."""
    return tempfile.mkstemp(prefix=f".{path.name[:_NAME_CHARS]}.{owner_tag()}.", suffix=PART_SUFFIX,
                            dir=path.parent)


def orphaned(name: str, age_s: float, foreign_after_s: float = STALE_PART_S) -> bool:
    """Whether the partial file `name`, `age_s` old, has no live writer."""
    owned = _OWNED.search(name)
    if owned is None:
        return True
    if owned["host"] != host_tag():
        return age_s > foreign_after_s
    start = process_start(int(owned["pid"]))
    return start is None or (start != int(owned["start"]) and int(owned["start"]) != 0)


def sweep(folder: Path, foreign_after_s: float = STALE_PART_S, now: float | None = None) -> int:
    """Remove the partial files in `folder` that no live process writes. Returns how many went."""
    now = time.time() if now is None else now
    removed = 0
    try:
        candidates = list(folder.glob(f".*{PART_SUFFIX}"))
    except OSError:
        return 0
    for path in candidates:
        try:
            if orphaned(path.name, now - path.lstat().st_mtime, foreign_after_s):
                path.unlink()
                removed += 1
        except (OSError, ValueError, IndexError):
            pass  # gone already, not ours to delete, or an owner /proc cannot describe: kept
    if removed:
        log.info("removed %d partial file(s) that no live process writes from %s", removed, folder)
    return removed
