"""Parity with upstream ACE-Step: every golden variant in tests/golden (or ACESTEP_GOLDEN_DIR) must pass."""

from functools import lru_cache

import pytest

from acestep_worker.dev.parity import check_golden_dir

from ..support.repo import GOLDEN

VARIANTS = sorted(p for p in GOLDEN.glob("*") if (p / "manifest.json").is_file()) if GOLDEN.is_dir() else []


@lru_cache(maxsize=None)
def _rows(variant):
    return tuple(check_golden_dir(variant))


def test_golden_data_is_present():
    assert VARIANTS, f"no golden variants found under {GOLDEN} (set ACESTEP_GOLDEN_DIR)"


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda p: p.name)
def test_every_boundary_matches_upstream(variant):
    rows = _rows(variant)
    failures = [f"{r.file}/{r.tensor}: abs {r.max_abs:.3g} rel {r.max_rel:.3g}" for r in rows if not r.passed]
    assert rows and not failures, failures
    generated = {r.file for r in rows if r.file.startswith("generate_")}
    assert generated, "a golden variant without sampler files checks nothing about sampling"


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda p: p.name)
def test_every_golden_file_of_a_variant_is_checked(variant):
    """The editing goldens and the DCW goldens are required, not optional."""
    rows = _rows(variant)
    checked = {r.file for r in rows}
    present = {p.stem for p in variant.glob("*.safetensors")} - {"model"}
    assert present <= checked, sorted(present - checked)
    assert any(name.startswith("edit_") for name in checked), "no editing golden checked"
    assert any(name.endswith("_dcw_default") for name in checked), "no DCW golden checked"
    injected = [r for r in rows if r.tensor == "trace.repaint_injected_xt"]
    assert injected and all(r.passed for r in injected)


def test_the_retake_goldens_are_checked_bit_for_bit():
    """Upstream's retake noise (manifest_retake.json) is required: the noise bit for bit, and a sampler run."""
    rows = _rows(GOLDEN / "turbo_a")
    noise = [r for r in rows if r.file.startswith("retake_noise_")]
    assert len({r.file for r in noise}) >= 5 and all(r.passed and r.max_abs == 0 for r in noise)
    run = {r.tensor: r for r in rows if r.file.startswith("retake_generate_")}
    assert {"mid.initial_noise", "out.target_latents"} <= set(run) and all(r.passed for r in run.values())
    assert run["mid.initial_noise"].max_abs == 0


FLOW_EDIT_GOLDENS = {"flowedit_window_full", "flowedit_window_avg2_interval", "flowedit_cover_context",
                     "flowedit_text2music_context", "flowedit_cfg_interval_float32_bound", "flowedit_nocfg_ema_clamp"}


def test_the_flow_edit_goldens_are_required_and_match():
    """Upstream's flowedit_generate_audio (manifest_flow_edit.json) is required: the result and the timestep
    of every decoder call (so their number and order), for each window, draw count, context and CFG interval."""
    rows = [r for r in _rows(GOLDEN / "base_a") if r.file.startswith("flowedit_")]
    assert {r.file for r in rows} == FLOW_EDIT_GOLDENS
    assert all(r.passed for r in rows), [r for r in rows if not r.passed]
    tensors = {(r.file, r.tensor) for r in rows}
    for name in FLOW_EDIT_GOLDENS:
        assert {(name, "out.target_latents"), (name, "trace.decoder_timestep")} <= tensors


def test_the_audio_understanding_goldens_are_required_and_checked():
    """Upstream's understanding prompt (byte for byte), its whole constrained planner loop (with the fields the
    model names itself after a caption, steered by a script) and the audio codes of a source."""
    rows = _rows(GOLDEN / "turbo_a")
    checked = {r.tensor for r in rows if r.file.startswith("understand_")}
    assert {"prompt.five_codes.text", "out.five_codes.greedy_tokens", "out.five_codes.constrained_greedy_tokens",
            "out.code_string", "out.indices", "mid.latents"} <= checked, sorted(checked)
    handover = {r.tensor for r in rows if r.file == "understand_handover"}
    assert {f"out.{case}.constrained_greedy_tokens" for case in ("understand_named", "understand_language",
                                                                 "cot_unknown")} <= handover, sorted(handover)
    assert all(r.passed for r in rows if r.file.startswith("understand_"))


def test_the_pmi_quality_score_golden_is_required_and_checked():
    """Upstream's calculate_pmi_score_per_condition on the tiny planner (turbo_a's manifest_pmi.json)."""
    rows = _rows(GOLDEN / "turbo_a")
    checked = {r.tensor for r in rows if r.file == "pmi_score"}
    assert {"out.full.scores", "out.full.overall", "out.caption_bpm_sharp.scores",
            "out.caption_bpm_sharp.overall"} <= checked, sorted(checked)
    assert all(r.passed for r in rows if r.file == "pmi_score")


def test_the_lyric_alignment_goldens_are_checked():
    """LRC and alignment-score parity (turbo_a's manifest_alignment.json) is required, not optional."""
    variant = GOLDEN / "turbo_a"
    rows = [r for r in _rows(variant) if r.file.startswith("align_")]
    assert {r.file for r in rows} == {"align_lrc", "align_score", "align_attention"}
    assert {"out.lrc_utf8", "out.path_rows", "out.dit_score", "out.lm_score"} <= {r.tensor for r in rows}
    assert all(r.passed for r in rows), [r for r in rows if not r.passed]


def test_the_captured_cross_attention_equals_upstreams_bit_for_bit():
    """The maps the alignment pass reads (manifest_alignment_attention.json): the re-noised input and the
    chosen heads' cross-attention of upstream's timestamp and score calls, with no tolerance at all."""
    rows = {r.tensor: r for r in _rows(GOLDEN / "turbo_a") if r.file == "align_attention"}
    exact = ["mid.noise", "mid.xt_timestamp", "out.attention_timestamp", "out.attention_score_lm",
             "out.attention_score_dit"]
    assert all(rows[name].passed and rows[name].max_abs == 0.0 for name in exact), [rows.get(n) for n in exact]
    batched = [r for name, r in rows.items() if name.endswith("(one batched call)")]
    assert len(batched) == 2 and all(r.passed for r in batched), batched
    assert all(rows[name].passed for name in ("out.lrc_utf8", "out.lm_score", "out.dit_score"))


def _small_copy(variant, target):
    """A copy of `variant` whose manifests name only two single-forward files (quick to check)."""
    import json
    import shutil

    target.mkdir()
    keep = ["decoder.safetensors", "prepare_condition.safetensors"]
    for name in ["config.json", "model.safetensors", *keep]:
        shutil.copy(variant / name, target / name)
    manifest = json.loads((variant / "manifest.json").read_text())
    manifest["files"] = {k: v for k, v in manifest["files"].items() if k in keep}
    (target / "manifest.json").write_text(json.dumps(manifest))
    return manifest


def test_a_present_but_unnamed_golden_file_fails_the_run(tmp_path):
    import shutil

    copy = tmp_path / VARIANTS[0].name
    _small_copy(VARIANTS[0], copy)
    assert all(r.passed for r in check_golden_dir(copy))
    shutil.copy(copy / "decoder.safetensors", copy / "edit_turbo_mystery.safetensors")
    failed = [r for r in check_golden_dir(copy) if not r.passed]
    assert [r.file for r in failed] == ["edit_turbo_mystery"], failed


def test_a_named_golden_file_without_a_runner_or_file_fails_the_run(tmp_path):
    import json
    import shutil

    copy = tmp_path / VARIANTS[0].name
    manifest = _small_copy(VARIANTS[0], copy)
    shutil.copy(copy / "decoder.safetensors", copy / "mystery_boundary.safetensors")
    manifest["files"]["mystery_boundary.safetensors"] = {}
    manifest["files"]["generate_gone.safetensors"] = {}
    (copy / "manifest.json").write_text(json.dumps(manifest))
    failed = {r.file: r.tensor for r in check_golden_dir(copy) if not r.passed}
    assert set(failed) == {"mystery_boundary", "generate_gone"}, failed
    assert "no runner" in failed["mystery_boundary"] and "missing" in failed["generate_gone"]


def test_check_parity_fails_on_a_wrong_checkpoint(tmp_path):
    """Perturb one weight: the comparison must notice (a parity check that cannot fail proves nothing)."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    variant = VARIANTS[0]
    broken = tmp_path / variant.name
    shutil.copytree(variant, broken)
    weights = load_file(str(broken / "model.safetensors"))
    key = next(k for k in weights if k.endswith("mlp.down_proj.weight") and k.startswith("decoder."))
    weights[key] = weights[key] + 0.05 * torch.randn_like(weights[key])
    save_file(weights, str(broken / "model.safetensors"))
    rows = check_golden_dir(broken)
    assert any(not r.passed and r.file == "decoder" for r in rows)
    assert all(r.passed for r in rows if r.file == "tokenizer")  # untouched modules still match


POST_GOLDENS = {"post_latents", "post_waveforms", "post_long_fades", "post_normalization_off"}


def test_the_finishing_goldens_are_required_and_match_bitwise():
    """Latent shift/rescale, the anti-clip, peak normalisation and fades, from upstream's own functions."""
    turbo = next(v for v in VARIANTS if v.name == "turbo_a")
    rows = [r for r in _rows(turbo) if r.file.startswith("post_")]
    assert {r.file for r in rows} == POST_GOLDENS
    assert all(r.passed and r.max_abs == 0.0 for r in rows), [r for r in rows if not r.passed]
    assert {"out.latents", "mid.anticlipped", "mid.normalized", "out.finished"} <= {r.tensor for r in rows}


def test_a_finishing_golden_off_by_one_float_step_fails(tmp_path):
    import json
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    turbo = next(v for v in VARIANTS if v.name == "turbo_a")
    copy = tmp_path / turbo.name
    _small_copy(turbo, copy)
    tensors = load_file(str(turbo / "post_waveforms.safetensors"))
    finished = tensors["out.finished"].clone()
    finished[0, 0, 200] = torch.nextafter(finished[0, 0, 200], torch.tensor(2.0))
    save_file({**tensors, "out.finished": finished}, str(copy / "post_waveforms.safetensors"))
    manifest = json.loads((turbo / "manifest_post.json").read_text())
    manifest["files"] = {"post_waveforms.safetensors": manifest["files"]["post_waveforms.safetensors"]}
    (copy / "manifest_post.json").write_text(json.dumps(manifest))
    shutil.copy(turbo / "config.json", copy / "config.json")
    failed = [(r.file, r.tensor) for r in check_golden_dir(copy) if not r.passed]
    assert failed == [("post_waveforms", "out.finished")], failed


HEUN_GOLDENS = {
    "turbo_a": {"generate_turbo_heun", "generate_turbo_heun_clamp_ema", "generate_turbo_heun_dcw_default"},
    "base_a": {"generate_base_apg_heun", "generate_base_adg_heun", "generate_base_apg_heun_interval_clamp_ema",
               "generate_base_adg_heun_interval", "generate_base_nocfg_heun", "generate_base_apg_heun_dcw_default"},
}


@pytest.mark.parametrize("variant", sorted(HEUN_GOLDENS))
def test_the_heun_goldens_are_required_and_match_bit_for_bit(variant):
    """Upstream's generate_audio with sampler_mode "heun" (manifest_heun.json) is required: the result and the
    timestep of every decoder call (a corrector call per step; none on turbo's last), bit for bit without DCW."""
    rows = [r for r in _rows(GOLDEN / variant) if "_heun" in r.file]
    assert {r.file for r in rows} == HEUN_GOLDENS[variant]
    assert all(r.passed for r in rows), [r for r in rows if not r.passed]
    for name in HEUN_GOLDENS[variant]:
        checked = {r.tensor: r for r in rows if r.file == name}
        assert set(checked) == {"out.target_latents", "trace.decoder_timestep"}
        assert checked["trace.decoder_timestep"].max_abs == 0
        if not name.endswith("_dcw_default"):
            assert checked["out.target_latents"].max_abs == 0, name


def test_a_long_source_is_encoded_as_upstream_window_by_window():
    """Upstream's tiled_encode of a 70 s source (three 30 s windows, a posterior sample each) is required: its
    latents, codes and code string, bit for bit."""
    rows = [r for r in _rows(GOLDEN / "turbo_a") if r.file == "understand_codes_long"]
    assert {r.tensor for r in rows} == {"mid.latents", "out.indices", "out.code_string"}, rows
    assert all(r.passed and r.max_abs == 0 for r in rows), rows
