"""Command-line client: submit, poll and download, against a pod's API or a Runpod endpoint.

    python -m acestep_worker.doors.client --api-url http://<pod>:8000 -c "indie pop" -l "[Verse]..." -d 90 -o song.mp3
    RUNPOD_API_KEY=... python -m acestep_worker.doors.client --endpoint-id <id> -c "lofi" -d 30 -o lofi.mp3

The one-file root generate_music.py (standard library only) is what users download; this client is
for machines with the package installed. The flags of the original image's CLI keep their meaning; requests
are checked against the same schema the servers use before anything is sent.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import time
from pathlib import Path

import httpx
from tqdm import tqdm

from ..errors import InputError
from ..schema.formats import FORMAT_OF_SUFFIX
from ..schema.request import JobRequest, parse
from .alignment_flags import add_alignment_arguments, alignment_fields, report_scores, write_lrc
from .song_flags import add_finishing_arguments, add_retake_arguments, finishing_fields, retake_fields

LYRICS_HELP = """Lyrics: one section tag per block, then its lines.
  [Intro] [Verse] [Verse 1] [Pre-Chorus] [Chorus] [Bridge] [Outro] [Instrumental]
Leave the lyrics empty, or write [inst], for an instrumental. Example:
  [Verse]
  Walking down the street
  [Chorus]
  We are alive tonight"""
CAPTION_HELP = """Caption: describe the music, not the story: genre, mood, instruments, vocals, tempo, production.
  e.g. "upbeat indie pop, jangly guitars, energetic female vocals, 120 bpm, bright mix"
Tempo, key and time signature also have their own flags (--bpm, --key, --time-signature)."""
RUNPOD_API = "https://api.runpod.ai/v2"
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"}
REMOTE_SOURCES = ("https://", "http://", "s3://", "data:")
AUDIO_MIME = {".wav": "audio/wav", ".flac": "audio/flac", ".ogg": "audio/ogg", ".opus": "audio/opus",
              ".mp3": "audio/mpeg"}


class ClientError(Exception):
    pass


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m acestep_worker client",
                                description="Generate music with an ACE-Step 1.5 server.")
    target = p.add_argument_group("where")
    target.add_argument("--api-url", default=os.environ.get("ACESTEP_API_URL", "http://localhost:8000"),
                        help="pod API base URL (default http://localhost:8000)")
    target.add_argument("--endpoint-id", help="use this Runpod serverless endpoint instead (needs RUNPOD_API_KEY)")
    target.add_argument("--runpod-url", help=f"Runpod API base (default {RUNPOD_API}/<endpoint-id>); "
                                             "e.g. a local `handler.py --rp_serve_api`")
    target.add_argument("--api-key", default=os.environ.get("ACESTEP_API_KEY"), help="pod API key, if it has one")
    song = p.add_argument_group("song")
    song.add_argument("--caption", "-c", default="", help="what the music should sound like")
    song.add_argument("--lyrics", "-l", default="", help="lyrics (\\n for new lines); empty for instrumental")
    song.add_argument("--lyrics-file", "-f", type=Path, help="read the lyrics from a file")
    song.add_argument("--duration", "-d", type=float, default=90, help="seconds, 10-600 (default 90)")
    song.add_argument("--batch-size", "-b", type=int, default=1, help="songs, 1-8 (default 1)")
    song.add_argument("--seed", help="integer, or a comma list with one seed per song")
    add_retake_arguments(song)
    song.add_argument("--steps", type=int, help="diffusion steps (default: the model's)")
    song.add_argument("--guidance", type=float, help="guidance scale (base/sft models)")
    song.add_argument("--shift", type=float)
    song.add_argument("--bpm", type=int)
    song.add_argument("--key", help='e.g. "C major"')
    song.add_argument("--time-signature", help="2, 3, 4 or 6")
    song.add_argument("--language", help="vocal language code, e.g. en")
    song.add_argument("--format", help="mp3, flac, wav, wav32, ogg, opus, aac (default: from --output)")
    song.add_argument("--model", help="DiT model name")
    song.add_argument("--thinking", action="store_true", help="let the planner LM write audio codes")
    add_finishing_arguments(song)
    edit = p.add_argument_group("editing (cover, repaint, extend, stems)")
    edit.add_argument("--task-type", help="text2music (default), cover, cover-nofsq, repaint, extract, lego, "
                                          "complete (the last three need a base model)")
    edit.add_argument("--src-audio", metavar="FILE|URL", help="the song to cover, repaint or extend: a local file "
                                                               "(uploaded), or an https:// / s3:// URL the server fetches")
    edit.add_argument("--reference-audio", metavar="FILE|URL", help="audio whose timbre steers the song")
    edit.add_argument("--repainting-start", "--repaint-start", type=float, metavar="S", help="repaint from this second")
    edit.add_argument("--repainting-end", "--repaint-end", type=float, metavar="S",
                      help="repaint up to this second (-1: the end; past the end: extend the song)")
    edit.add_argument("--audio-cover-strength", type=float, metavar="X",
                      help="0-1: how closely a cover follows the source (lower: a freer restyle)")
    edit.add_argument("--stems", "--track-name", dest="track_name", metavar="NAMES",
                      help="the stems for extract/lego, one job: e.g. vocals,drums,bass (extract also takes "
                           "instrumental, or the preset vocals+instrumental); files are named by stem")
    edit.add_argument("--flow-edit", action="store_true", dest="flow_edit_morph",
                      help="flow-edit the source toward --caption/--lyrics (base/sft models; text2music, cover)")
    edit.add_argument("--flow-edit-source-caption", metavar="TEXT", help="flow-edit: what the source song is")
    edit.add_argument("--flow-edit-source-lyrics", metavar="TEXT", help="flow-edit: the source song's lyrics")
    edit.add_argument("--flow-edit-n-min", type=float, metavar="X", help="flow-edit window start, 0-1 (default 0)")
    edit.add_argument("--flow-edit-n-max", type=float, metavar="X", help="flow-edit window end, 0-1 (default 1)")
    edit.add_argument("--flow-edit-n-avg", type=int, metavar="N", help="noise samples averaged per step, 1-8")
    analysis = p.add_argument_group("analysis (no audio is made; the result is printed as JSON)")
    analysis.add_argument("--extract-codes", action="store_true",
                          help="return the 5 Hz audio codes of --src-audio (extract_codes_only)")
    analysis.add_argument("--analyze", action="store_true", help="the planner describes --src-audio: bpm, key, "
                          "time signature, duration, genre, language, caption, lyrics (full_analysis_only)")
    analysis.add_argument("--analyze-metadata", action="store_true",
                          help="only the planner's metadata pass over --caption and --lyrics (analysis_only)")
    add_alignment_arguments(p.add_argument_group("lyric timestamps and scores"))
    run = p.add_argument_group("run")
    run.add_argument("--output", "-o", type=Path, default=Path("output.mp3"), help="output file (default output.mp3)")
    run.add_argument("--poll-interval", type=float, default=5.0, help="seconds between status checks (default 5)")
    run.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds (default 600)")
    run.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    run.add_argument("--show-lyrics-help", action="store_true", help="how to write lyrics, then exit")
    run.add_argument("--show-caption-help", action="store_true", help="how to write a caption, then exit")
    return p


def request_fields(args: argparse.Namespace) -> dict:
    lyrics = args.lyrics_file.read_text() if args.lyrics_file else args.lyrics.replace("\\n", "\n")
    fmt = args.format or FORMAT_OF_SUFFIX.get(suffix := args.output.suffix.lstrip(".").lower(), suffix or "mp3")
    fields = {"caption": args.caption, "lyrics": lyrics, "duration": args.duration, "batch_size": args.batch_size,
              "seed": args.seed, **retake_fields(args), **finishing_fields(args),
              "inference_steps": args.steps, "guidance_scale": args.guidance, "shift": args.shift,
              "bpm": args.bpm, "key_scale": args.key, "time_signature": args.time_signature,
              "vocal_language": args.language, "audio_format": fmt, "model": args.model,
              "thinking": True if args.thinking else None, "task_type": args.task_type,
              "repainting_start": args.repainting_start, "repainting_end": args.repainting_end,
              "audio_cover_strength": args.audio_cover_strength, "track_name": args.track_name,
              "flow_edit_morph": True if args.flow_edit_morph else None,
              **{name: getattr(args, name) for name in ("flow_edit_source_caption", "flow_edit_source_lyrics",
                                                        "flow_edit_n_min", "flow_edit_n_max", "flow_edit_n_avg")},
              **analysis_fields(args), **alignment_fields(args)}
    if analysis_fields(args):  # an analysis reads no song settings; the defaults above would be reported unused
        sent = ANALYSIS_SENT | ({"caption", "lyrics"} if args.analyze_metadata else set()) | set(analysis_fields(args))
        fields = {k: v for k, v in fields.items() if k in sent}
    for name in ("src_audio", "reference_audio"):  # a URL is passed on as it is; files are sent separately
        value = getattr(args, name)
        if value and value.lower().startswith(REMOTE_SOURCES):
            fields[name] = value
    fields = {k: v for k, v in fields.items() if v is not None}
    # The servers' own schema: a bad value fails here, before any upload (files stand in as names).
    parse(dict(fields, **{name: path.name for name, path in audio_files(args).items()}), JobRequest)
    return fields


ANALYSIS_FLAGS = {"extract_codes": "extract_codes_only", "analyze": "full_analysis_only",
                  "analyze_metadata": "analysis_only"}
ANALYSIS_SENT = {"seed", "model", "src_audio"}


def analysis_fields(args: argparse.Namespace) -> dict:
    """The analysis flags asked for, as request fields (none: the job makes songs)."""
    return {field: True for flag, field in ANALYSIS_FLAGS.items() if getattr(args, flag, False)}


def audio_files(args: argparse.Namespace) -> dict[str, Path]:
    """The audio files to send, by request field; a missing file is a ClientError naming its flag."""
    files = {}
    for name in ("src_audio", "reference_audio"):
        value = getattr(args, name)
        if value and not value.lower().startswith(REMOTE_SOURCES):
            if not Path(value).is_file():
                raise ClientError(f"--{name.replace('_', '-')} {value}: no such file")
            files[name] = Path(value)
    return files


def _mime(path: Path) -> str:
    return AUDIO_MIME.get(path.suffix.lower(), "application/octet-stream")


def data_uri(path: Path) -> str:
    """How a Runpod job carries a local file: inline, as upstream-style base64 in a data URI."""
    return f"data:{_mime(path)};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _form_value(value: object) -> str:
    return json.dumps(value) if isinstance(value, bool) else str(value)


def output_paths(output: Path, count: int, stems: list | None = None) -> list[Path]:
    """The original CLI's naming: the file itself for one song, stem_1, stem_2, ... for several; a
    several-stem job's files by track name instead (output_vocals.mp3, or output_vocals_1.mp3, ... per take)."""
    stems = stems or [None] * count
    if any(stems):
        takes = {stem: stems.count(stem) for stem in stems}
        seen: dict = {}
        paths = []
        for stem in stems:
            seen[stem] = seen.get(stem, 0) + 1
            take = f"_{seen[stem]}" if takes[stem] > 1 else ""
            paths.append(output.with_name(f"{output.stem}_{stem}{take}{output.suffix}"))
        return paths
    if count == 1:
        return [output]
    return [output.with_name(f"{output.stem}_{i + 1}{output.suffix}") for i in range(count)]


class Progress:
    def __init__(self, quiet: bool):
        self.bar = None if quiet else tqdm(total=100, unit="%", bar_format="{desc:<22}{bar}| {n:.0f}%",
                                           file=sys.stderr)

    def update(self, fraction: float, text: str) -> None:
        if self.bar is not None:
            self.bar.set_description_str(text[:22])
            self.bar.n = round(100 * max(0.0, min(1.0, fraction)))
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _say(args, message: str) -> None:
    if not args.quiet:
        print(message, file=sys.stderr)


def _say_sources(args, result: dict) -> None:
    """Which task ran and what the server received, so a user can tell the right file arrived."""
    for key in ("source", "reference"):
        info = result.get(key)
        if isinstance(info, dict):
            _say(args, f"{result.get('task_type', 'task')}: {info.get('field')} received, "
                       f"{info.get('duration_s')} s, sha256 {str(info.get('sha256'))[:16]}...")


# -- pod API --------------------------------------------------------------------------------------

def run_api(args: argparse.Namespace, fields: dict, http: httpx.Client) -> list[Path] | dict:
    base = args.api_url.rstrip("/")
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    try:
        health = http.get(f"{base}/health", timeout=60)
        if health.json().get("data", {}).get("status") != "ok":
            raise ClientError(f"the API at {base} is not healthy: {health.text[:200]}")
    except (httpx.HTTPError, ValueError) as exc:
        raise ClientError(f"the API at {base} is not responding ({exc})") from None
    files = audio_files(args)
    if files:  # multipart, as upstream's API takes uploads: form fields plus one part per file
        parts = {name: (path.name, path.read_bytes(), _mime(path)) for name, path in files.items()}
        response = http.post(f"{base}/release_task", data={k: _form_value(v) for k, v in fields.items()},
                             files=parts, headers=headers, timeout=300)
    else:
        response = http.post(f"{base}/release_task", json=fields, headers=headers, timeout=60)
    submitted = _checked(response)
    task_id = submitted["data"]["task_id"]
    _say(args, f"task {task_id} queued (position {submitted['data'].get('queue_position')})")
    progress, deadline = Progress(args.quiet), time.monotonic() + args.timeout
    try:
        while True:
            entry = _checked(http.post(f"{base}/query_result", json={"task_id_list": [task_id]}, headers=headers,
                                       timeout=60))["data"][0]
            if entry["status"] == 1:
                break
            if entry["status"] == 2:
                raise ClientError(f"generation failed: {entry.get('error') or 'no reason given'}")
            progress.update(entry.get("progress", 0.0), entry.get("stage", "waiting"))
            if time.monotonic() > deadline:
                raise ClientError(f"gave up after {args.timeout:g} s (--timeout); task {task_id} is still running")
            time.sleep(args.poll_interval)
    finally:
        progress.close()
    if analysis_fields(args):
        return json.loads(entry["result"])[0]
    items = [item for item in json.loads(entry["result"]) if item.get("file")]
    if items and "BPM:" in items[0].get("generation_info", "") and not args.quiet:
        for line in items[0]["generation_info"].splitlines():
            if any(key in line for key in ("BPM:", "Key Scale:", "Total Time:")):
                print(line.replace("**", "").replace("- ", "").strip(), file=sys.stderr)
    if items:
        _say_sources(args, items[0])
    paths = output_paths(args.output, len(items), [item.get("track_name") for item in items])
    for item, path in zip(items, paths):
        response = http.get(base + item["file"], headers=headers, timeout=120)
        if response.status_code != 200:
            raise ClientError(f"download of {item['file']} failed with HTTP {response.status_code}")
        path.write_bytes(response.content)
        write_lrc(path, item.get("metas", {}).get("lrc"))
    report_scores(list(zip(paths, items)), items[0].get("takes") if items else None, args.quiet)
    return paths


def _checked(response: httpx.Response) -> dict:
    if response.status_code == 429:
        raise ClientError(f"the server is busy (queue full); retry after {response.headers.get('Retry-After', '?')} s")
    try:
        body = response.json()
    except ValueError:
        raise ClientError(f"API error {response.status_code}: {response.text[:300]}") from None
    if response.status_code >= 400:
        raise ClientError(f"API error {response.status_code}: {body.get('detail', body)}")
    if body.get("code", 200) != 200:
        raise ClientError(f"API error: {body.get('error')}")
    return body


# -- Runpod endpoint ------------------------------------------------------------------------------

def run_runpod(args: argparse.Namespace, fields: dict, http: httpx.Client) -> list[Path] | dict:
    key = os.environ.get("RUNPOD_API_KEY", "")
    base = (args.runpod_url or f"{RUNPOD_API}/{args.endpoint_id}").rstrip("/")
    if not key and not args.runpod_url:
        raise ClientError("set RUNPOD_API_KEY to call a Runpod endpoint")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    job_input = dict(fields, return_audio_base64=True, timeout_seconds=args.timeout,
                     **{name: data_uri(path) for name, path in audio_files(args).items()})
    try:
        job = http.post(f"{base}/run", json={"input": job_input}, headers=headers, timeout=60)
    except httpx.HTTPError as exc:
        raise ClientError(f"the endpoint at {base} is not responding ({exc})") from None
    if job.status_code >= 400:
        raise ClientError(f"Runpod refused the job: HTTP {job.status_code} {job.text[:300]}")
    job_id = job.json()["id"]
    _say(args, f"job {job_id} submitted")
    progress, deadline = Progress(args.quiet), time.monotonic() + args.timeout
    try:
        while True:
            status = _runpod_status(http, f"{base}/status/{job_id}", headers)
            if status.get("status") in TERMINAL:
                break
            output = status.get("output")
            if isinstance(output, dict) and "percent" in output:
                progress.update(output["percent"] / 100, output.get("stage", "running"))
            if time.monotonic() > deadline:
                raise ClientError(f"gave up after {args.timeout:g} s (--timeout); job {job_id} is still running")
            time.sleep(args.poll_interval)
    finally:
        progress.close()
    if status["status"] != "COMPLETED":
        raise ClientError(f"job {status['status'].lower()}: {status.get('error') or 'no reason given'}")
    if analysis_fields(args):
        return status["output"]
    results = status["output"]["results"]
    _say_sources(args, status["output"])
    paths = output_paths(args.output, len(results), [result.get("track_name") for result in results])
    for result, path in zip(results, paths):
        if result.get("audio_base64"):
            path.write_bytes(base64.b64decode(result["audio_base64"]))
        elif result.get("url"):
            path.write_bytes(http.get(result["url"], timeout=120).raise_for_status().content)
        else:
            raise ClientError(f"song {path.name} came back without audio ({result.get('base64_omitted', 'no url')})")
        write_lrc(path, result.get("lrc"))
    report_scores(list(zip(paths, results)), status["output"].get("params", {}).get("takes"), args.quiet)
    return paths


def _runpod_status(http: httpx.Client, url: str, headers: dict) -> dict:
    response = http.get(url, headers=headers, timeout=60)
    if response.status_code == 405:  # the SDK's local test server only answers POST
        response = http.post(url, headers=headers, timeout=300)
    if response.status_code >= 400:
        raise ClientError(f"status check failed: HTTP {response.status_code} {response.text[:300]}")
    return response.json()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.show_lyrics_help or args.show_caption_help:
        print(LYRICS_HELP if args.show_lyrics_help else CAPTION_HELP)
        return 0
    try:
        fields = request_fields(args)
        with httpx.Client(headers={"User-Agent": "ACE-Step-CLI/1.0"}) as http:
            paths = (run_runpod if args.endpoint_id or args.runpod_url else run_api)(args, fields, http)
    except (InputError, ClientError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if isinstance(paths, dict):  # an analysis: its result, as the server gave it
        print(json.dumps(paths, indent=2, ensure_ascii=False))
        return 0
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
