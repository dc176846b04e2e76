"""Parity with upstream ACE-Step: every golden variant in tests/golden (or ACESTEP_GOLDEN_DIR) must pass."""

import subprocess
import sys

import pytest

from acestep_worker.parity import check_golden_dir

from .conftest import GOLDEN, REPO

VARIANTS = sorted(p for p in GOLDEN.glob("*") if (p / "manifest.json").is_file()) if GOLDEN.is_dir() else []


def test_golden_data_is_present():
    assert VARIANTS, f"no golden variants found under {GOLDEN} (set ACESTEP_GOLDEN_DIR)"


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda p: p.name)
def test_every_boundary_matches_upstream(variant):
    rows = check_golden_dir(variant)
    failures = [f"{r.file}/{r.tensor}: abs {r.max_abs:.3g} rel {r.max_rel:.3g}" for r in rows if not r.passed]
    assert rows and not failures, failures
    generated = {r.file for r in rows if r.file.startswith("generate_")}
    assert generated, "a golden variant without sampler files checks nothing about sampling"


def test_check_parity_script_reports_a_table_and_exit_code():
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "check_parity.py"), str(VARIANTS[0])],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "max abs" in result.stdout and "0 failed" in result.stdout


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
