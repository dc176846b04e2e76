"""`python -m acestep_worker`: generate songs on this machine (no server involved), serve pod mode,
download the checkpoints, or run the client against a pod or a Runpod endpoint.

    python -m acestep_worker generate --caption "lofi piano" --duration 30 --out song.mp3
    python -m acestep_worker generate --checkpoints ./tiny --caption test --out test.mp3
    python -m acestep_worker serve
    python -m acestep_worker client --api-url http://<pod>:8000 --caption "lofi piano" -d 30

Checkpoints come from the usual settings (ACESTEP_CONFIG_PATH and friends) unless `--checkpoints`
points at a checkpoint root; `--model` picks a DiT folder inside it.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import sys
from pathlib import Path

from tqdm import tqdm

from ..errors import AceStepError
from ..schema.formats import FORMAT_OF_SUFFIX, FORMATS
from ..schema.request import parse
from .alignment_flags import add_alignment_arguments, alignment_fields, write_lrc
from .song_flags import (add_finishing_arguments, add_retake_arguments, choices_of, finishing_fields, given,
                         retake_fields)

DEFAULT_MODEL = "acestep-v15-turbo"


def _generate_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="generate songs from a caption and lyrics")
    p.add_argument("--caption", "-c", default="", help="what the music should sound like")
    p.add_argument("--lyrics", "-l", default="", help="lyrics; empty or [inst] for an instrumental")
    p.add_argument("--lyrics-file", "-f", type=Path, help="read the lyrics from a file")
    p.add_argument("--duration", "-d", type=float, help="seconds, 10-600 (default 30)")
    p.add_argument("--batch-size", "-b", type=int, default=1, help="songs to generate, 1-8")
    p.add_argument("--seed", help="integer, or a comma list with one seed per song")
    add_retake_arguments(p)
    p.add_argument("--steps", type=int, help="diffusion steps (default: the model's)")
    p.add_argument("--guidance", type=float, help="guidance scale for base/sft models")
    p.add_argument("--shift", type=float, help="timestep shift")
    p.add_argument("--sampler", choices=choices_of("sampler_mode"), help="euler (default) or heun: second-order steps, "
                   "one more DiT call per step")
    p.add_argument("--bpm", type=int)
    p.add_argument("--key", help='key and scale, e.g. "C major"')
    p.add_argument("--time-signature", help="beats per bar: 2, 3, 4 or 6")
    p.add_argument("--language", default="en", help="vocal language code")
    p.add_argument("--format", choices=list(FORMATS), help="audio format (default: from --out)")
    p.add_argument("--bitrate", type=int, default=192, help="MP3 bitrate in kbps")
    add_finishing_arguments(p)
    p.add_argument("--model", help="DiT folder name to use")
    p.add_argument("--src-audio", type=Path, help="an audio file: the source of --extract-codes and --analyze")
    p.add_argument("--extract-codes", action="store_true", help="print the 5 Hz audio codes of --src-audio "
                   "(extract_codes_only); no audio is made")
    p.add_argument("--analyze", action="store_true", help="print the planner's reading of --src-audio: bpm, key, "
                   "time signature, duration, genre, language, caption, lyrics (full_analysis_only)")
    p.add_argument("--analyze-metadata", action="store_true", help="print the planner's metadata pass over "
                   "--caption and --lyrics (analysis_only)")
    p.add_argument("--checkpoints", type=Path, help="checkpoint root (overrides ACESTEP_CONFIG_PATH)")
    p.add_argument("--out", "-o", type=Path, default=Path("song.mp3"), help="output file")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    add_alignment_arguments(p)


ANALYSIS_FLAGS = {"extract_codes": "extract_codes_only", "analyze": "full_analysis_only",
                  "analyze_metadata": "analysis_only"}


def _analysis_request(args: argparse.Namespace, modes: dict) -> dict:
    """An analysis job reads the source (as an inline data URI), or the caption and lyrics, and a seed."""
    data = dict(modes, seed=args.seed)
    if args.src_audio is not None:
        if not args.src_audio.is_file():
            raise SystemExit(f"--src-audio {args.src_audio}: no such file")
        data["src_audio"] = "data:audio/*;base64," + base64.b64encode(args.src_audio.read_bytes()).decode("ascii")
    if args.analyze_metadata:
        data.update(caption=args.caption, lyrics=args.lyrics_file.read_text() if args.lyrics_file else args.lyrics)
    return {k: v for k, v in data.items() if v is not None}


def _request(args: argparse.Namespace) -> dict:
    modes = {field: True for flag, field in ANALYSIS_FLAGS.items() if getattr(args, flag)}
    if modes:
        return _analysis_request(args, modes)
    if args.src_audio is not None:
        raise SystemExit("--src-audio is read by --extract-codes and --analyze (edit songs with the client)")
    lyrics = args.lyrics_file.read_text() if args.lyrics_file else args.lyrics
    fmt = args.format or FORMAT_OF_SUFFIX.get(suffix := args.out.suffix.lstrip(".").lower(), suffix or "mp3")
    data = {"caption": args.caption, "lyrics": lyrics, "duration": args.duration, "batch_size": args.batch_size,
            "seed": args.seed, "inference_steps": args.steps, "guidance_scale": args.guidance, "sampler_mode": args.sampler,
            "shift": args.shift, "bpm": args.bpm, "key_scale": args.key, "time_signature": args.time_signature,
            "vocal_language": args.language, "audio_format": fmt, "mp3_bitrate": args.bitrate}
    return given(data) | retake_fields(args) | finishing_fields(args) | alignment_fields(args)


def _use_checkpoints(root: Path, model: str | None) -> None:
    name = model or (DEFAULT_MODEL if (root / DEFAULT_MODEL).is_dir() else None)
    if name is None:
        raise SystemExit(f"--checkpoints {root}: no {DEFAULT_MODEL} folder; name one with --model")
    os.environ["ACESTEP_CONFIG_PATH"] = str(root / name)
    os.environ.pop("ACESTEP_VAE_PATH", None)
    os.environ.pop("ACESTEP_TEXT_ENCODER_PATH", None)


def output_paths(out: Path, count: int, extension: str) -> list[Path]:
    """`song.mp3` for one song; `song_1.mp3`, `song_2.mp3`, ... for several."""
    out = out.with_suffix("." + extension)
    if count == 1:
        return [out]
    return [out.with_name(f"{out.stem}_{i}{out.suffix}") for i in range(1, count + 1)]


def run_generate(args: argparse.Namespace) -> int:
    from ..audio.sources import SourcePolicy  # heavy imports only when generating
    from ..pipeline.engine import Engine
    from ..runner.deadline import Deadline
    from ..runner.job import Job, JobRunner
    from ..settings import Settings

    if args.checkpoints:
        _use_checkpoints(args.checkpoints, args.model)
    request = parse(_request(args) | ({"model": args.model} if args.model and not args.checkpoints else {}))
    engine = Engine(Settings.from_env())
    runner, sources = JobRunner(engine), SourcePolicy.from_settings(engine.settings)
    plan = runner.check(request, sources)
    bar = None if args.quiet else tqdm(total=100, unit="%", bar_format="{desc:<14}{bar}| {n:.0f}%")

    def on_progress(progress) -> None:
        if bar is not None:
            bar.set_description_str(progress.stage)
            bar.n = round(progress.fraction * 100)
            bar.refresh()

    finished = runner.run(Job("cli", plan, Deadline(), sources, lambda count, ext: output_paths(args.out, count, ext),
                              on_progress=on_progress))
    if bar is not None:
        bar.close()
    result = finished.result
    if result.analysis is not None:  # upstream's result for the mode, then what ran it
        print(json.dumps({"mode": plan.mode, **result.analysis, "model": result.model,
                          "random_weights": result.random_weights,
                          "timings_s": {k: round(v, 3) for k, v in finished.timings.items()}},
                         indent=2, ensure_ascii=False))
        return 0
    summary = {"files": [str(song.path) for song in finished.songs], "seeds": [s.seed for s in finished.songs],
               **({"retake_seeds": result.params["retake_seeds"], "retake_variance": result.params["retake_variance"]}
                  if "retake_seeds" in result.params else {}),
               "duration_s": finished.songs[0].duration_s, "model": result.model,
               "random_weights": result.random_weights,
               "timings_s": {k: round(v, 3) for k, v in finished.timings.items()}}
    if any(song.extras for song in finished.songs):
        summary["songs"] = [_song_extras(song) for song in finished.songs]
    if "takes" in result.params:
        summary["takes"] = result.params["takes"]
    print(json.dumps(summary, indent=2, ensure_ascii=False))
    if result.random_weights:
        print("NOTE: these songs were made by random-weight tiny test checkpoints: expect noise, not music.",
              file=sys.stderr)
    return 0


def _song_extras(song) -> dict:
    """A song's scores and take; its LRC goes to a .lrc file beside it (named in the summary)."""
    extras = dict(song.extras)
    lrc_file = write_lrc(song.path, extras.pop("lrc", None))
    if lrc_file is not None:
        extras["lrc_file"] = str(lrc_file)
    return extras


def run_serve(args: argparse.Namespace) -> int:
    from .pod.launch import serve

    flags = {"ACESTEP_API_HOST": args.host, "ACESTEP_API_PORT": args.port, "ACESTEP_GRADIO_PORT": args.gradio_port}
    serve({**os.environ, **{k: str(v) for k, v in flags.items() if v is not None}})  # flags win over variables
    return 0


def _port(lowest: int):
    def parse_port(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = -1
        if not lowest <= value <= 65535:
            raise argparse.ArgumentTypeError(f"must be a port number from {lowest} to 65535, not {text!r}")
        return value
    return parse_port


def _serve_parser(sub) -> None:
    p = sub.add_parser("serve", help="pod mode: the HTTP API and the Gradio page, one copy of the models")
    p.add_argument("--host", help="address to listen on (default: ACESTEP_API_HOST or 0.0.0.0, all interfaces)")
    p.add_argument("--port", type=_port(1), help="the API's port (default: ACESTEP_API_PORT or 8000)")
    p.add_argument("--gradio-port", type=_port(0), help="the page's port, 0 for no page (default: "
                                                         "ACESTEP_GRADIO_PORT or 7860)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m acestep_worker", description="ACE-Step 1.5 music generation")
    sub = parser.add_subparsers(dest="command", required=True)
    _generate_parser(sub)
    _serve_parser(sub)
    sub.add_parser("download", help="download and verify the official checkpoints (download --help)",
                   add_help=False)
    sub.add_parser("client", help="submit to a pod or a Runpod endpoint, poll, download (client --help)",
                   add_help=False)
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["download"]:  # its own parser, shared with `python -m acestep_worker.models.download`
        from ..models.download import main as download_main

        return download_main(argv[1:])
    if argv[:1] == ["client"]:  # its own parser; the client loads no model library
        from .client import main as client_main

        return client_main(argv[1:])
    args = parser.parse_args(argv)
    default_level = "INFO" if args.command == "serve" else "WARNING"
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", default_level).upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return {"generate": run_generate, "serve": run_serve}[args.command](args)
    except AceStepError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
