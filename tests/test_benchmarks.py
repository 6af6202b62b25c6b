"""The asv suite must stay importable and well-formed: a broken benchmark fails CI."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

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


def _compare_peers():
    import importlib.util

    spec = importlib.util.spec_from_file_location("compare_peers", ROOT / "scripts" / "compare_peers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_peer_comparator_runs_the_same_iterations_as_numpy_em():
    # the comparator's own check: each library's parameters after 3 iterations from the same start
    # equal the NumPy reference's, and 2 iterations would be far off (the check can fail)
    peers = _compare_peers()
    onedal, _ = peers.load_onedal(2)
    for kind in ("full", "diag"):
        case = (3000, 3, 3, kind, False)
        runners = peers.runners_for(case, ["fastem", "sklearn", "onedal"], onedal)
        check = peers.iteration_check(case, "overlapping", runners, rows=3000)
        assert check.pop(f"reference {peers.CHECK_ITERATIONS - 1} it") > 1e-3
        assert set(check) >= {"fastem", "sklearn"}
        assert all(diff < 1e-9 for diff in check.values()), (kind, check)


def test_overlapping_data_is_3_to_5_sd_apart():
    peers = _compare_peers()
    for n, d, k in ((1000, 16, 16), (1000, 64, 32)):
        X, centres, (weights, means, cov) = peers.make_data("overlapping", n, d, k)
        nearest = peers._nearest_centre_distances(centres)
        assert abs(np.median(nearest) - 4.0) < 1e-12 and nearest.min() > 3.0 and nearest.max() < 5.0
        # the start: k distinct data rows, the data covariance, uniform weights
        assert len({tuple(m) for m in means}) == k and all(any(np.all(X == m, axis=1)) for m in means)
        assert np.allclose(cov[0], np.cov(X.T)) and np.allclose(weights, 1 / k)
