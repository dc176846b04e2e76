#!/usr/bin/env python3
"""The GPU benchmark, one command: everything issue 12 asks to know about a GPU, in about 8 minutes.

    python bench/gpu.py                      # on the GPU machine: real-size random weights, bf16
    python bench/gpu.py --smoke --out /tmp/x.json   # end to end on a CPU at tiny sizes (CI runs this)

It writes real-size random weights to the machine's own disk (bench/.cache/real, ~6.5 GB, once),
then measures: cold start (process start to ready); text encoding; one DiT step and the full
8-step turbo loop at 30, 120 and 240 s; base with 32 steps and CFG at 30 s; VAE decode and MP3
encoding of a 240 s song; one whole serverless job from caption to MP3 file at 240 s; the GPU
path's switches as the DiT loop alone at 30 and 240 s (dense, banded and flex sliding-window
attention, each SDPA backend, compiled blocks); the 1.7B planner's codes/s with and without
guidance at 300 codes, eager and with each ACESTEP_LM_COMPILE mode; peak VRAM for 240 s x 4; the
largest duration x batch that fits; one job of 4 stems against 4 one-stem jobs (base, 30 s source); and
what LRC timestamps and alignment scores add to a job.
`recommended_defaults` says which setting each switch's
figures argue for. Every figure is the median of `--runs` runs after one warm-up.

Results go to bench/results/<gpu name>.json (or --out), rewritten after every phase; `--readme`
rewrites the GPU table in bench/README.md from every results file. A failing phase is recorded as an
error and the others still run; phases run in the order of PHASES (the goals' figures first), and
none starts after --deadline-s, so a run cut short by a time limit still leaves its figures.
`bench/gpu_device.sh` runs it on a GPU machine without network (see bench/README.md, GPU).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))

from gpu_report import PLANNER_MODES, recommend, update_readme  # noqa: E402  (bench/ on the path first)

RESULTS = REPO / "bench" / "results"

# (name, real, smoke): the sizes measured on a GPU, and the stand-ins that keep --smoke quick.
PLAN = {
    "turbo_durations_s": ([30, 120, 240], [10]),
    "base_steps": (32, 2),
    "base_duration_s": (30, 10),
    "long_duration_s": (240, 10),
    "vram_batch": (4, 2),
    "planner_codes": (300, 8),
    "fit_durations_s": ([600, 240], [10]),
    "fit_batches": ([1, 2, 4, 8, 16, 32], [1]),
    "switch_durations_s": ([30, 240], [10]),
    "stems_source_s": (30, 2),  # smoke: a short source, as the tiny VAE encoder is slow on a CPU
}
SWITCH_CONDITION_TOKENS = 385  # a short caption and a verse of lyrics, as bench/dit_forward.py
COMPILED_BLOCKS = threading.Event()  # set once the switches phase has compiled the DiT's blocks


def pick(key: str, smoke: bool):
    return PLAN[key][1 if smoke else 0]


def build_tree(smoke: bool) -> Path:
    """The checkpoint tree: tiny for --smoke, else real-size random weights, turbo and base."""
    from acestep_worker.dev import tiny

    if smoke:
        return tiny.ensure(REPO / "bench" / ".cache" / "tiny")
    import synth

    root = synth.build_real_tree(REPO / "bench" / ".cache" / "real")
    base = root / "acestep-v15-base"
    if not base.is_dir():  # base shares the turbo architecture: same weights, its own config
        base.mkdir()
        for item in (root / "acestep-v15-turbo").iterdir():
            if item.name != "config.json":
                (base / item.name).symlink_to(item)
        (base / "config.json").write_text(json.dumps(tiny.real_dit_config("base")))
    return root


def engine_env(root: Path, device: str) -> dict[str, str]:
    return {"ACESTEP_CONFIG_PATH": str(root / "acestep-v15-turbo"),
            "ACESTEP_CONFIG_PATH2": str(root / "acestep-v15-base"), "ACESTEP_DEVICE": device,
            "ACESTEP_LM_MODEL_PATH": "", "ACESTEP_OUTPUT_DIR": str(REPO / "bench" / ".cache" / "outputs")}


def median_of(runs: int, fn, warm_up: bool = True) -> tuple[float, list[float]]:
    if warm_up:  # allocator, kernel selection, lazy init
        fn()
    times = [fn() for _ in range(runs)]
    return statistics.median(times), times


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn) -> float:
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def cold_start(env: dict[str, str], runs: int, warm_up: bool) -> dict:
    """Process start to an engine ready to generate, in fresh interpreters (page cache warm)."""
    code = ("import time; t0 = time.perf_counter(); from acestep_worker.pipeline.engine import Engine; "
            "from acestep_worker.settings import Settings; Engine(Settings.from_env()); "
            "print(time.perf_counter() - t0)")
    # The caller's PYTHONPATH too: on a GPU machine without network, carried wheels live there.
    full_env = {**os.environ, **env,
                "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))}

    def once() -> float:
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", code], env=full_env, capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "failed")
        return time.perf_counter() - start

    median, times = median_of(runs, once, warm_up)
    return {"cold_start_s": round(median, 2), "cold_start_runs_s": [round(t, 2) for t in times]}


def generation(engine, runs: int, smoke: bool) -> dict:
    from acestep_worker.schema.request import parse

    out = {}
    for duration in pick("turbo_durations_s", smoke):
        request = parse({"caption": "benchmark: driving synthwave, analog bass", "lyrics": "[Verse]\n" + "la " * 40,
                         "duration": duration, "seed": 1})
        rows = []
        median_of(runs, lambda: rows.append(engine.generate(request).timings) or 0.0)
        rows = rows[1:]  # drop the warm-up
        pick_median = lambda key: statistics.median(r[key] for r in rows)  # noqa: E731
        out[f"turbo_{duration}s"] = {
            "text_encoding_s": round(pick_median("text_encoding"), 4),
            "dit_step_s": round(pick_median("diffusion") / 8, 4),
            "turbo_loop_s": round(pick_median("diffusion"), 4),
            "vae_decode_s": round(pick_median("vae_decode"), 4),
            "total_s": round(pick_median("total"), 4),
        }
    duration, steps = pick("base_duration_s", smoke), pick("base_steps", smoke)
    request = parse({"caption": "benchmark", "duration": duration, "seed": 1, "model": "acestep-v15-base",
                     "inference_steps": steps, "guidance_scale": 7.0})
    rows = []
    median_of(runs, lambda: rows.append(engine.generate(request).timings) or 0.0)
    out[f"base_{steps}steps_cfg_{duration}s"] = {
        "loop_s": round(statistics.median(r["diffusion"] for r in rows[1:]), 4),
        "total_s": round(statistics.median(r["total"] for r in rows[1:]), 4)}
    return out


def alignment(engine, runs: int, smoke: bool) -> dict:
    """LRC and alignment scores (auto_lrc, auto_score; issue #19): the `alignment` stage of a turbo job
    at each duration, against its 8-step diffusion loop. One extra DiT call on the finished latents
    that stops after the deepest alignment layer (6 of 24 on the 2B DiT), plus the DTW on the CPU."""
    from acestep_worker.schema.request import parse

    lyrics = "[Verse]\n" + "neon rain on the boulevard\n" * 8 + "\n[Chorus]\n" + "hold on tonight\n" * 6
    out = {}
    for duration in pick("turbo_durations_s", smoke):
        for case, fields in (("lrc", {"auto_lrc": True}), ("lrc_scores", {"auto_lrc": True, "auto_score": True})):
            request = parse({"caption": "benchmark", "lyrics": lyrics, "duration": duration, "seed": 1, **fields})
            rows = []
            median_of(runs, lambda: rows.append(engine.generate(request).timings) or 0.0)
            stage = statistics.median(r["alignment"] for r in rows[1:])
            loop = statistics.median(r["diffusion"] for r in rows[1:])
            out[f"alignment_{case}_{duration}s"] = {"alignment_s": round(stage, 4), "turbo_loop_s": round(loop, 4),
                                                    "share_of_loop": round(stage / loop, 4)}
    return out


def whole_job(engine, env: dict[str, str], runs: int, smoke: bool) -> dict:
    """The goal's own figure: one serverless job (`doors.serverless.run_job`) from caption to the MP3 file
    written, a 240 s turbo song, with the job's stage timings of the median run."""
    from acestep_worker.doors.serverless import run_job

    duration = pick("long_duration_s", smoke)
    job = {"caption": "benchmark: driving synthwave, analog bass", "lyrics": "[Verse]\n" + "la " * 40,
           "duration": duration, "seed": 1, "audio_format": "mp3"}
    outputs = []

    def once() -> float:
        start = time.perf_counter()
        outputs.append(run_job(engine, f"bench-{len(outputs)}", job, env=env))
        return time.perf_counter() - start

    median, times = median_of(runs, once)
    closest = min(range(len(times)), key=lambda i: abs(times[i] - median))
    stages = outputs[1:][closest]["timings"]  # outputs[0] is the warm-up's
    return {f"job_{duration}s_caption_to_mp3_s": round(median, 3), f"job_{duration}s_stages_s": stages}


def encoding(engine, runs: int, smoke: bool) -> dict:
    from acestep_worker.audio.encode import encode, encode_all, usable_cores
    from acestep_worker.schema.request import parse

    duration = pick("long_duration_s", smoke)
    song = engine.generate(parse({"caption": "benchmark", "duration": duration, "seed": 1})).songs[0]
    # One pass is LAME on one core (~17 s for 240 s): one run, nothing to warm up; its time is steady.
    mp3 = timed(lambda: encode(song.audio, song.sample_rate, "mp3"))
    # What a job does with one song: segments on every usable core (mp3_segments.py).
    segmented, _ = median_of(runs, lambda: timed(lambda: encode_all([(song.audio, song.sample_rate)], "mp3")))
    batch = [(song.audio, song.sample_rate)] * 4
    pooled, _ = median_of(1, lambda: timed(lambda: encode_all(batch, "mp3")))
    return {f"mp3_encode_{duration}s_s": round(mp3, 3), f"mp3_encode_{duration}s_segmented_s": round(segmented, 3),
            "encode_cores": usable_cores(), f"mp3_encode_4x{duration}s_thread_pool_s": round(pooled, 3)}


def planner_speed(device, runs: int, smoke: bool, deadline: float, save=lambda figures: None) -> dict:
    """Codes/s with and without guidance for each ACESTEP_LM_COMPILE mode (eager only on a CPU), the
    guided figure of each mode first: each (mode, guidance) pair compiles its own step (the batch
    differs), which can take a minute, so no new pair starts after `deadline`. `save` gets the
    figures so far after each one (the results file, in case the run is stopped mid-phase)."""
    import planner as planner_bench
    import torch

    from acestep_worker.models.planner.decoding import SamplingParams
    from acestep_worker.models.planner.metadata import Metadata
    from acestep_worker.models.planner.planner import SongText

    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    codes = pick("planner_codes", smoke)
    meta = Metadata(bpm=120, caption="driving synthwave", duration=60, keyscale="A minor", language="en",
                    timesignature="4")
    out = {}
    for mode in (("off", "graphs", "on") if device.type == "cuda" else ("off",)):
        planner = planner_bench.planner_for("tiny" if smoke else "real", device, dtype, mode)
        for label, cfg in (("cfg", 2.0), ("no_cfg", 1.0)):
            key = f"planner_{label}{PLANNER_MODES[mode]}_codes_per_s"
            if time.monotonic() > deadline:
                out.setdefault("planner_skipped", []).append(key)
                continue
            params = SamplingParams(cfg_scale=cfg)
            seconds, _ = median_of(runs, lambda: timed(lambda: planner.write_codes(
                SongText("driving synthwave", ""), meta, codes / 5, [1], params)))
            out[key] = round(codes / seconds, 1)
            save(out)
        del planner
        gc.collect()  # the compiled step's reference cycle holds the 1.7B model until collected
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return out


def peak_for(engine, duration: float, batch: int) -> float:
    """Peak GiB of one generation: allocated VRAM on a GPU, the process's peak RSS so far on a CPU."""
    import torch

    from acestep_worker.schema.request import parse

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    engine.generate(parse({"caption": "benchmark", "duration": duration, "batch_size": batch, "seed": 1}))
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def memory(engine, smoke: bool) -> dict:
    duration, batch = pick("long_duration_s", smoke), pick("vram_batch", smoke)
    return {f"peak_memory_{duration}s_x{batch}_gib": round(peak_for(engine, duration, batch), 2)}


def largest_fit(engine, smoke: bool, deadline: float) -> dict:
    """The longest duration that fits at all, with the largest batch at it, searched until `deadline`.
    Measured on the DiT as the switches phase left it (`dit_compiled`)."""
    import torch

    out, largest = {"largest_fit_dit_compiled": COMPILED_BLOCKS.is_set()}, None
    for duration in pick("fit_durations_s", smoke):
        for batch in pick("fit_batches", smoke):
            if time.monotonic() > deadline:
                out["largest_fit_note"] = "search stopped at the time budget"
                break
            try:
                peak = peak_for(engine, duration, batch)
            except torch.cuda.OutOfMemoryError:
                break
            except Exception as exc:  # the engine may wrap an out-of-memory error in its own type
                if "out of memory" not in str(exc).lower():
                    raise
                break
            if largest is None or duration * batch > largest[0] * largest[1]:
                largest = (duration, batch, round(peak, 2))
        if largest is not None:
            break  # the longest duration that fits at all is the answer; shorter ones fit more
    if largest:
        out["largest_fit"] = {"duration_s": largest[0], "batch": largest[1], "peak_gib": largest[2]}
    return out


def _loop_inputs(dit, duration_s: float):
    """Random DiT inputs for one song of `duration_s` (cost does not depend on the values)."""
    import torch

    from acestep_worker.models.dit.conditioning import Conditions

    g = torch.Generator().manual_seed(0)
    frames, channels = int(duration_s * 25), dit.silence_latent.shape[-1]
    hidden = dit.transformer.config.encoder_hidden_size or dit.transformer.config.hidden_size
    conditions = Conditions(torch.randn(1, SWITCH_CONDITION_TOKENS, hidden, generator=g).to(dit.device),
                            torch.ones(1, SWITCH_CONDITION_TOKENS, dtype=torch.bool, device=dit.device),
                            torch.randn(1, frames, 2 * channels, generator=g).to(dit.device))
    return conditions, torch.randn(1, frames, channels, generator=g).to(dit.device)


def switches(engine, runs: int, smoke: bool, deadline: float, save=lambda figures: None) -> dict:
    """The GPU path's switches, each timed as the 8-step turbo DiT loop alone (no text encoding, no
    VAE) on the same DiT and inputs at 30 and 240 s: every sliding-window path (dense, banded,
    flex), every SDPA backend of the unmasked layers, then every block compiled with the dense and
    the flex path (irreversible: last). A switch this GPU cannot run is recorded in
    `switch_errors` and the others still run; past `deadline` the rest are skipped and listed."""
    import torch

    from acestep_worker.models.dit.attention import CPU_SDPA_BACKENDS, SDPA_BACKENDS, dit_attention, resolve_attention
    from acestep_worker.models.dit.model import compile_blocks
    from acestep_worker.models.dit.sampler import SamplingPlan, sample
    from acestep_worker.models.dit.schedules import turbo_timesteps

    dit = engine.models.dit(None)
    plan = SamplingPlan(turbo_timesteps(3.0))
    inputs = {d: _loop_inputs(dit, d) for d in pick("switch_durations_s", smoke)}
    backends = list(SDPA_BACKENDS) if dit.device.type == "cuda" else list(CPU_SDPA_BACKENDS)
    out: dict = {}

    def measure(name: str, sliding: str, sdpa: str = "auto") -> None:
        for duration, (conditions, noise) in inputs.items():
            key = f"turbo_loop_{duration}s_{name}_s"
            if time.monotonic() > deadline:
                out.setdefault("switches_skipped", []).append(key)
                continue
            try:
                choice = resolve_attention(sliding, sdpa, dit.device, dit.dtype)
                with torch.no_grad(), dit_attention(choice):
                    seconds, _ = median_of(runs, lambda: timed(lambda: sample(dit, conditions, noise, plan)))
                out[key] = round(seconds, 4)
                save(out)
            except Exception as exc:  # e.g. a backend without a kernel for these shapes on this GPU
                out.setdefault("switch_errors", {})[key] = f"{type(exc).__name__}: {exc}"[:300]

    for sliding in ("dense", "banded", "flex"):
        measure(f"{sliding}_attention", sliding)
    for backend in backends:
        measure(f"sdpa_{backend}", "auto", backend)
    if smoke:  # compiling on a CPU takes minutes; tests/integration/test_gpu_switches.py checks its result
        return out
    if time.monotonic() > deadline:
        out.setdefault("switches_skipped", []).append("compiled_blocks")
    else:
        start = time.monotonic()
        compile_blocks(dit.transformer)
        COMPILED_BLOCKS.set()
        for sliding in ("dense", "flex"):
            measure(f"compiled_blocks_{sliding}_attention", sliding)
        out["compile_and_measure_s"] = round(time.monotonic() - start, 1)
    return out


def stems(engine, env: dict[str, str], runs: int, smoke: bool) -> dict:
    """Issue 20's figure: one serverless job extracting 4 stems (one VAE encode, one DiT batch) against 4
    one-stem jobs, on the base model, wall and CPU time (bench/stems.py measures the same on the CPU)."""
    import stems as stem_bench

    seconds, steps = pick("stems_source_s", smoke), pick("base_steps", smoke)
    figures = stem_bench.jobs(engine, env, seconds, steps, runs, warm_up=not smoke)
    return {f"stems_4_of_{seconds}s_base_{steps}steps": figures}


def bench_device(smoke: bool):
    """The GPU when there is one (--smoke: the CPU, always)."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() and not smoke else "cpu")


def device_name(device) -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu-{os.cpu_count()}-cores"


# The phases in the order they run: the figures the goals are stated in first, so that a run cut short
# by a time limit still has them (the results file is rewritten after every phase, and after every
# figure of the long ones). Compiling is irreversible within the process, so the phases that compile
# come last: planner compiles its decode step (its own code, its own memory pools), switches compiles
# the DiT's blocks, and largest_fit, the least needed, is measured as they left the process (it says
# whether the DiT's blocks were compiled).
PHASES = ("generation", "encoding", "job", "memory", "stems", "cold_start", "planner", "switches", "largest_fit",
          "alignment")
# Phases that measure until a budget runs out: none starts a new measurement after this many seconds
# of its own (or after --deadline-s, whichever is first).
PHASE_BUDGET_S = {"planner": 150.0, "switches": 150.0, "largest_fit": 45.0}


def run(args: argparse.Namespace, out: Path) -> dict:
    import torch

    from acestep_worker.pipeline.engine import Engine
    from acestep_worker.settings import Settings

    started = time.monotonic()
    deadline = started + args.deadline_s
    wanted = PHASES if args.phases == "all" else tuple(args.phases.split(","))
    if unknown := set(wanted) - set(PHASES):
        raise SystemExit(f"--phases: unknown {sorted(unknown)}; choose from {', '.join(PHASES)} or all")
    device = bench_device(args.smoke)
    runs = args.runs or (1 if args.smoke else 3)
    result = {"device": device_name(device), "smoke": args.smoke, "runs_per_figure": runs,
              "torch": torch.__version__, "python": platform.python_version(),
              "date": time.strftime("%Y-%m-%d"), "figures": {}, "errors": {}, "skipped": []}
    root = build_tree(args.smoke)
    env = engine_env(root, device.type)
    result["tree_build_s"] = round(time.monotonic() - started, 1)
    os.environ.update(env)
    engine = Engine(Settings.from_env())
    result["engine_load_s"] = round(time.monotonic() - started - result["tree_build_s"], 1)
    def save(figures: dict) -> None:
        result["figures"].update(figures)
        write_json(out, result)

    steps = {
        "generation": lambda until: generation(engine, runs, args.smoke),
        "encoding": lambda until: encoding(engine, runs, args.smoke),
        "job": lambda until: whole_job(engine, env, runs, args.smoke),
        "memory": lambda until: memory(engine, args.smoke),
        "stems": lambda until: stems(engine, env, runs, args.smoke),
        # The tree was just built and loaded in this process: the page cache is warm already.
        "cold_start": lambda until: cold_start(env, runs, warm_up=False),
        "switches": lambda until: switches(engine, runs, args.smoke, until, save),
        "largest_fit": lambda until: largest_fit(engine, args.smoke, until),
        "planner": lambda until: planner_speed(device, runs, args.smoke, until, save),
        "alignment": lambda until: alignment(engine, runs, args.smoke),
    }
    for name in (phase for phase in PHASES if phase in wanted):
        if time.monotonic() > deadline:
            result["skipped"].append(name)
            continue
        start = time.monotonic()
        until = min(deadline, start + PHASE_BUDGET_S.get(name, float("inf")))
        try:
            result["figures"].update(steps[name](until))
        except Exception as exc:  # record and go on: one broken phase must not hide the others
            result["errors"][name] = f"{type(exc).__name__}: {exc}"[:500]
        result.setdefault("phase_s", {})[name] = round(time.monotonic() - start, 1)
        if device.type == "cuda":
            torch.cuda.empty_cache()
        print(f"# {name}: {result['phase_s'][name]} s", file=sys.stderr, flush=True)
        finish(result, started)
        write_json(out, result)
    return finish(result, started)


def finish(result: dict, started: float) -> dict:
    result["recommended_defaults"] = recommend(result["figures"])
    result["wall_s"] = round(time.monotonic() - started, 1)
    return result


def write_json(path: Path, data: dict) -> None:
    """Whole or not at all: a run killed mid-write leaves the previous phase's file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data, indent=2) + "\n")
    partial.replace(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU, end to end")
    parser.add_argument("--runs", type=int, default=0, help="timed runs per figure (default 3; 1 with --smoke)")
    parser.add_argument("--out", type=Path, help="results file (default bench/results/<device>.json)")
    parser.add_argument("--deadline-s", type=float, default=450.0,
                        help="start no phase, switch or fit after this many seconds from the start")
    parser.add_argument("--phases", default="all", help=f"comma-separated, from: {', '.join(PHASES)} (default all)")
    parser.add_argument("--readme", action="store_true", help="rewrite bench/README.md's GPU table afterwards")
    args = parser.parse_args()
    name = device_name(bench_device(args.smoke))
    out = args.out or RESULTS / (re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") + ".json")
    result = run(args, out)
    write_json(out, result)
    print(json.dumps(result, indent=2))
    if args.readme:
        update_readme(also=out)
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
