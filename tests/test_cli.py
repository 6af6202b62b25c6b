"""The `fastem` command, run as a real process on small files, plus its error table in-process."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastem
from fastem import GaussianMixture, cli

_SCRIPT = Path(sys.executable).with_name("fastem")
COMMAND = [os.fspath(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "fastem"]


def run(*args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([*COMMAND, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def work(tmp_path_factory, X):
    d = tmp_path_factory.mktemp("cli")
    np.save(d / "data.npy", X)
    np.savetxt(d / "data.csv", X, delimiter=",", header="a,b,c", comments="")
    np.save(d / "two.npy", np.ascontiguousarray(X[:, :2]))
    GaussianMixture(3, random_state=0).fit(X).save(d / "model.npz")
    return d


def one_error_line(stderr: str, prefix: str = "fastem") -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(prefix) and "Traceback" not in stderr
    return lines[0]


# ----------------------------------------------------------------------------- the work, end to end
def test_fit_predict_score_info(work, X):
    r = run("fit", "data.npy", "-k", "3", "--seed", "0", "--out", "fit.npz", cwd=work)
    assert r.returncode == 0, r.stderr
    assert "600 rows x 3 features" in r.stdout and "converged: yes" in r.stdout
    assert "iterations:" in r.stdout and "seconds:" in r.stdout and "log-likelihood:" in r.stdout
    cli_model = fastem.load(work / "fit.npz")
    ref = GaussianMixture(3, random_state=0).fit(X)
    assert np.allclose(cli_model.means_, ref.means_, rtol=1e-12, atol=1e-12)
    assert cli_model.n_iter_ == ref.n_iter_

    r = run("predict", "fit.npz", "data.csv", "--out", "labels.npy", cwd=work)
    assert r.returncode == 0, r.stderr
    assert np.array_equal(np.load(work / "labels.npy"), cli_model.predict(X))

    r = run("predict", "fit.npz", "data.npy", "--proba", "--out", "resp.csv", cwd=work)
    assert r.returncode == 0, r.stderr
    resp = np.loadtxt(work / "resp.csv", delimiter=",", skiprows=1)
    assert np.allclose(resp, cli_model.predict_proba(X), rtol=1e-15, atol=1e-300)

    r = run("score", "fit.npz", "data.npy", "--json", cwd=work)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["n_samples"] == 600
    assert np.isclose(got["mean_log_likelihood"], cli_model.score(X), rtol=1e-12)
    assert np.isclose(got["bic"], cli_model.bic(X), rtol=1e-12)

    r = run("info", "fit.npz", cwd=work)
    assert r.returncode == 0, r.stderr
    digest = hashlib.sha256((work / "data.npy").read_bytes()).hexdigest()
    assert f"sha256:file:{digest}" in r.stdout
    assert "3 full components in 3 dimensions" in r.stdout and "600 x 3" in r.stdout


def test_select_prints_tables_and_saves_the_best(work, X):
    r = run(
        "select", "data.npy", "-k", "1..3", "--covariance", "full,spherical", "--out", "best.npz", cwd=work
    )
    assert r.returncode == 0, r.stderr
    assert "BIC (lower is better)" in r.stdout and "AIC (lower is better)" in r.stdout
    assert "full (VVV)" in r.stdout and "spherical (VII)" in r.stdout
    bics = {
        (k, kind): GaussianMixture(k, covariance_type=kind, random_state=0).fit(X).bic(X)
        for k in (1, 2, 3)
        for kind in ("full", "spherical")
    }
    k, kind = min(bics, key=bics.get)
    best = fastem.load(work / "best.npz")
    assert (best.n_components, best.covariance_type) == (k, kind)
    assert f"best: {kind}, K={k}" in r.stdout
    table = r.stdout.split("AIC (lower")[0]
    assert len([line for line in table.splitlines() if line.strip()[:1].isdigit()]) == 3
    assert f"{bics[k, kind]:.2f}*" in table


def test_demo_prints_the_model_and_draws_the_plot(work):
    r = run("demo", "--plot", "faithful.png", cwd=work)
    assert r.returncode == 0, r.stderr
    for text in ("weight 0.3559", "[ 2.0364 54.4785]", "covariance:", "log-likelihood: -1130.2640"):
        assert text in r.stdout
    png = (work / "faithful.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 50_000


def test_usage_error_through_the_real_process(work):
    r = run("fit", "data.npy", "-k", "0", "--out", "m.npz", cwd=work)
    assert r.returncode == 2
    assert "-k/--n-components: expected a positive integer, got '0'" in one_error_line(r.stderr)
    r = run("--help", cwd=work)
    assert r.returncode == 0 and "examples:" in r.stdout and "exit status" in r.stdout


def test_failed_work_through_the_real_process(work):
    (work / "broken.npz").write_bytes((work / "model.npz").read_bytes()[:500])
    r = run("predict", "broken.npz", "data.npy", "--out", "l.npy", cwd=work)
    assert r.returncode == 1
    assert "truncated, corrupted" in one_error_line(r.stderr, "fastem: error:")
    assert not (work / "l.npy").exists()


# ----------------------------------------------------------------------------- error table, in-process
def call(capsys, *args) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "args, message",
    [
        ((), "the following arguments are required: COMMAND"),
        (("frobnicate",), "invalid choice: 'frobnicate'"),
        (("fit", "data.npy", "--out", "m.npz"), "required: -k/--n-components"),
        (("fit", "data.npy", "-k", "3"), "required: --out/-o"),
        (("fit", "data.npy", "-k", "two", "--out", "m.npz"), "expected a positive integer, got 'two'"),
        (
            ("fit", "data.npy", "-k", "2", "--covariance", "banded", "--out", "m.npz"),
            "invalid choice: 'banded'",
        ),
        (("fit", "data.npy", "-k", "2", "--tol", "-1", "--out", "m.npz"), "expected a finite number >= 0"),
        (("fit", "data.npy", "-k", "2", "--threads", "0", "--out", "m.npz"), "0 threads has no meaning"),
        (("fit", "data.npy", "-k", "2", "--max-iter", "x", "--out", "m.npz"), "expected an integer >= 0"),
        (("fit", "data.npy", "-k", "2", "--out", "model.pkl"), "must end in .npz or .fastem"),
        (("fit", "data.npy", "-k", "2", "--bogus", "--out", "m.npz"), "unrecognized arguments: --bogus"),
        (("predict", "model.npz", "data.npy", "--out", "labels.txt"), "must end in .npy or .csv"),
        (("predict", "model.npz", "data.npy", "--out", "data.npy"), "is also an input"),
        (("predict", "model.npz"), "required: DATA"),
        (("select", "data.npy", "-k", "5..2"), "empty range '5..2'"),
        (("select", "data.npy", "-k", "0..3"), "component counts must be >= 1"),
        (("select", "data.npy", "-k", "1;3"), "expected K, LOW..HIGH"),
        (("select", "data.npy", "--covariance", "full,banded"), "unknown covariance type 'banded'"),
        (("demo", "--plot", "faithful.gif"), "must end in .png or .pdf or .svg"),
    ],
)
def test_usage_errors_exit_2_with_one_line(work, capsys, monkeypatch, args, message):
    monkeypatch.chdir(work)
    code, out, err = call(capsys, *args)
    assert code == 2
    assert message in one_error_line(err)


@pytest.mark.parametrize(
    "args, message",
    [
        (("fit", "absent.npy", "-k", "2", "--out", "m.npz"), "data file 'absent.npy' does not exist"),
        (("fit", "data.npy", "-k", "2", "--out", "nodir/m.npz"), "directory 'nodir' does not exist"),
        (("fit", "data.npy", "-k", "700", "--out", "m.npz"), "n_samples >= n_components"),
        (("fit", "notes.txt", "-k", "2", "--out", "m.npz"), "cannot tell the format"),
        (("fit", "bad.csv", "-k", "2", "--out", "m.npz"), "bad.csv"),
        (("predict", "absent.npz", "data.npy", "--out", "l.npy"), "model file 'absent.npz' does not exist"),
        (
            ("predict", "model.npz", "two.npy", "--out", "l.npy"),
            "has 2 features, but GaussianMixture is expecting 3",
        ),
        (("score", "data.npy", "data.npy"), "single .npy array, not a fastem model file"),
        (("info", "garbage.npz"), "truncated, corrupted or not a fastem model"),
        (("select", "data.npy", "-k", "700,701"), "every fit failed"),
    ],
)
def test_failed_work_exits_1_with_one_line(work, capsys, monkeypatch, args, message):
    monkeypatch.chdir(work)
    (work / "notes.txt").write_text("1 2\n3 4\n")
    (work / "bad.csv").write_text("a,b\n1,2\n3,oops\n")
    (work / "garbage.npz").write_bytes(b"PK\x03\x04" + bytes(100))
    code, out, err = call(capsys, *args)
    assert code == 1
    assert message in err.strip().splitlines()[-1]
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("fastem: error:")


def test_debug_shows_the_traceback(work, monkeypatch):
    monkeypatch.chdir(work)
    with pytest.raises(cli.CommandError, match="does not exist"):
        cli.main(["predict", "absent.npz", "data.npy", "--out", "l.npy", "--debug"])


def test_every_command_has_help_with_examples(capsys):
    for command in cli.COMMANDS:
        code, out, _ = call(capsys, command, "--help")
        assert code == 0 and "examples:" in out and f"fastem {command}" in out, command


def test_not_converged_is_reported_and_can_fail(work, capsys, monkeypatch):
    monkeypatch.chdir(work)
    args = ("fit", "data.npy", "-k", "3", "--max-iter", "1", "--tol", "0", "--out", "nc.npz")
    code, out, err = call(capsys, *args)
    assert code == 0 and "converged: NO" in out and "did not converge in 1 iterations" in err
    code, out, err = call(capsys, *args, "--require-converged")
    assert code == 1


def test_progress_bar_on_request(work, capsys, monkeypatch):
    pytest.importorskip("tqdm")
    monkeypatch.chdir(work)
    code, out, err = call(capsys, "fit", "data.npy", "-k", "2", "--progress", "--out", "p.npz")
    assert code == 0 and "EM: 100%" in err and "loglik/row" in err
    code, out, err = call(capsys, "fit", "data.npy", "-k", "2", "--no-progress", "--out", "p.npz")
    assert code == 0 and err == ""


def test_in_memory_fallback_without_sources(work, X, capsys, monkeypatch):
    """Without fastem.sources the command reads .npy and .csv itself and names what it cannot read."""
    monkeypatch.chdir(work)
    monkeypatch.setattr(cli, "_sources_module", lambda: None)
    assert np.array_equal(cli.load_in_memory("data.csv"), np.loadtxt("data.csv", delimiter=",", skiprows=1))
    code, out, err = call(capsys, "fit", "data.csv", "-k", "3", "--out", "fb.npz")
    assert code == 0, err
    assert np.allclose(fastem.load("fb.npz").means_, GaussianMixture(3, random_state=0).fit(X).means_)
    code, out, err = call(capsys, "predict", "fb.npz", "data.npy", "--out", "fb.npy")
    assert code == 0 and np.load("fb.npy").shape == (600,)
    (work / "d.parquet").write_bytes(b"PAR1")
    code, out, err = call(capsys, "fit", "d.parquet", "-k", "2", "--out", "m.npz")
    assert code == 1 and "need fastem.sources" in err


def test_plot_names_the_extra_when_matplotlib_is_missing(work, capsys, monkeypatch):
    monkeypatch.chdir(work)
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    from fastem import plot

    with pytest.raises(ImportError, match=r'pip install "fastem\[plot\]"'):
        plot.require_matplotlib()
    code, out, err = call(capsys, "demo", "--plot", "x.png")
    assert code == 1 and 'pip install "fastem[plot]"' in one_error_line(err, "fastem: error:")
    assert out == ""  # refused before any work
