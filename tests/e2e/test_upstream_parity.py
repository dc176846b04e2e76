"""scripts/check_parity.py, run as a user runs it, against the golden data."""

import subprocess
import sys

from ..support.repo import GOLDEN, REPO

VARIANTS = sorted(p for p in GOLDEN.glob("*") if (p / "manifest.json").is_file()) if GOLDEN.is_dir() else []


def test_check_parity_script_reports_a_table_and_exit_code():
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "check_parity.py"), str(VARIANTS[0])],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "max abs" in result.stdout and "0 failed" in result.stdout
