"""Lyric tokens on a DTW path -> per-token and per-line times -> LRC text, as upstream writes them.

A token's start and end are the first and last frame the path visits on its row (frames are
`duration / frames` seconds each); a token the path skips starts and ends where the previous one
ended. Lines end at a token whose text holds a newline; a line's text is its tokens decoded
together and stripped, its start and end rounded to milliseconds; empty lines are dropped. Each
line is written `[mm:ss.xx]text` (acestep/core/scoring/dit_alignment.py, `format_lrc`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

Decode = Callable[[Sequence[int]], str]  # token ids -> text, special tokens kept


@dataclass(frozen=True)
class TimedToken:
    token_id: int
    text: str
    start: float
    end: float


@dataclass(frozen=True)
class TimedLine:
    text: str
    start: float
    end: float


def token_texts(ids: Sequence[int], decode: Decode) -> list[str]:
    """Each token's share of the text decoded so far: the new bytes it adds, or "" while a multi-byte
    character is still incomplete (upstream's incremental decoding)."""
    texts, previous = [], b""
    for index in range(len(ids)):
        current = decode(ids[: index + 1]).encode("utf-8", errors="surrogatepass")
        added = current[len(previous):] if len(current) >= len(previous) else b""
        try:
            texts.append(added.decode("utf-8"))
        except UnicodeDecodeError:
            texts.append("")
        previous = current
    return texts


def timed_tokens(ids: Sequence[int], texts: Sequence[str], path_rows: np.ndarray, path_cols: np.ndarray,
                 frames: int, duration_s: float) -> list[TimedToken]:
    seconds_per_frame = duration_s / frames
    tokens: list[TimedToken] = []
    for index, token_id in enumerate(ids):
        on_row = path_cols[path_rows == index]
        if on_row.size == 0:
            start = end = tokens[-1].end if tokens else 0.0
        else:
            times = on_row * seconds_per_frame
            start, end = float(times[0]), float(times[-1])
        tokens.append(TimedToken(int(token_id), texts[index], float(start), float(max(end, start))))
    return tokens


def timed_lines(tokens: Sequence[TimedToken], decode: Decode) -> list[TimedLine]:
    lines: list[TimedLine] = []
    current: list[TimedToken] = []

    def close() -> None:
        text = decode([t.token_id for t in current])
        if text.strip():
            lines.append(TimedLine(text.strip(), round(current[0].start, 3), round(current[-1].end, 3)))

    for token in tokens:
        current.append(token)
        if "\n" in token.text:
            close()
            current = []
    if current:
        close()
    return lines


def lrc_timestamp(seconds: float) -> str:
    return f"[{int(seconds // 60):02d}:{seconds % 60:05.2f}]"


def format_lrc(lines: Sequence[TimedLine]) -> str:
    return "\n".join(f"{lrc_timestamp(line.start)}{line.text}" for line in lines)
