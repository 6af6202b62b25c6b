"""The asv suite must stay importable and well-formed: a broken benchmark fails CI."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_asv_check_finds_no_problems():
    asv = shutil.which("asv") or str(Path(sys.executable).with_name("asv"))
    out = subprocess.run(
        [asv, "check", "--python=same", "--config", str(ROOT / "asv_benchmarks" / "asv.conf.json")],
        capture_output=True,
        text=True,
        cwd=ROOT / "asv_benchmarks",
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "No problems found" in out.stdout, out.stdout


def test_compare_script_parses_its_options():
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "compare_sklearn.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "--quick" in out.stdout
