"""bench/gpu.py's report: the README table and the recommended defaults, from given figures."""

import sys

from ..support.repo import REPO


def test_readme_table_has_one_row_per_result():
    sys.path.insert(0, str(REPO / "bench"))
    import gpu_report

    result = {"device": "NVIDIA H100", "date": "2026-01-01", "figures": {
        "cold_start_s": 9.1, "turbo_30s": {"dit_step_s": 0.01}, "turbo_240s": {"turbo_loop_s": 0.2, "total_s": 0.5},
        "job_240s_caption_to_mp3_s": 1.75,
        "planner_cfg_codes_per_s": 610.0, "planner_cfg_compiled_codes_per_s": 700.0, "largest_fit": {"duration_s": 600, "batch": 16}}}
    table = gpu_report.readme_table([result]).splitlines()
    assert len(table) == 3 and "NVIDIA H100" in table[2] and "700.0 / -" in table[2] and "600 s x 16" in table[2]
    assert table[0].count("|") == table[2].count("|") and "| 1.75 s |" in table[2]


def test_recommended_defaults_take_a_switch_only_when_it_wins_by_the_margin():
    sys.path.insert(0, str(REPO / "bench"))
    import gpu_report

    loops = {"dense_attention": (0.10, 1.00), "banded_attention": (0.11, 0.90), "flex_attention": (0.08, 0.70),
             "sdpa_auto": (0.10, 1.00), "sdpa_flash": (0.099, 0.99), "sdpa_math": (0.3, 3.0),
             "compiled_blocks_flex_attention": (0.05, 0.60)}
    figures = {f"turbo_loop_{d}s_{name}_s": t for name, pair in loops.items() for d, t in zip((30, 240), pair)}
    figures.update(planner_cfg_codes_per_s=100.0, planner_cfg_compiled_codes_per_s=130.0,
                   planner_no_cfg_codes_per_s=180.0, planner_no_cfg_compiled_codes_per_s=185.0)
    chosen = {name: row["choose"] for name, row in gpu_report.recommend(figures).items()}
    # flex is fastest by far; flash is 1% faster than auto (noise: auto stays); compiling the flex
    # blocks wins; the compiled planner wins with guidance but not without (both must win).
    assert chosen == {"ACESTEP_WINDOWED_ATTENTION": "flex", "ACESTEP_SDPA_BACKEND": "auto",
                      "ACESTEP_DIT_COMPILE": 1, "ACESTEP_LM_COMPILE": "off"}
    # CUDA graphs win both ways; the plain compile wins more with guidance, but graphs' worse case is better.
    figures.update(planner_cfg_graphs_codes_per_s=125.0, planner_no_cfg_graphs_codes_per_s=230.0,
                   planner_no_cfg_compiled_codes_per_s=200.0)
    assert gpu_report.recommend(figures)["ACESTEP_LM_COMPILE"]["choose"] == "graphs"
    assert gpu_report.recommend({}) == {"ACESTEP_WINDOWED_ATTENTION": {"choose": "dense", "summed_loop_s": {}},
                                 "ACESTEP_SDPA_BACKEND": {"choose": "auto", "summed_loop_s": {}}}
