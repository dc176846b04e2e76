"""Finished songs as files: encoded, tagged, written atomically, described for the caller.

Shared by the serverless job and the pod server, which present the same facts in their own shapes.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from .audio_io import FORMATS, encode_all, write_atomically
from .engine import GenerationResult
from .request import GenerationRequest


@dataclass(frozen=True)
class SavedSong:
    path: Path
    data: bytes
    seed: int
    format: str
    content_type: str
    duration_s: float
    sample_rate: int

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def file_url(self) -> str:
        """The root-relative URL the pod server serves the file under."""
        return f"/v1/audio?filename={quote(self.path.name)}"


def safe_name(text: str) -> str:
    """A file-system and URL safe stem (job and task ids come from callers)."""
    cleaned = re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_")[:80]
    return cleaned or "job"


def save_songs(result: GenerationResult, request: GenerationRequest, stem: str, output_dir: Path) -> list[SavedSong]:
    """Encode every song in the requested format and write `<stem>-<n>.<ext>` files; time it."""
    fmt = FORMATS[request.audio_format]
    comment = ("RANDOM-WEIGHT TEST MODEL: noise, not music" if result.random_weights
               else f"ACE-Step 1.5 ({result.model})")
    tags = {"comment": comment, "title": str(result.params.get("caption") or request.caption)[:120]}
    saved = []
    start = time.perf_counter()
    encoded = encode_all([(song.audio, song.sample_rate) for song in result.songs], fmt.name,
                         bitrate_kbps=request.mp3_bitrate, tags=tags)
    for index, (song, data) in enumerate(zip(result.songs, encoded), 1):
        path = output_dir / f"{safe_name(stem)}-{index}.{fmt.extension}"
        write_atomically(path, data)
        saved.append(SavedSong(path, data, song.seed, fmt.name, fmt.content_type, song.duration_s, song.sample_rate))
    result.timings["encode"] = time.perf_counter() - start
    return saved
