"""Audio files uploaded to the pod (multipart parts, Gradio's audio inputs), kept in the input folder
only while their task lives.

Each upload gets a fresh unique name (its own extension kept when it is an audio one), is copied in
1 MiB pieces against the byte cap, and is deleted when its task ends, when its submission fails,
and at start (no task survives a restart).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Iterable

from ...errors import InputError

if TYPE_CHECKING:
    from ...audio.decode import AudioLimits
    from ...audio.trim import TrimLabels, TrimRange

# Upstream's multipart part names and the request field each one fills.
UPLOAD_PARTS = {"src_audio": "src_audio", "ctx_audio": "src_audio",
                "reference_audio": "reference_audio", "ref_audio": "reference_audio"}
AUDIO_EXTENSIONS = {".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3"}
PREFIX = "upload-"


def store(field: str, source: BinaryIO, filename: str | None, input_dir: Path, limits: AudioLimits) -> Path:
    """Copy an upload into `input_dir` under a unique name; InputError naming `field` when it is
    empty or over the byte cap (nothing is left behind then)."""
    input_dir.mkdir(parents=True, exist_ok=True)
    suffix = Path(filename or "").suffix.lower()
    target = input_dir / f"{PREFIX}{field}-{uuid.uuid4().hex}{suffix if suffix in AUDIO_EXTENSIONS else ''}"
    written = 0
    try:
        with open(target, "xb") as out:
            while chunk := source.read(1 << 20):
                written += len(chunk)
                limits.check_size(field, written)
                out.write(chunk)
        if written == 0:
            raise InputError(field, f"{field} was uploaded empty (0 bytes); attach the audio file")
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return target


def store_range(labels: TrimLabels, source: Path, trim: TrimRange, input_dir: Path, limits: AudioLimits) -> Path:
    """Store only `trim` of the uploaded file `source`, as FLAC under a unique name (nothing is left
    behind when the range is refused)."""
    input_dir.mkdir(parents=True, exist_ok=True)
    target = input_dir / f"{PREFIX}{labels.field}-{uuid.uuid4().hex}.flac"
    from ...audio.trim import cut  # numpy and soundfile: only when a trimmed upload is stored

    cut(labels, source, target, trim, limits)
    return target


def attach(fields: dict, uploads: list, stored: list[Path], input_dir: Path, limits: AudioLimits) -> dict:
    """Store each (field, UploadFile) in the input folder and point its field at the copy; an upload
    replaces any `*_path` value for the same field, as upstream. Stored paths are appended to
    `stored` as they are written, so the caller can delete them whatever fails later."""
    from ...schema.request import GenerationRequest

    named = [name for name, _ in uploads]
    for name in dict.fromkeys(named):
        if named.count(name) > 1:
            raise InputError(name, f"{name} was uploaded {named.count(name)} times; attach one file")
    for name, upload in uploads:
        stored.append(store(name, upload.file, upload.filename, input_dir, limits))
        for alias in GenerationRequest.model_fields[name].validation_alias.choices:
            fields.pop(alias, None)
        fields[name] = str(stored[-1])
    return fields


def discard(paths: Iterable[Path]) -> None:
    for path in paths:
        Path(path).unlink(missing_ok=True)


def clear_stale(input_dir: Path) -> int:
    """Remove uploads left by a previous process (a crash or kill -9 skips the per-task cleanup)."""
    if not input_dir.is_dir():
        return 0
    stale = [p for p in input_dir.glob(PREFIX + "*") if p.is_file()]
    discard(stale)
    return len(stale)
