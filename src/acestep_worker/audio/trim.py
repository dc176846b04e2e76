"""Keep one range of an uploaded song: the page's "from (s)" / "to (s)" controls.

The range is read straight from the uploaded file at its own rate and channel count, one second at a
time (memory holds one block, whatever the song's length), and written as FLAC: 16-bit sources stay
bit-exact, anything else (24/32-bit, float, MP3, Ogg) is kept at 24 bits. The result is an ordinary
input file that `audio.decode` decodes like any other, so every later check still applies.

Every refusal is an `InputError` in one sentence that names the control as the user sees it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from ..errors import InputError, echo
from ..schema.units import SAMPLE_RATE
from .decode import MIN_SAMPLES, AudioLimits, probe

MIN_KEPT_S = MIN_SAMPLES / SAMPLE_RATE  # one latent frame: less is not a song the model can read
_EXACT_16_BIT = {"PCM_S8", "PCM_U8", "PCM_16"}


@dataclass(frozen=True)
class TrimRange:
    """Seconds into the uploaded song; None is its start / its end."""

    start_s: float | None = None
    end_s: float | None = None

    @property
    def whole(self) -> bool:
        return self.start_s is None and self.end_s is None


@dataclass(frozen=True)
class TrimLabels:
    """How the controls are named in error sentences (the page's labels)."""

    field: str  # the request field the file fills: src_audio, reference_audio
    start: str
    end: str


def parse_range(labels: TrimLabels, start_text, end_text) -> TrimRange:
    """Two text fields as typed: empty is the song's start / end; otherwise seconds from 0."""
    start, end = _seconds(labels.field, labels.start, start_text), _seconds(labels.field, labels.end, end_text)
    if start is not None and end is not None and end <= start:
        raise InputError(labels.field, f"{labels.end} ({end:g}) must be after {labels.start} ({start:g}); give a "
                                       "later end, or leave it empty for the end of the song")
    return TrimRange(start, end)


def cut(labels: TrimLabels, source: Path, target: Path, trim: TrimRange, limits: AudioLimits) -> float:
    """Write `trim` of `source` to `target` (FLAC); return the seconds kept. `target` is not left
    behind when anything is refused."""
    field = labels.field
    # The source's own length is not capped here: cutting a 20-minute take down to 3 minutes is the point.
    info = probe(field, str(source), AudioLimits(limits.max_bytes, math.inf))
    length_s = info.duration_s
    start_s, end_s = trim.start_s or 0.0, trim.end_s
    if info.frames > 0 and start_s >= length_s:
        raise InputError(field, f"{labels.start} ({start_s:g}) is past the end of the uploaded song "
                                f"({length_s:.2f} s long); give a start below {length_s:.2f}")
    if info.frames > 0 and end_s is not None and end_s > length_s + 1 / info.sample_rate:
        raise InputError(field, f"{labels.end} ({end_s:g}) is past the end of the uploaded song "
                                f"({length_s:.2f} s long); give at most {length_s:.2f}, or leave it empty")
    first = round(start_s * info.sample_rate)
    wanted = None if end_s is None else round(end_s * info.sample_rate) - first
    if (wanted if wanted is not None else info.frames - first) / info.sample_rate > limits.max_seconds:
        raise InputError(field, f"the part kept by {labels.start} / {labels.end} is longer than "
                                f"{limits.max_seconds:g} s (ACESTEP_MAX_AUDIO_SECONDS); keep a shorter part")
    subtype = "PCM_16" if info.subtype in _EXACT_16_BIT else "PCM_24"
    kept = 0
    try:
        with sf.SoundFile(str(source)) as reader, \
                sf.SoundFile(str(target), "x", info.sample_rate, info.channels, subtype, format="FLAC") as writer:
            reader.seek(first)
            # int32 in and out: libsndfile shifts 16/24-bit PCM losslessly, no float scaling on the way.
            while wanted is None or kept < wanted:
                step = info.sample_rate if wanted is None else min(info.sample_rate, wanted - kept)
                block = reader.read(step, dtype="int32", always_2d=True)
                if not block.shape[0]:
                    break
                writer.write(block)
                kept += block.shape[0]
        if kept < MIN_SAMPLES * info.sample_rate / SAMPLE_RATE:
            raise InputError(field, f"{labels.start} / {labels.end} keep {kept / info.sample_rate:.3f} s of the "
                                    f"uploaded song; keep at least {MIN_KEPT_S:.2f} s")
    except (sf.LibsndfileError, RuntimeError) as exc:
        target.unlink(missing_ok=True)
        raise InputError(field, f"the uploaded {field} could not be cut ({str(exc)[:120]}); re-export it as "
                                "WAV or FLAC") from None
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return kept / info.sample_rate


def _seconds(field: str, label: str, text) -> float | None:
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise InputError(field, f"{label} is {echo(text)}; give seconds as a number from 0, or "
                                "leave it empty")
    return value
