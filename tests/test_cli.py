"""The `fastem` command, run as a real process on small files, plus its error table in-process."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastem
from fastem import GaussianMixture, cli
from fastem.mixture import BernoulliMixture, MultinomialMixture, PoissonMixture, VonMisesFisherMixture

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
    # the terminal's fit and the figure's differ by their start only, and the summary says so
    # (the k-means start's iteration count belongs to the initialisation, so it is read, not fixed)
    m = re.search(r"default \(k-means\) start: converged: True after (\d+) iterations in ", r.stdout)
    assert m, r.stdout
    assert "deliberately poor start" in r.stdout and "not from the k-means start above" in r.stdout
    assert f"converges after 18 iterations (not {m.group(1)}) at the same optimum, -1130.2640." in r.stdout
    # the kernels are in numba's cache now: a second run compiles nothing and says nothing about it
    r = run("demo", cwd=work)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert "compil" not in r.stdout.lower() and "JIT" not in r.stdout


def test_compile_notice_only_when_fastem_compiles():
    """One stderr line on the first real compilation of a fastem function; none from the cache or others."""
    import io

    import numba

    def probe(x):
        return x + 1

    def other(x):
        return x - 1

    probe.__module__ = "fastem._compile_probe"  # numba reports the module of the Python function
    ours, theirs = numba.njit(probe), numba.njit(other)
    stream = io.StringIO()
    with cli._compile_notice(stream) as watch:
        assert theirs(1) == 0
        assert not watch.compiled and stream.getvalue() == ""
        assert ours(1) == 2 and ours(2) == 3  # compiles once, then runs the compiled code
        ours(1.5)  # a new signature compiles again: still one notice
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("compiling fastem kernels (first use only")
    assert watch.compiled and watch.seconds > 0
    stream = io.StringIO()
    with cli._compile_notice(stream) as watch:
        assert ours(3) == 4
    assert stream.getvalue() == "" and not watch.compiled


def test_help_states_defaults_and_what_chunk_rows_does(capsys):
    code, out, _ = call(capsys, "fit", "--help")
    text = " ".join(out.split())  # argparse wraps lines
    assert code == 0
    assert "added to each covariance's diagonal, keeping it positive definite (default: 1e-6)" in text
    assert "needs fastem.sources" not in text
    assert "rows read and processed at a time when DATA is streamed from disk" in text
    for command in ("predict", "score"):
        code, out, _ = call(capsys, command, "--help")
        assert "rows read and processed at a time" in " ".join(out.split()), command


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
        (("fit", "data.npy", "-k", "2", "--family", "gamma", "--out", "m.npz"), "invalid choice: 'gamma'"),
        (
            ("fit", "data.npy", "-k", "2", "--family", "poisson", "--covariance", "diag", "--out", "m.npz"),
            "--covariance only applies to --family gaussian, not poisson; drop it",
        ),
        (
            ("fit", "data.npy", "-k", "2", "--family", "bernoulli", "--reg-covar", "0.1", "--out", "m.npz"),
            "--reg-covar only applies to --family gaussian, not bernoulli",
        ),
        (
            ("select", "data.npy", "--family", "vmf", "--covariance", "full", "--reg-covar", "0"),
            "--covariance and --reg-covar only apply to --family gaussian, not vmf; drop them",
        ),
        (("fit", "data.npy", "-k", "2", "--normalize", "--out", "m.npz"), "--normalize only applies to"),
        (
            ("select", "data.npy", "--family", "poisson", "--normalize"),
            "only applies to --family vmf, not poisson",
        ),
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


def test_select_progress_lines_when_stderr_is_not_a_terminal(work, X, capsys, monkeypatch):
    """capsys's stderr is no terminal: one plain line per fit (no bar), and none with --no-progress."""
    monkeypatch.chdir(work)
    code, out, err = call(capsys, "select", "data.npy", "-k", "1..3", "--covariance", "full,diag")
    assert code == 0, err
    lines = err.splitlines()
    assert len(lines) == 6 and "\r" not in err and "%|" not in err
    assert lines[0].startswith("fastem select: [1/6] K=1 full: BIC ")
    assert lines[-1].startswith("fastem select: [6/6] K=3 diag: BIC ")
    assert all("iterations (" in line and line.endswith(" s)") for line in lines)
    bic = GaussianMixture(2, covariance_type="diag", random_state=0).fit(X).bic(X)
    assert f"K=2 diag: BIC {bic:.2f}, converged after" in err
    code, out, err = call(capsys, "select", "data.npy", "-k", "1..2", "--covariance", "full", "--no-progress")
    assert code == 0 and err == ""
    code, out, err = call(capsys, "select", "data.npy", "-k", "2,700", "--covariance", "full")
    assert code == 0
    assert "fastem select: [2/2] K=700 full: failed" in err and "warning: K=700 full:" in err


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


# ----------------------------------------------------------------------------- the other families
FAMILY_CASES = {
    # family: (estimator class, generator, file the data is written to, fitted per-feature array)
    "poisson": (PoissonMixture, "make_poisson", "counts.csv", "rates_"),
    "bernoulli": (BernoulliMixture, "make_bernoulli", "bits.npy", "probabilities_"),
    "multinomial": (MultinomialMixture, "make_multinomial", "words.csv", "probabilities_"),
    "vmf": (VonMisesFisherMixture, "make_vmf", "dirs.npy", "mean_directions_"),
}


def write_data(path: Path, X: np.ndarray) -> None:
    """.npy, or .csv with a header line (counts as integers, as a user's file would hold them)."""
    if path.suffix == ".npy":
        np.save(path, X)
    else:
        names = ",".join(f"f{d}" for d in range(X.shape[1]))
        np.savetxt(path, X, delimiter=",", fmt="%d", header=names, comments="")


@pytest.fixture(scope="module")
def family_data(tmp_path_factory):
    """Per family: (directory, data file name, X) with 240 rows from tests/reference_families.py."""
    import reference_families

    d = tmp_path_factory.mktemp("families")
    out = {}
    for family, (_, maker, name, _) in FAMILY_CASES.items():
        X = getattr(reference_families, maker)(240, 3)[0]
        write_data(d / name, X)
        out[family] = (d, name, X)
    return out


@pytest.mark.parametrize("family", list(FAMILY_CASES))
def test_family_fit_info_predict_score(family, family_data, capsys, monkeypatch):
    cls, _, name, attribute = FAMILY_CASES[family]
    d, name, X = family_data[family]
    monkeypatch.chdir(d)
    code, out, err = call(
        capsys, "fit", name, "-k", "3", "--family", family, "--max-iter", "15", "--out", "m.npz"
    )
    assert code == 0, err
    D = X.shape[1]
    assert out.startswith(f"fitted 3 {family} components to {name} (240 rows x {D} features)\n")
    model = fastem.load("m.npz")
    ref = cls(3, max_iter=15, random_state=0).fit(X)
    assert type(model) is cls and model.n_iter_ == ref.n_iter_
    assert np.allclose(getattr(model, attribute), getattr(ref, attribute), rtol=1e-10, atol=1e-12)
    assert np.allclose(model.weights_, ref.weights_, rtol=1e-10, atol=1e-12)

    code, out, err = call(capsys, "info", "m.npz")
    assert code == 0, err
    assert f"m.npz: fastem {cls.__name__} ({family} family)" in out
    assert f"3 {family} components in {D} dimensions ({ref._n_parameters()} parameters)" in out
    assert f"240 x {D} from" in out and "covariance" not in out and "reg_covar" not in out
    rows = [line for line in out.splitlines() if "  weight " in line]
    assert len(rows) == 3 and all(len(line) <= 110 for line in rows)
    top = int(np.argmax(ref.weights_))
    assert rows[0].split()[0] == str(top) and f"weight {ref.weights_[top]:.4f}" in rows[0]
    if family == "vmf":
        assert f"kappa {ref.concentrations_[top]:.2f}" in rows[0] and "direction [" in rows[0]
        assert "rows normalised by fastem: no" in out
    elif D > 8:  # long vectors are shortened, saying how much was left out
        assert f"...] +{D - 6} more" in rows[0]
    else:
        assert f"{getattr(ref, attribute)[top, 0]:.4f}" in rows[0]

    code, out, err = call(capsys, "predict", "m.npz", name, "--out", "labels.npy")
    assert code == 0, err
    assert np.array_equal(np.load("labels.npy"), ref.predict(X))
    code, out, err = call(capsys, "predict", "m.npz", name, "--proba", "--out", "resp.csv")
    assert code == 0, err
    assert np.allclose(np.loadtxt("resp.csv", delimiter=",", skiprows=1), ref.predict_proba(X), atol=1e-12)

    code, out, err = call(capsys, "score", "m.npz", name, "--json", "--out", "logdens.npy")
    assert code == 0, err
    got = json.loads(out)
    assert got["n_samples"] == 240 and got["n_parameters"] == ref._n_parameters()
    assert np.isclose(got["mean_log_likelihood"], ref.score(X), rtol=1e-10)
    assert np.isclose(got["bic"], ref.bic(X), rtol=1e-10) and np.isclose(got["aic"], ref.aic(X), rtol=1e-10)
    assert np.allclose(np.load("logdens.npy"), ref.score_samples(X), rtol=1e-10)


def test_family_round_trip_through_the_real_process(family_data):
    d, name, X = family_data["poisson"]
    r = run("fit", name, "-k", "3", "--family", "poisson", "--max-iter", "10", "--out", "real.npz", cwd=d)
    assert r.returncode == 0, r.stderr
    assert "fitted 3 poisson components to counts.csv (240 rows x 6 features)" in r.stdout
    r = run("predict", "real.npz", name, "--out", "real.npy", cwd=d)
    assert r.returncode == 0, r.stderr
    assert np.array_equal(
        np.load(d / "real.npy"), PoissonMixture(3, max_iter=10, random_state=0).fit(X).predict(X)
    )
    r = run("fit", name, "-k", "3", "--family", "poisson", "--covariance", "diag", "--out", "x.npz", cwd=d)
    assert r.returncode == 2 and not (d / "x.npz").exists()
    assert "--covariance only applies to --family gaussian, not poisson" in one_error_line(r.stderr)


def test_vmf_normalize_flag(family_data, capsys, monkeypatch):
    d, _, X = family_data["vmf"]
    monkeypatch.chdir(d)
    np.save("scaled.npy", 2.5 * X)
    code, out, err = call(capsys, "fit", "scaled.npy", "-k", "3", "--family", "vmf", "--out", "v.npz")
    assert code == 1
    line = one_error_line(err, "fastem: error:")
    assert "row 0" in line and "add --normalize" in line and "normalize=True" not in line
    args = (
        "fit",
        "scaled.npy",
        "-k",
        "3",
        "--family",
        "vmf",
        "--normalize",
        "--max-iter",
        "10",
        "--out",
        "v.npz",
    )
    code, out, err = call(capsys, *args)
    assert code == 0, err
    ref = VonMisesFisherMixture(3, max_iter=10, normalize=True, random_state=0).fit(2.5 * X)
    assert np.allclose(fastem.load("v.npz").concentrations_, ref.concentrations_, rtol=1e-10)
    code, out, err = call(capsys, "info", "v.npz")
    assert code == 0 and "rows normalised by fastem: yes" in out
    code, out, err = call(capsys, "predict", "v.npz", "scaled.npy", "--out", "v.npy")
    assert code == 0 and np.array_equal(np.load("v.npy"), ref.predict(2.5 * X))


def test_select_with_a_family(family_data, capsys, monkeypatch):
    d, name, X = family_data["poisson"]
    monkeypatch.chdir(d)
    args = ("select", name, "-k", "1..3", "--family", "poisson", "--max-iter", "15", "--out", "best.npz")
    code, out, err = call(capsys, *args)
    assert code == 0, err
    bics = {k: PoissonMixture(k, max_iter=15, random_state=0).fit(X).bic(X) for k in (1, 2, 3)}
    k = min(bics, key=bics.get)
    table = out.split("AIC (lower")[0]
    assert "   K" + "poisson".rjust(16) in table.splitlines()
    rows = [line.split() for line in table.splitlines() if line.strip()[:1].isdigit()]
    assert [int(row[0]) for row in rows] == [1, 2, 3] and all(len(row) == 2 for row in rows)
    assert f"{bics[k]:.2f}*" in table and "VVV" not in out
    assert f"best: poisson, K={k} (BIC {bics[k]:.2f}) saved to best.npz" in out
    best = fastem.load("best.npz")
    assert type(best) is PoissonMixture and best.n_components == k


@pytest.mark.parametrize(
    "family, bad, message",
    [
        ("poisson", -1.0, "negative count -1 at row 7, column 2"),
        ("bernoulli", 2.0, "value 2 at row 7, column 2"),
        ("multinomial", -3.0, "at row 7"),
    ],
)
@pytest.mark.parametrize("suffix", [".csv", ".npy"])
def test_family_bad_data_names_the_row(family, bad, message, suffix, family_data, capsys, monkeypatch):
    d, _, X = family_data[family]
    monkeypatch.chdir(d)
    X = X.copy()
    X[7, 2] = bad
    write_data(d / f"bad{suffix}", X)
    code, out, err = call(capsys, "fit", f"bad{suffix}", "-k", "2", "--family", family, "--out", "bad.npz")
    assert code == 1 and out == ""
    line = one_error_line(err, "fastem: error:")
    assert message in line and f"bad{suffix}" in line
    assert not (d / "bad.npz").exists()
    # applying a model to the bad rows fails the same way, naming the file once
    FAMILY_CASES[family][0](2, max_iter=30, random_state=0).fit(family_data[family][2]).save("good.npz")
    code, out, err = call(capsys, "predict", "good.npz", f"bad{suffix}", "--out", "l.npy")
    assert code == 1 and not (d / "l.npy").exists()
    line = one_error_line(err, "fastem: error:")
    assert (
        line.startswith(f"fastem: error: cannot apply the model: 'bad{suffix}' contains") and message in line
    )


def test_prior_and_accelerate_options(tmp_path, capsys):
    from fastem.datasets import load_old_faithful

    data = tmp_path / "faithful.npy"
    np.save(data, load_old_faithful())
    model = tmp_path / "m.npz"
    assert cli.main(["fit", str(data), "-k", "2", "--prior", "mclust", "--accelerate", "squarem",
                     "--tol", "1e-10", "--max-iter", "500", "--out", str(model)]) == 0  # fmt: skip
    gm = fastem.load(model)
    assert gm.prior == "mclust" and gm.accelerate == "squarem"
    assert gm.score(load_old_faithful()) * 272 == pytest.approx(-1130.5093, abs=2e-4)
    capsys.readouterr()
    assert cli.main(["select", str(data), "-k", "1..2", "--covariance", "full", "--prior", "mclust"]) == 0
    assert "at the MAP estimate" in capsys.readouterr().out
    assert cli.main(["fit", str(data), "-k", "2", "--family", "poisson", "--prior", "mclust",
                     "--out", str(tmp_path / "p.npz")]) == 2  # fmt: skip


def test_algorithm_hard_option(tmp_path, capsys):
    rng = np.random.RandomState(0)
    data = tmp_path / "x.npy"
    np.save(data, np.vstack([rng.randn(200, 2), rng.randn(200, 2) + 5]))
    model = tmp_path / "hard.npz"
    assert cli.main(["fit", str(data), "-k", "2", "--algorithm", "hard", "--out", str(model)]) == 0
    assert "classification log-likelihood of hard EM" in capsys.readouterr().out
    gm = fastem.load(model)
    assert gm.algorithm_ == "hard"
    assert cli.main(["info", str(model)]) == 0
    assert "of hard (classification) EM" in capsys.readouterr().out
    assert cli.main(["fit", str(data), "-k", "2", "--algorithm", "soft", "--out", str(model)]) == 2
