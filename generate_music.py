#!/usr/bin/env python3
"""Generate music with an ACE-Step 1.5 pod API or a Runpod serverless endpoint.

One file, Python 3.9 or newer, standard library only: download it and run it.

    python generate_music.py --api-url https://<POD_ID>-8000.proxy.runpod.net \\
        --caption "upbeat indie pop, jangly guitars" --lyrics-file lyrics.txt --duration 90 --output song.mp3
    RUNPOD_API_KEY=... python generate_music.py --endpoint-id <ID> -c "lofi hip hop" -d 30 -b 2 -o lofi.mp3

It submits the request, shows a progress line, downloads the songs (several: song_1.mp3, song_2.mp3,
...) and prints their paths on stdout. Busy servers (429, honouring Retry-After), server errors (5xx)
and dropped connections are retried with backoff. Ctrl-C or --timeout cancels the job (Runpod
`/cancel/<id>`) or the pod task (`/cancel_task`) before exiting. The server checks every value and
answers one sentence naming the field; this client prints it. Exit status: 0 done, 1 failed, 130
interrupted.
"""

from __future__ import annotations

import argparse
import base64
import email.utils
import json
import mimetypes
import os
import random
import signal
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

USER_AGENT = "ACE-Step-CLI/2.0 (generate_music.py)"
RUNPOD_API = "https://api.runpod.ai/v2"
RUNPOD_TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"}
RUNPOD_RUN_LIMIT = 10 * 1000 * 1000  # bytes: Runpod refuses larger /run payloads
RETRY_STATUS = {429, 500, 502, 503, 504}
LYRICS_HELP = """Lyrics: one section tag per block, then its lines.
  [Intro] [Verse] [Verse 1] [Pre-Chorus] [Chorus] [Bridge] [Outro] [Instrumental]
Leave the lyrics empty, or write [inst], for an instrumental. Example:
  [Verse]
  Walking down the street
  [Chorus]
  We are alive tonight"""
CAPTION_HELP = """Caption: describe the music, not the story: genre, mood, instruments, vocals, tempo, production.
  e.g. "upbeat indie pop, jangly guitars, energetic female vocals, 120 bpm, bright mix"
Tempo, key and time signature also have their own flags (--bpm, --key, --time-signature).
No caption? --sample-query "a sad song about rain" lets the server's planner write one, with lyrics."""


class ClientError(Exception):
    """A failure worth one sentence to the user."""


class Cancelled(Exception):
    """Ctrl-C while a job runs."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="generate_music.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    where = p.add_argument_group("where")
    where.add_argument("--api-url", default=os.environ.get("ACESTEP_API_URL", "http://localhost:8000"),
                       help="pod API base URL (default http://localhost:8000)")
    where.add_argument("--api-key", default=os.environ.get("ACESTEP_API_KEY"),
                       help="the pod's API key, if it has one (default: ACESTEP_API_KEY)")
    where.add_argument("--endpoint-id", help="use this Runpod serverless endpoint (needs RUNPOD_API_KEY)")
    where.add_argument("--runpod-url", help=f"Runpod API base (default {RUNPOD_API}/<endpoint-id>), "
                                            "e.g. a local `python handler.py --rp_serve_api`")
    song = p.add_argument_group("song")
    song.add_argument("--caption", "-c", default="", help="what the music should sound like")
    song.add_argument("--lyrics", "-l", default="", help="lyrics (\\n for new lines); empty for instrumental")
    song.add_argument("--lyrics-file", "-f", type=Path, help="read the lyrics from a file")
    song.add_argument("--duration", "-d", type=float, default=90, help="seconds, 10-600 (default 90)")
    song.add_argument("--batch-size", "-b", type=int, default=1, help="songs, 1-8 (default 1)")
    song.add_argument("--seed", help="integer, or a comma list with one seed per song")
    song.add_argument("--retake-seed", help="a second seed whose noise is blended in (needs --retake-variance; "
                      "a comma list: one per song)")
    song.add_argument("--retake-variance", type=float, help="0-1: how much of the retake seed's noise "
                      "(0: the song itself, 1: the retake seed's song)")
    song.add_argument("--steps", type=int, help="diffusion steps (default: the model's)")
    song.add_argument("--guidance", type=float, help="guidance scale (base/sft models)")
    song.add_argument("--shift", type=float, help="timestep shift (default 3)")
    song.add_argument("--bpm", type=int)
    song.add_argument("--key", help='e.g. "C major"')
    song.add_argument("--time-signature", help="2, 3, 4 or 6")
    song.add_argument("--language", help="vocal language code, e.g. en")
    song.add_argument("--format", help="mp3, flac, wav, wav32, ogg, opus (default: from --output)")
    song.add_argument("--model", help="DiT model name, e.g. acestep-v15-turbo")
    planner = p.add_argument_group("planner (needs a server with the 5 Hz LM)")
    planner.add_argument("--thinking", action="store_true", help="let the planner write audio codes")
    planner.add_argument("--sample-query", help="describe the song; the planner writes caption, lyrics, metadata")
    planner.add_argument("--format-input", action="store_true", help="let the planner tidy caption and lyrics first")
    edit = p.add_argument_group("editing (audio in)")
    edit.add_argument("--src-audio", help="source audio FILE (or URL) to repaint or cover")
    edit.add_argument("--reference-audio", help="reference audio FILE (or URL) for the timbre/style")
    edit.add_argument("--task-type", help="text2music, repaint, cover, ... (default text2music)")
    edit.add_argument("--repaint-start", type=float, help="repaint from this second of the source")
    edit.add_argument("--repaint-end", type=float, help="repaint up to this second (-1: to the end)")
    edit.add_argument("--stems", "--track-name", dest="track_name", metavar="NAMES",
                      help="extract/lego (base model): the stems, one job, e.g. vocals,drums,bass (extract also "
                           "takes instrumental, or the preset vocals+instrumental); files are named by stem")
    timing = p.add_argument_group("lyric timestamps and scores")
    timing.add_argument("--lrc", action="store_true", help="also get the lyrics with timestamps, written as <song>.lrc")
    timing.add_argument("--score", action="store_true", help="print each song's lyric-alignment scores")
    timing.add_argument("--keep-best", type=int, help="best-of-N (this server's own): keep the best K of --batch-size")
    timing.add_argument("--rank-by", choices=["dit_score", "lm_score", "quality_score"],
                        help="the score --keep-best ranks by")
    analysis = p.add_argument_group("analysis (no audio is made; the result is printed as JSON)")
    analysis.add_argument("--extract-codes", action="store_true", help="the 5 Hz audio codes of --src-audio")
    analysis.add_argument("--analyze", action="store_true", help="the planner describes --src-audio: bpm, key, "
                          "time signature, duration, genre, language, caption, lyrics")
    analysis.add_argument("--analyze-metadata", action="store_true",
                          help="only the planner's metadata pass over --caption and --lyrics")
    run = p.add_argument_group("run")
    run.add_argument("--output", "-o", type=Path, default=Path("output.mp3"), help="output file (default output.mp3)")
    run.add_argument("--poll-interval", type=float, default=5.0, help="seconds between status checks (default 5)")
    run.add_argument("--timeout", type=float, default=600.0,
                     help="cancel the job and give up after this many seconds (default 600)")
    run.add_argument("--retries", type=int, default=5, help="attempts per request on 429/5xx/drops (default 5)")
    run.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    run.add_argument("--show-lyrics-help", action="store_true", help="how to write lyrics, then exit")
    run.add_argument("--show-caption-help", action="store_true", help="how to write a caption, then exit")
    return p


def request_fields(args: argparse.Namespace) -> dict:
    """The generation fields, with the servers' names; flags not given are left to the server."""
    try:
        lyrics = args.lyrics_file.read_text(encoding="utf-8") if args.lyrics_file else args.lyrics.replace("\\n", "\n")
    except OSError as exc:
        raise ClientError(f"--lyrics-file: cannot read {args.lyrics_file} ({exc.strerror})") from None
    fields = {"caption": args.caption, "lyrics": lyrics, "duration": args.duration, "batch_size": args.batch_size,
              "seed": args.seed, "retake_seed": args.retake_seed, "retake_variance": args.retake_variance,
              "inference_steps": args.steps, "guidance_scale": args.guidance, "shift": args.shift,
              "bpm": args.bpm, "key_scale": args.key, "time_signature": args.time_signature,
              "vocal_language": args.language, "audio_format": args.format or args.output.suffix.lstrip(".").lower()
              or "mp3", "model": args.model, "thinking": args.thinking or None,
              "sample_query": args.sample_query, "use_format": args.format_input or None,
              "task_type": args.task_type, "repainting_start": args.repaint_start, "repainting_end": args.repaint_end,
              "track_name": args.track_name, "auto_lrc": args.lrc or None, "auto_score": args.score or None,
              "keep_best": args.keep_best, "rank_by": args.rank_by}
    modes = analysis_modes(args)
    if modes:  # an analysis reads the source (or caption and lyrics) and a seed, nothing of a song's settings
        kept = {"seed", "model"} | ({"caption", "lyrics"} if args.analyze_metadata else set())
        fields = dict({k: v for k, v in fields.items() if k in kept}, **modes)
    return {k: v for k, v in fields.items() if v is not None}


def analysis_modes(args: argparse.Namespace) -> dict:
    flags = {"extract_codes": "extract_codes_only", "analyze": "full_analysis_only", "analyze_metadata": "analysis_only"}
    return {field: True for flag, field in flags.items() if getattr(args, flag)}


def song_extras(path: Path, lrc, song: dict, say) -> None:
    """A song's LRC written beside it as <song>.lrc, and its scores said."""
    if lrc:
        path.with_suffix(".lrc").write_text(lrc + "\n", encoding="utf-8")
    scores = {k: song[k] for k in ("lm_score", "dit_score", "quality_score", "take", "rank") if k in song}
    if scores:
        say(f"{path.name}: " + ", ".join(f"{k} {v}" for k, v in scores.items()))


def audio_inputs(args: argparse.Namespace) -> dict:
    """{field: local Path or URL string} for the audio flags given; a missing file fails here."""
    inputs = {}
    for field, value in (("src_audio", args.src_audio), ("reference_audio", args.reference_audio)):
        if not value:
            continue
        if value.startswith(("http://", "https://", "data:")):
            inputs[field] = value
            continue
        path = Path(value).expanduser()
        if not path.is_file():
            raise ClientError(f"--{field.replace('_', '-')}: {value} is not a file")
        inputs[field] = path
    return inputs


def output_paths(output: Path, count: int, stems: list | None = None) -> list:
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


# -- HTTP with retries ----------------------------------------------------------------------------

class Http:
    """urllib with JSON helpers and retries on 429 (Retry-After), 5xx and dropped connections, all
    within one overall deadline."""

    def __init__(self, headers: dict, retries: int, deadline: float, say):
        self.headers = {"User-Agent": USER_AGENT, **headers}
        self.retries = max(1, retries)
        self.deadline = deadline
        self.say = say

    def call(self, method: str, url: str, body: bytes | None = None, content_type: str | None = None,
             timeout: float = 60, retry: bool = True) -> tuple:
        """(status, headers, body bytes) of the final attempt; ClientError when the server never answered."""
        headers = dict(self.headers, **({"Content-Type": content_type} if content_type else {}))
        for attempt in range(1, self.retries + 1):
            last = attempt == self.retries or not retry
            try:
                request = urllib.request.Request(url, data=body, headers=headers, method=method)
                with urllib.request.urlopen(request, timeout=timeout) as response:
                    return response.status, response.headers, response.read()
            except urllib.error.HTTPError as exc:
                payload = exc.read()
                if exc.code not in RETRY_STATUS or last:
                    return exc.code, exc.headers, payload
                wait, why = _retry_after(exc.headers, attempt), f"HTTP {exc.code}"
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
                if last:
                    reason = getattr(exc, "reason", exc)
                    raise ClientError(f"{url.split('?')[0]} is not responding ({reason})") from None
                wait, why = _backoff(attempt), "connection dropped"
            if time.monotonic() + wait > self.deadline:
                raise ClientError(f"{url.split('?')[0]} kept failing ({why}) until the --timeout")
            self.say(f"{why}; retrying in {wait:.0f} s (attempt {attempt + 1} of {self.retries})")
            time.sleep(wait)
        raise AssertionError("unreachable")

    def json(self, method: str, url: str, payload=None, what: str = "request", **kwargs) -> dict:
        body = None if payload is None else json.dumps(payload).encode()
        status, _, raw = self.call(method, url, body, "application/json" if body is not None else None, **kwargs)
        return _json_answer(status, raw, what)


def _backoff(attempt: int) -> float:
    return min(30.0, 2.0 ** (attempt - 1)) * random.uniform(0.8, 1.2)


def _retry_after(headers, attempt: int) -> float:
    value = (headers or {}).get("Retry-After")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            if when is not None:
                return max(0.0, when.timestamp() - time.time())
    return _backoff(attempt)


def _json_answer(status: int, raw: bytes, what: str) -> dict:
    try:
        body = json.loads(raw.decode("utf-8") or "null")
    except (UnicodeDecodeError, ValueError):
        body = None
    if status >= 400 or not isinstance(body, dict):
        detail = body.get("detail") or body.get("error") if isinstance(body, dict) else None
        text = detail if isinstance(detail, str) else raw.decode("utf-8", "replace")[:300].strip()
        raise ClientError(f"{what} failed: HTTP {status}: {text}" if status >= 400 else f"{what}: unexpected answer {text}")
    return body


def multipart(fields: dict, files: dict) -> tuple:
    """(body, content type) of a multipart/form-data request: text fields, then file parts."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        text = json.dumps(value) if isinstance(value, (bool, list, dict)) else str(value)
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{text}\r\n'.encode())
    for name, path in files.items():
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        head = (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{path.name}"\r\n'
                f"Content-Type: {kind}\r\n\r\n")
        parts.append(head.encode() + path.read_bytes() + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


# -- progress -------------------------------------------------------------------------------------

class Progress:
    """One line on stderr, redrawn in place on a terminal, printed per stage change otherwise."""

    def __init__(self, quiet: bool):
        self.quiet, self.tty = quiet, sys.stderr.isatty()
        self.started, self.last_line, self.last_stage = time.monotonic(), "", None

    def update(self, fraction: float, stage: str, detail: str = "") -> None:
        if self.quiet:
            return
        fraction = max(0.0, min(1.0, fraction))
        elapsed = time.monotonic() - self.started
        eta = f" ETA {_clock(elapsed * (1 - fraction) / fraction)}" if 0.02 < fraction < 1 else ""
        bar = "#" * round(20 * fraction) + "." * (20 - round(20 * fraction))
        line = f"[{bar}] {100 * fraction:3.0f}% {stage}{' ' + detail if detail else ''}  {_clock(elapsed)}{eta}"
        if self.tty:
            sys.stderr.write("\r" + line[:110].ljust(len(self.last_line)))
            sys.stderr.flush()
        elif stage != self.last_stage:
            print(line, file=sys.stderr)
        self.last_line, self.last_stage = line, stage

    def close(self) -> None:
        if self.tty and self.last_line and not self.quiet:
            sys.stderr.write("\n")


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}:{seconds % 60:02d}"


# -- pod API --------------------------------------------------------------------------------------

def run_pod(args: argparse.Namespace, fields: dict, http: Http, say) -> list:
    base = args.api_url.rstrip("/")
    health = http.json("GET", f"{base}/health", what=f"the API at {base}")
    if (health.get("data") or {}).get("status") != "ok":
        raise ClientError(f"the API at {base} is not healthy: {json.dumps(health)[:200]}")
    inputs = audio_inputs(args)
    files = {k: v for k, v in inputs.items() if isinstance(v, Path)}
    fields = dict(fields, **{k: v for k, v in inputs.items() if not isinstance(v, Path)})
    if files:
        body, kind = multipart(fields, files)
        status, _, raw = http.call("POST", f"{base}/release_task", body, kind)
        submitted = _envelope(_json_answer(status, raw, "submitting the task"), "submitting the task")
    else:
        submitted = _envelope(http.json("POST", f"{base}/release_task", fields, what="submitting the task"),
                              "submitting the task")
    task_id = submitted["task_id"]
    say(f"task {task_id} queued (position {submitted.get('queue_position', '?')})")
    progress = Progress(args.quiet)
    try:
        while True:
            entry = _envelope(http.json("POST", f"{base}/query_result", {"task_id_list": [task_id]},
                                        what="checking the task"), "checking the task")[0]
            if entry.get("status") == 1:
                break
            if entry.get("status") == 2:
                raise ClientError(f"generation failed: {entry.get('error') or 'no reason given'}")
            position = entry.get("queue_position")
            stage = f"queued, position {position}" if position and entry.get("stage") in (None, "queued") \
                else entry.get("stage") or "running"
            progress.update(float(entry.get("progress") or 0.0), stage)
            _wait(args, http)
    except (Cancelled, TimeoutError) as stop:
        progress.close()
        answer = _cancel_pod(http, base, task_id)
        raise _stopped(stop, args, f"task {task_id}", answer) from None
    progress.close()
    if analysis_modes(args):
        return json.loads(entry["result"])[0]
    items = [item for item in json.loads(entry["result"]) if item.get("file")]
    info = items[0].get("generation_info", "") if items else ""
    for line in info.splitlines():
        if any(key in line for key in ("BPM:", "Key Scale:", "Total Time:")):
            say(line.replace("**", "").replace("- ", "").strip())
    paths = output_paths(args.output, len(items), [item.get("track_name") for item in items])
    for item, path in zip(items, paths):
        status, _, audio = http.call("GET", base + item["file"], timeout=300)
        if status != 200:
            raise ClientError(f"download of {item['file']} failed with HTTP {status}")
        path.write_bytes(audio)
        song_extras(path, (item.get("metas") or {}).get("lrc"), item, say)
    return paths


def _envelope(body: dict, what: str):
    if body.get("code", 200) != 200:
        raise ClientError(f"{what} failed: {body.get('error')}")
    return body.get("data")


def _cancel_pod(http: Http, base: str, task_id: str) -> str:
    try:
        status, _, raw = http.call("POST", f"{base}/cancel_task", json.dumps({"task_id": task_id}).encode(),
                                   "application/json", timeout=30, retry=False)
    except ClientError:
        return "the cancel request got no answer; the task may still run"
    if status in (404, 405) and b"not found" not in raw:
        return "this pod has no cancel route (/cancel_task); the task keeps running there"
    return "cancelled it" if status < 400 else f"cancelling it failed (HTTP {status})"


# -- Runpod endpoint ------------------------------------------------------------------------------

def run_runpod(args: argparse.Namespace, fields: dict, http: Http, say) -> list:
    base = (args.runpod_url or f"{RUNPOD_API}/{args.endpoint_id}").rstrip("/")
    job_input = dict(fields, return_audio_base64=True, timeout_seconds=max(1, round(args.timeout)))
    for field, value in audio_inputs(args).items():
        job_input[field] = _data_uri(value) if isinstance(value, Path) else value
    body = json.dumps({"input": job_input}).encode()
    if len(body) > RUNPOD_RUN_LIMIT:
        raise ClientError(f"the request is {len(body) / 1e6:.1f} MB, over Runpod's 10 MB /run limit: pass the "
                          "audio as a URL (--src-audio https://...) or send a shorter clip")
    status, _, raw = http.call("POST", f"{base}/run", body, "application/json")
    job_id = _json_answer(status, raw, "submitting the job").get("id")
    if not job_id:
        raise ClientError(f"submitting the job: Runpod answered without a job id: {raw[:200]!r}")
    say(f"job {job_id} submitted")
    progress = Progress(args.quiet)
    try:
        while True:
            answer = _runpod_status(http, f"{base}/status/{job_id}")
            state = answer.get("status")
            if state in RUNPOD_TERMINAL:
                break
            output = answer.get("output")
            if isinstance(output, dict) and "percent" in output:
                step = f"{output['step']}/{output['total_steps']}" if output.get("total_steps") else ""
                progress.update(output["percent"] / 100, output.get("stage", "running"), step)
            else:
                progress.update(0.0, "in queue" if state == "IN_QUEUE" else "starting")
            _wait(args, http)
    except (Cancelled, TimeoutError) as stop:
        progress.close()
        raise _stopped(stop, args, f"job {job_id}", _cancel_runpod(http, base, job_id)) from None
    progress.close()
    if state != "COMPLETED":
        raise ClientError(f"job {state.lower()}: {answer.get('error') or 'no reason given'}")
    if analysis_modes(args):
        return answer["output"]
    results = answer["output"]["results"]
    paths = output_paths(args.output, len(results), [result.get("track_name") for result in results])
    for result, path in zip(results, paths):
        if result.get("audio_base64"):
            path.write_bytes(base64.b64decode(result["audio_base64"]))
        elif result.get("url"):
            status, _, audio = http.call("GET", result["url"], timeout=300)
            if status != 200:
                raise ClientError(f"download of {path.name} from the bucket failed with HTTP {status}")
            path.write_bytes(audio)
        else:
            raise ClientError(f"song {path.name} came back without audio: {result.get('base64_omitted', 'no url')}")
        song_extras(path, result.get("lrc"), result, say)
    return paths


def _data_uri(path: Path) -> str:
    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{kind};base64,{base64.b64encode(path.read_bytes()).decode()}"


def _runpod_status(http: Http, url: str) -> dict:
    status, _, raw = http.call("GET", url)
    if status == 405:  # the SDK's local test server (`handler.py --rp_serve_api`) only answers POST
        status, _, raw = http.call("POST", url, timeout=300)
    return _json_answer(status, raw, "checking the job")


def _cancel_runpod(http: Http, base: str, job_id: str) -> str:
    try:
        status, _, _ = http.call("POST", f"{base}/cancel/{job_id}", b"", "application/json", timeout=30, retry=False)
    except ClientError:
        return "the cancel request got no answer; the job may still run"
    return "cancelled it" if status < 400 else f"cancelling it failed (HTTP {status}); the job may still run"


# -- the run --------------------------------------------------------------------------------------

def _wait(args: argparse.Namespace, http: Http) -> None:
    if time.monotonic() + args.poll_interval > http.deadline:
        raise TimeoutError
    time.sleep(args.poll_interval)


def _stopped(stop: Exception, args: argparse.Namespace, what: str, cancel: str) -> Exception:
    if isinstance(stop, Cancelled):
        return Cancelled(f"interrupted; {what}: {cancel}")
    return ClientError(f"gave up after {args.timeout:g} s (--timeout); {what}: {cancel}")


def main(argv: list | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.show_lyrics_help or args.show_caption_help:
        print(LYRICS_HELP if args.show_lyrics_help else CAPTION_HELP)
        return 0

    def say(message: str) -> None:
        if not args.quiet:
            print(message, file=sys.stderr)

    def interrupted(signum, frame):
        raise Cancelled()

    signal.signal(signal.SIGINT, interrupted)
    deadline = time.monotonic() + args.timeout
    try:
        fields = request_fields(args)
        if args.endpoint_id or args.runpod_url:
            key = os.environ.get("RUNPOD_API_KEY", "")
            if not key and not args.runpod_url:
                raise ClientError("set RUNPOD_API_KEY to call a Runpod endpoint (--endpoint-id)")
            http = Http({"Authorization": f"Bearer {key}"} if key else {}, args.retries, deadline, say)
            paths = run_runpod(args, fields, http, say)
        else:
            http = Http({"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}, args.retries,
                        deadline, say)
            paths = run_pod(args, fields, http, say)
    except ClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Cancelled as exc:
        print(f"\n{exc.args[0] if exc.args else 'interrupted'}", file=sys.stderr)
        return 130
    if isinstance(paths, dict):  # an analysis: its result, as the server gave it
        print(json.dumps(paths, indent=2, ensure_ascii=False))
        return 0
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
