"""What bench/gpu.py's figures decide and how they are shown: the defaults each switch's figures
argue for (`recommend`, the rule written in bench/README.md) and the GPU table of bench/README.md.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
README = REPO / "bench" / "README.md"
TABLE_START, TABLE_END = "<!-- gpu-table:start -->", "<!-- gpu-table:end -->"
MARGIN = 0.05  # a switch must beat the plain path by more than this to become the default
# ACESTEP_LM_COMPILE values measured on a GPU, and the suffix of their figures' names.
PLANNER_MODES = {"off": "", "on": "_compiled", "graphs": "_graphs"}


def recommend(figures: dict) -> dict:
    """The defaults the figures argue for on this GPU, with the rule that chose each.

    A faster switch wins only by more than `MARGIN` (noise, and the plain path is the safer
    default): sliding path and SDPA backend by the summed 30 s + 240 s loop times, DiT compile by
    the 240 s loop, planner compile by codes/s with and without guidance."""
    plain_loops = (re.fullmatch(r"turbo_loop_(\d+)s_dense_attention_s", key) for key in figures)
    durations = sorted(int(match[1]) for match in plain_loops if match)

    def total(name: str) -> float | None:
        times = [figures.get(f"turbo_loop_{d}s_{name}_s") for d in durations]
        return sum(times) if durations and None not in times else None

    def fastest(options: list[str], plain: str, name) -> tuple[str, dict]:
        times = {o: t for o in options if (t := total(name(o))) is not None}
        if plain not in times:
            return plain, times
        best = min(times, key=times.get)
        return (best if times[best] < times[plain] * (1 - MARGIN) else plain), times

    out = {}
    sliding, times = fastest(["dense", "banded", "flex"], "dense", lambda o: f"{o}_attention")
    out["ACESTEP_WINDOWED_ATTENTION"] = {"choose": sliding, "summed_loop_s": times}
    from acestep_worker.models.dit.attention import SDPA_BACKENDS

    sdpa, times = fastest(list(SDPA_BACKENDS), "auto", lambda o: f"sdpa_{o}")
    out["ACESTEP_SDPA_BACKEND"] = {"choose": sdpa, "summed_loop_s": times}
    long = max(durations, default=0)
    plain = figures.get(f"turbo_loop_{long}s_{sliding}_attention_s")
    compiled = figures.get(f"turbo_loop_{long}s_compiled_blocks_{sliding}_attention_s")
    if plain and compiled:
        out["ACESTEP_DIT_COMPILE"] = {"choose": int(compiled < plain * (1 - MARGIN)), f"plain_{long}s": plain,
                                      f"compiled_{long}s": compiled}
    # The planner mode whose worse case (with or without guidance) gains most over eager, if it gains
    # more than the margin in both.
    rates = {mode: [figures.get(f"planner_{g}{suffix}_codes_per_s") for g in ("cfg", "no_cfg")]
             for mode, suffix in PLANNER_MODES.items()}
    rates = {mode: pair for mode, pair in rates.items() if all(pair)}
    if "off" in rates and len(rates) > 1:
        gain = {mode: min(r / e for r, e in zip(pair, rates["off"])) for mode, pair in rates.items()}
        best = max(gain, key=gain.get)
        out["ACESTEP_LM_COMPILE"] = {"choose": best if gain[best] > 1 + MARGIN else "off",
                                     "codes_per_s_cfg_no_cfg": rates}
    return out


def readme_table(results: list[dict]) -> str:
    """One row per results file: the figures the goals are stated in."""
    head = ("| device | cold start | DiT step 30 s | turbo loop 240 s | VAE 240 s | total 240 s | job 240 s caption to "
            "MP3 | base 32 steps CFG 30 s | MP3 240 s one pass / segments | planner codes/s cfg / no cfg | peak 240 s x 4 "
            "| largest fit |\n|---|---|---|---|---|---|---|---|---|---|---|---|")
    rows = [head]
    for r in results:
        f = r["figures"]
        t30, t240 = f.get("turbo_30s", {}), f.get("turbo_240s", {})
        fit = f.get("largest_fit", {})
        cfg = max((v for k, v in f.items() if k.startswith("planner_cfg")), default="-")
        nocfg = max((v for k, v in f.items() if k.startswith("planner_no_cfg")), default="-")
        rows.append(f"| {r['device']} ({r['date']}) | {f.get('cold_start_s', '-')} s | {t30.get('dit_step_s', '-')} s | "
                    f"{t240.get('turbo_loop_s', '-')} s | {t240.get('vae_decode_s', '-')} s | {t240.get('total_s', '-')} s | "
                    f"{f.get('job_240s_caption_to_mp3_s', '-')} s | "
                    f"{f.get('base_32steps_cfg_30s', {}).get('loop_s', '-')} s | {f.get('mp3_encode_240s_s', '-')} / {f.get('mp3_encode_240s_segmented_s', '-')} s "
                    f"({f.get('encode_cores', '-')} cores) | "
                    f"{cfg} / {nocfg} | {f.get('peak_memory_240s_x4_gib', '-')} GiB | "
                    f"{fit.get('duration_s', '-')} s x {fit.get('batch', '-')} |")
    return "\n".join(rows)


def update_readme(also: Path | None = None) -> None:
    """The GPU table from every results file in bench/results, and `also` (a results file elsewhere)."""
    paths = sorted(RESULTS.glob("*.json"))
    if also is not None and also.resolve() not in {p.resolve() for p in paths}:
        paths.append(also)
    results = [json.loads(p.read_text()) for p in paths]
    results = [r for r in results if not r.get("smoke")]
    text = README.read_text()
    table = readme_table(results) if results else "No GPU results yet: run `python bench/gpu.py --readme` on one."
    if TABLE_START in text:
        text = re.sub(re.escape(TABLE_START) + ".*?" + re.escape(TABLE_END),
                      lambda _: f"{TABLE_START}\n{table}\n{TABLE_END}", text, flags=re.S)
    else:
        text += f"\n{TABLE_START}\n{table}\n{TABLE_END}\n"
    README.write_text(text)
