"""The command-line flags for lyric timestamps, scores and best-of-N, shared by both clients, and what
they do with a song's result: its LRC written beside it as `<song>.lrc`, its scores reported."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .song_flags import choices_of, given


def add_alignment_arguments(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    p.add_argument("--lrc", action="store_true",
                   help="also get each song's lyrics with timestamps (auto_lrc), written beside it as .lrc")
    p.add_argument("--score", action="store_true",
                   help="report each song's scores (auto_score: lm_score, dit_score, and quality_score "
                   "where the planner LM and audio codes are there)")
    p.add_argument("--keep-best", type=int, metavar="K",
                   help="best-of-N, this server's own: make --batch-size takes and keep the best K")
    p.add_argument("--rank-by", choices=choices_of("rank_by"),
                   help="the score --keep-best ranks by")


def alignment_fields(args: argparse.Namespace) -> dict:
    return given({"auto_lrc": args.lrc or None, "auto_score": args.score or None, "keep_best": args.keep_best,
                  "rank_by": args.rank_by})


def write_lrc(song_path: Path, lrc: str | None) -> Path | None:
    """The LRC text as `<song>.lrc` (UTF-8), or nothing when the song has none."""
    if lrc is None:
        return None
    path = song_path.with_suffix(".lrc")
    path.write_text(lrc + "\n", encoding="utf-8")
    return path


def report_scores(entries: list[tuple[Path, dict]], takes: list | None, quiet: bool) -> None:
    """One line per song with its scores and take, and the takes of a best-of-N, on stderr."""
    if quiet:
        return
    for path, song in entries:
        scores = {k: song[k] for k in ("lm_score", "dit_score", "quality_score", "take", "rank", "alignment_error")
                  if k in song}
        if scores:
            print(f"{path.name}: {json.dumps(scores, ensure_ascii=False)}", file=sys.stderr)
    if takes:
        print(f"takes: {json.dumps(takes)}", file=sys.stderr)
