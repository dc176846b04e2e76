"""Finished songs as files: encoded, tagged, written all-or-nothing, described for the caller; and
the output folder kept within its budget.

Written by the job runner for every door, which present the same facts in their own shapes.
A job's files are all written or none are (a full disk, a cancel or a crash between two songs
leaves nothing behind), names are unique per job whatever its id, and the audio lives on disk
only: a SavedSong holds its path, size and digest, not its bytes.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol, Sequence
from urllib.parse import quote

import numpy as np

from ..audio.encode import encode_all
from ..errors import AceStepError
from ..schema.formats import CONTENT_TYPES, FORMATS
from .partial_files import STALE_PART_S
from .partial_files import create as create_part
from .partial_files import sweep as sweep_parts

log = logging.getLogger(__name__)

_DISK_FULL = {errno.ENOSPC: "the disk is full", errno.EFBIG: "the file size limit was reached",
              errno.EDQUOT: "the disk quota is exhausted"}


class OutputWriteError(AceStepError):
    """The songs were made but could not be written; nothing of the job was kept."""


@dataclass(frozen=True)
class SavedSong:
    path: Path
    size: int  # bytes on disk
    sha256: str
    seed: int
    format: str
    content_type: str
    duration_s: float
    sample_rate: int
    stem: str | None = None  # the track it is, in a job that names stems
    take: int = 0  # which of the batch_size takes it is (its seed's and retake seed's index)
    extras: dict = field(default_factory=dict)  # per song: LRC, scores, its take (the engine's Song.extras)

    @property
    def file_url(self) -> str:
        """The root-relative URL the pod server serves the file under."""
        return f"/v1/audio?filename={quote(self.path.name)}"

    def read(self) -> bytes:
        return self.path.read_bytes()


def safe_name(text: str) -> str:
    """A file-system and URL safe stem (job and task ids come from callers)."""
    cleaned = re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_")[:80]
    return cleaned or "job"


def file_stem(job_id: str) -> str:
    """The stem of a job's files: the id itself when it is already safe, else its safe form plus a
    digest of the real id, so that `a/b`, `a_b` and `a\\x00b` never share (and overwrite) a file."""
    safe = safe_name(job_id)
    if safe == job_id:
        return safe
    digest = hashlib.sha256(job_id.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{safe}-{digest}"


class SongAudio(Protocol):
    audio: np.ndarray  # [samples, channels] float32 in [-1, 1]
    sample_rate: int
    seed: int
    duration_s: float


@dataclass(frozen=True)
class Encoding:
    """How a job's songs are encoded: the format, MP3's bitrate, and the tags every file carries."""

    format: str
    mp3_bitrate: int
    tags: dict[str, str]


def song_tags(model: str, random_weights: bool, caption: str) -> dict[str, str]:
    """A finished song's tags: its title, and which model made it (or that it is noise)."""
    comment = "RANDOM-WEIGHT TEST MODEL: noise, not music" if random_weights else f"ACE-Step 1.5 ({model})"
    return {"comment": comment, "title": caption[:120]}


def job_paths(output_dir: Path, job_id: str, count: int, extension: str) -> list[Path]:
    """`<stem>-1.<ext>`, `<stem>-2.<ext>`, ... in `output_dir`, the stem unique per job id."""
    return [output_dir / f"{file_stem(job_id)}-{index}.{extension}" for index in range(1, count + 1)]


def stem_paths(paths: list[Path], stems: Sequence[str | None]) -> list[Path]:
    """`<stem>-1-vocals.mp3`, ...: each path with its song's track name, where the job names stems."""
    return [path.with_name(f"{path.stem}-{stem}{path.suffix}") if stem else path for path, stem in zip(paths, stems)]


def save_songs(songs: Sequence[SongAudio], encoding: Encoding, paths: list[Path],
               check: Callable[[], object] | None = None) -> list[SavedSong]:
    """Encode every song and write it to its path, all or none.

    `check` runs before the songs are encoded and once more before anything is written; it may raise
    (a deadline or a cancel), and then nothing is written.
    """
    fmt = FORMATS[encoding.format]
    if check is not None:
        check()
    datas = encode_all([(song.audio, song.sample_rate) for song in songs], fmt.name,
                       bitrate_kbps=encoding.mp3_bitrate, tags=encoding.tags)
    if check is not None:
        check()
    encoded = list(zip(paths, datas))
    write_all(encoded)
    return [SavedSong(path, len(data), hashlib.sha256(data).hexdigest(), song.seed, fmt.name, fmt.content_type,
                      song.duration_s, song.sample_rate, getattr(song, "stem", None), getattr(song, "take", 0),
                      dict(getattr(song, "extras", {})))
            for (path, data), song in zip(encoded, songs)]


def write_all(files: list[tuple[Path, bytes]]) -> None:
    """Write every file or none: each goes to a hidden `.part` file named after this process
    first (partial_files.py: a sweep removes it once the process is gone), and only when all of them
    are complete are they renamed into place. Any failure removes what this call wrote."""
    temps: list[tuple[str, Path]] = []
    placed: list[Path] = []
    try:
        for path, data in files:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, temp = create_part(path)
            temps.append((temp, path))
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.chmod(temp, 0o644)  # mkstemp creates 0600; songs are meant to be served and shared
        for temp, path in temps:
            os.replace(temp, path)
            placed.append(path)
    except BaseException as exc:
        for temp, _ in temps:
            Path(temp).unlink(missing_ok=True)
        for path in placed:
            path.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            reason = _DISK_FULL.get(exc.errno, exc.strerror or type(exc).__name__)
            folder = files[0][0].parent if files else "the output folder"
            raise OutputWriteError(f"could not write the songs to {folder}: {reason}; nothing of this job "
                                   "was kept") from None
        raise


def remove_orphaned_parts(folder: Path, foreign_after_s: float = STALE_PART_S, now: float | None = None) -> int:
    """Delete the partial files whose writer is gone (killed mid-write), whatever their age; another
    machine's (a shared volume) once older than `foreign_after_s`. Returns how many went."""
    return sweep_parts(folder, foreign_after_s, now)


def prune_outputs(folder: Path, max_files: int | None, max_bytes: int | None, keep: frozenset[Path] = frozenset(),
                  ) -> int:
    """Keep the folder's audio within `max_files` and `max_bytes` (None: no limit), deleting the
    oldest files first and never one in `keep`. Only our audio types are counted or touched."""
    if max_files is None and max_bytes is None:
        return 0
    entries = []
    try:
        for path in folder.iterdir():
            if path.suffix.lstrip(".").lower() in CONTENT_TYPES and not path.name.startswith("."):
                try:
                    stat = path.stat()
                except OSError:
                    continue
                if path.is_file():
                    entries.append((stat.st_mtime, stat.st_size, path))
    except OSError:
        return 0
    entries.sort()
    count, total = len(entries), sum(size for _, size, _ in entries)
    removed = 0
    for _, size, path in entries:
        if (max_files is None or count <= max_files) and (max_bytes is None or total <= max_bytes):
            break
        if path in keep:
            continue
        try:
            path.unlink()
        except OSError:
            continue
        count, total, removed = count - 1, total - size, removed + 1
    if removed:
        log.info("removed %d old output file(s) from %s to stay within the output budget", removed, folder)
    return removed


def tidy_output_dir(settings) -> None:
    """At start: remove the partial files no live process writes, then apply the output budget."""
    remove_orphaned_parts(settings.output_dir)
    prune_outputs(settings.output_dir, settings.output_max_files, settings.output_max_bytes)
