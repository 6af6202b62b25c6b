"""The four linear families on every executor: streaming sources, Dask, online EM, checkpoints, model files.

Each family gets a small data set from the oracle's generators (``reference_families.py``), three
components and a fixed explicit initialisation (``weights_init`` plus the family's ``*_init``
arrays), ``tol=0`` and a fixed ``max_iter``: every fit below is deterministic, so a source, a Dask
cluster, a checkpoint or a model file must reproduce the in-memory fit bitwise (chunks that are
multiples of ``BLOCK_ROWS``) or to 1e-12 (other chunkings: the per-block partials are merged in
another order). Parameter recovery with the defaults (k-means init, 3 restarts) closes the file.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import signal
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from reference_families import REGISTRY, VMF_SIGMA, vmf_concentration

import fastem
from fastem import (
    BLOCK_ROWS,
    BernoulliMixture,
    MultinomialMixture,
    PoissonMixture,
    VonMisesFisherMixture,
)
from fastem import sources as S
from fastem.checkpoint import CheckpointMismatchError
from fastem.io import ModelFileError

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = ("poisson", "bernoulli", "multinomial", "vmf")
CLASSES = {
    "poisson": PoissonMixture,
    "bernoulli": BernoulliMixture,
    "multinomial": MultinomialMixture,
    "vmf": VonMisesFisherMixture,
}
#: each family's parameter arrays (the fitted attribute is the name plus "_", the init "_init")
PARAMS = {
    "poisson": ("rates",),
    "bernoulli": ("probabilities",),
    "multinomial": ("probabilities",),
    "vmf": ("mean_directions", "concentrations"),
}
N_ROWS = 2 * BLOCK_ROWS + 808  # three blocks, the last one partial (9000 rows at BLOCK_ROWS = 4096)
MAX_ITER = 8
INIT_ROWS = (0, 1, 2)
RTOL = 1e-12


def fitted_names(family: str) -> tuple[str, ...]:
    return ("weights_",) + tuple(f"{name}_" for name in PARAMS[family])


def init_kwargs(family: str, X: np.ndarray) -> dict:
    """The oracle's explicit initialisation from rows ``INIT_ROWS``, as estimator parameters."""
    weights, params = REGISTRY[family]["explicit_init"](X, INIT_ROWS)
    return {"weights_init": weights} | {f"{name}_init": value for name, value in params.items()}


def make_estimator(family: str, X: np.ndarray, **kw):
    """The deterministic configuration of this file: explicit init, tol=0, MAX_ITER iterations."""
    config = {"tol": 0.0, "max_iter": MAX_ITER, "random_state": 0} | init_kwargs(family, X) | kw
    return CLASSES[family](3, **config)


def assert_same_fit(got, expected, family: str) -> None:
    """Bitwise: every fitted array, the lower bounds and the iteration count."""
    for name in fitted_names(family):
        assert_array_equal(getattr(got, name), getattr(expected, name), err_msg=name)
    assert got.lower_bounds_ == expected.lower_bounds_
    assert got.n_iter_ == expected.n_iter_


def assert_close_fit(got, expected, family: str, rtol: float = RTOL) -> None:
    for name in fitted_names(family):
        want = getattr(expected, name)
        assert_allclose(getattr(got, name), want, rtol=rtol, atol=rtol * np.abs(want).max(), err_msg=name)
    assert_allclose(got.lower_bounds_, expected.lower_bounds_, rtol=rtol)
    assert got.n_iter_ == expected.n_iter_


@pytest.fixture(scope="module")
def datasets():
    """family -> (X, labels, truth): N_ROWS rows from the oracle's generator."""
    return {family: REGISTRY[family]["make"](N_ROWS, seed=1) for family in FAMILIES}


@pytest.fixture(scope="module")
def references(datasets):
    """family -> the in-memory fit every executor must reproduce."""
    return {
        family: make_estimator(family, datasets[family][0]).fit(datasets[family][0]) for family in FAMILIES
    }


@pytest.fixture(scope="module")
def npy_files(datasets, tmp_path_factory):
    """family -> path of the data as a .npy file."""
    folder = tmp_path_factory.mktemp("npy")
    paths = {}
    for family in FAMILIES:
        paths[family] = folder / f"{family}.npy"
        np.save(paths[family], datasets[family][0])
    return paths


def test_reference_fits_are_nontrivial(references):
    """The fits below compare something: EM moved the parameters and the bound rose by a margin."""
    for family, est in references.items():
        lbs = np.array(est.lower_bounds_)
        assert len(lbs) == MAX_ITER and np.all(np.isfinite(lbs)), family
        assert np.all(np.diff(lbs) >= -1e-12 * np.abs(lbs[1:])), family
        assert lbs[-1] - lbs[0] > 0.05, family
        assert np.all(est.weights_ > 0.05), family


# ============================================================================== 1. streaming sources
@pytest.mark.parametrize("chunk_rows", [BLOCK_ROWS, 2 * BLOCK_ROWS])
@pytest.mark.parametrize("family", FAMILIES)
def test_npy_source_with_block_multiple_chunks_is_bitwise_the_in_memory_fit(
    family, chunk_rows, datasets, references, npy_files
):
    X = datasets[family][0]
    got = make_estimator(family, X).fit(S.NpySource(npy_files[family], chunk_rows=chunk_rows))
    assert_same_fit(got, references[family], family)
    assert got.n_features_in_ == X.shape[1]


@pytest.mark.parametrize("chunk_rows", [1000, BLOCK_ROWS + 1])
@pytest.mark.parametrize("family", FAMILIES)
def test_npy_source_with_other_chunks_agrees_to_1e_12(family, chunk_rows, datasets, references, npy_files):
    X = datasets[family][0]
    got = make_estimator(family, X).fit(S.NpySource(npy_files[family], chunk_rows=chunk_rows))
    assert_close_fit(got, references[family], family)


@pytest.mark.parametrize("family", FAMILIES)
def test_parquet_source_and_parquet_path_agree_to_1e_12(family, datasets, references, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    X = datasets[family][0]
    columns = [f"x{d}" for d in range(X.shape[1])]
    table = pa.table({"id": np.arange(len(X)).astype(str)} | {c: X[:, d] for d, c in enumerate(columns)})
    pq.write_table(table, tmp_path / "x.parquet", row_group_size=3000)
    by_source = make_estimator(family, X).fit(
        S.ParquetSource(tmp_path / "x.parquet", columns=columns, chunk_rows=BLOCK_ROWS)
    )
    assert_close_fit(by_source, references[family], family)
    pq.write_table(pa.table({c: X[:, d] for d, c in enumerate(columns)}), tmp_path / "y.parquet")
    by_path = make_estimator(family, X).fit(str(tmp_path / "y.parquet"))  # dispatch by suffix
    assert_close_fit(by_path, references[family], family)


@pytest.mark.parametrize("family", FAMILIES)
def test_scoring_a_source_equals_scoring_in_memory(family, datasets, references, npy_files, tmp_path):
    X = datasets[family][0]
    est = references[family]
    source = S.NpySource(npy_files[family], chunk_rows=1000)  # not a block multiple: rows are independent
    assert_array_equal(est.predict(source), est.predict(X))
    assert_array_equal(est.score_samples(source), est.score_samples(X))
    assert_array_equal(est.predict_proba(source), est.predict_proba(X))
    assert est.score(source) == pytest.approx(est.score(X), rel=1e-13)
    written = est.predict(source, out=tmp_path / "labels.npy")
    assert_array_equal(np.load(tmp_path / "labels.npy"), est.predict(X))
    assert_array_equal(written, est.predict(X))


@pytest.mark.parametrize("family", FAMILIES)
def test_sample_weight_with_a_source(family, datasets, npy_files, tmp_path):
    """Weights read chunk by chunk from a memmap: bitwise the in-memory weighted fit, and the oracle's."""
    X = datasets[family][0]
    w = np.random.default_rng(3).uniform(0.1, 2.0, len(X))
    np.save(tmp_path / "w.npy", w)
    mem = make_estimator(family, X).fit(X, sample_weight=w)
    got = make_estimator(family, X).fit(
        S.NpySource(npy_files[family], chunk_rows=BLOCK_ROWS),
        sample_weight=np.load(tmp_path / "w.npy", mmap_mode="r"),
    )
    assert_same_fit(got, mem, family)
    weights0, params0 = REGISTRY[family]["explicit_init"](X, INIT_ROWS)
    (weights, params), lbs = REGISTRY[family]["run_em"](X, weights0, params0, MAX_ITER, sample_weight=w)
    assert_allclose(got.weights_, weights, rtol=1e-10)
    for name, value in params.items():
        assert_allclose(getattr(got, f"{name}_"), value, rtol=1e-10, atol=1e-12, err_msg=name)
    assert_allclose(got.lower_bounds_, lbs, rtol=1e-12)
    # the weights matter: the unweighted fit is elsewhere
    unweighted = make_estimator(family, X).fit(X)
    assert np.abs(unweighted.weights_ - got.weights_).max() > 1e-4


def test_vmf_normalize_on_a_source_normalises_each_chunk(datasets, tmp_path):
    X = datasets["vmf"][0]
    scaled = X * np.random.default_rng(4).uniform(0.5, 3.0, (len(X), 1))  # not unit rows
    np.save(tmp_path / "scaled.npy", scaled)
    mem = make_estimator("vmf", X, normalize=True).fit(scaled)
    got = make_estimator("vmf", X, normalize=True).fit(
        S.NpySource(tmp_path / "scaled.npy", chunk_rows=BLOCK_ROWS)
    )
    assert_same_fit(got, mem, "vmf")
    assert_array_equal(got.predict(tmp_path / "scaled.npy"), mem.predict(scaled))
    with pytest.raises(ValueError, match="unit"):
        make_estimator("vmf", X).fit(S.NpySource(tmp_path / "scaled.npy", chunk_rows=BLOCK_ROWS))


@pytest.mark.parametrize("family", FAMILIES)
def test_float32_npy_source_is_bitwise_the_float32_in_memory_fit(family, datasets, tmp_path):
    X32 = datasets[family][0].astype(np.float32)
    np.save(tmp_path / "x32.npy", X32)
    mem = make_estimator(family, datasets[family][0]).fit(X32)
    got = make_estimator(family, datasets[family][0]).fit(
        S.NpySource(tmp_path / "x32.npy", chunk_rows=BLOCK_ROWS)
    )
    assert_same_fit(got, mem, family)
    for name in fitted_names(family):
        assert getattr(got, name).dtype == np.float64, name


# ============================================================================== 2. Dask
@pytest.fixture(scope="module")
def client(references):
    # ``references`` compiled (or loaded from numba's cache) every kernel in this process first,
    # so the spawned workers find them all in the on-disk cache instead of compiling again
    from distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as c,
    ):
        yield c


@pytest.mark.parametrize("family", FAMILIES)
def test_dask_fit_equals_the_in_memory_fit(client, family, datasets, references):
    import dask.array as da

    X = datasets[family][0]
    Xd = da.from_array(X, chunks=(2000, X.shape[1]))  # 5 chunks, the last one short
    got = make_estimator(family, X).fit(Xd)
    assert_close_fit(got, references[family], family)
    assert_array_equal(got.predict(Xd).compute(), references[family].predict(X))


def test_dask_weighted_fit_and_scores(client, datasets):
    import dask.array as da

    X = datasets["vmf"][0]
    w = np.random.default_rng(5).uniform(0.1, 2.0, len(X))
    expected = make_estimator("vmf", X).fit(X, sample_weight=w)
    Xd = da.from_array(X, chunks=(3000, X.shape[1]))
    got = make_estimator("vmf", X).fit(Xd, sample_weight=da.from_array(w, chunks=2222))
    assert_close_fit(got, expected, "vmf")
    # the parameters agree to 1e-12, so do the per-sample outputs (log-likelihoods cross 0: atol too)
    assert_allclose(got.score_samples(Xd).compute(), expected.score_samples(X), rtol=1e-11, atol=1e-12)
    assert_allclose(got.predict_proba(Xd).compute(), expected.predict_proba(X), rtol=1e-11, atol=1e-12)


# ============================================================================== 3. online EM
@pytest.mark.parametrize("family", FAMILIES)
def test_partial_fit_over_mini_batches_improves_the_log_likelihood(family, datasets):
    X = datasets[family][0]
    at_init = make_estimator(family, X, max_iter=0).fit(X).score(X)  # the explicit initial parameters
    est = make_estimator(family, X)
    est.partial_fit(X[:300])
    first = est.score(X)
    for batch in np.array_split(X[300:], 30):
        est.partial_fit(batch)
    assert est.n_steps_ == 31 and len(est.lower_bounds_) == 31
    assert np.all(np.isfinite(est.lower_bounds_))
    for name in fitted_names(family):
        assert np.all(np.isfinite(getattr(est, name))), name
    assert_allclose(est.weights_.sum(), 1.0, rtol=1e-12)
    last = est.score(X)
    assert at_init < first < last, (at_init, first, last)
    # and it ends near the batch EM optimum from the same start (observed: within 7e-4)
    optimum = make_estimator(family, X, max_iter=200, tol=1e-10).fit(X).score(X)
    assert last == pytest.approx(optimum, rel=2e-3)


@pytest.mark.parametrize("family", FAMILIES)
def test_online_fit_ends_close_to_batch_em(family, datasets):
    X = datasets[family][0]
    kw = dict(random_state=0, n_init=1)
    batch = CLASSES[family](3, **kw).fit(X)
    online = CLASSES[family](3, batch_size=500, **kw).fit(X, algorithm="online", n_passes=3)
    assert online.n_iter_ == 3 and len(online.lower_bounds_) == 3
    assert online.n_steps_ == 3 * (N_ROWS // 500)  # the short tail joins the last batch
    # per-sample log-likelihood within 0.1% of the batch optimum (observed: within 1.4e-4)
    assert online.score(X) == pytest.approx(batch.score(X), rel=1e-3)


@pytest.mark.parametrize("family", FAMILIES)
def test_online_fit_over_a_source_is_bitwise_the_in_memory_one(family, datasets, npy_files):
    """Chunks of BLOCK_ROWS cut into batches of 1024: the same mini-batches as in memory."""
    X = datasets[family][0]
    mem = make_estimator(family, X, batch_size=1024).fit(X, algorithm="online", n_passes=2)
    source = S.NpySource(npy_files[family], chunk_rows=BLOCK_ROWS)
    got = make_estimator(family, X, batch_size=1024).fit(source, algorithm="online", n_passes=2)
    assert_same_fit(got, mem, family)
    assert got.n_steps_ == mem.n_steps_ == 2 * 9


def test_online_fit_of_a_sparse_multinomial_matrix_equals_the_dense_one(datasets):
    sparse = pytest.importorskip("scipy.sparse")
    X = datasets["multinomial"][0]
    dense = make_estimator("multinomial", X, batch_size=1024).fit(X, algorithm="online", n_passes=2)
    got = make_estimator("multinomial", X, batch_size=1024).fit(
        sparse.csr_matrix(X), algorithm="online", n_passes=2
    )
    assert_close_fit(got, dense, "multinomial")


# ============================================================================== 4. checkpoints
@pytest.mark.parametrize("family", ["poisson", "vmf"])
def test_checkpointed_fit_equals_the_plain_fit(family, datasets, references, npy_files, tmp_path):
    X = datasets[family][0]
    got = make_estimator(family, X).fit(X, checkpoint=tmp_path / "mem.ckpt")
    assert_same_fit(got, references[family], family)
    again = make_estimator(family, X).fit(X, checkpoint=tmp_path / "mem.ckpt")  # finished: returned at once
    assert_same_fit(again, references[family], family)
    source = S.NpySource(npy_files[family], chunk_rows=BLOCK_ROWS)
    streamed = make_estimator(family, X).fit(source, checkpoint=tmp_path / "src.ckpt")
    assert_same_fit(streamed, references[family], family)
    online = make_estimator(family, X, batch_size=1024).fit(X, algorithm="online", n_passes=2)
    online_ckpt = make_estimator(family, X, batch_size=1024)
    online_ckpt.fit(X, algorithm="online", n_passes=2, checkpoint=tmp_path / "online.ckpt")
    assert_same_fit(online_ckpt, online, family)
    # another configuration or other data is refused
    with pytest.raises(ValueError, match="max_iter"):
        make_estimator(family, X, max_iter=MAX_ITER + 1).fit(X, checkpoint=tmp_path / "mem.ckpt")
    with pytest.raises(CheckpointMismatchError):
        make_estimator(family, X).fit(X[:-1], checkpoint=tmp_path / "mem.ckpt")


CHILD = textwrap.dedent(
    """
    import os, signal, sys, warnings
    import numpy as np
    from fastem import PoissonMixture, VonMisesFisherMixture
    from fastem.families._linear import LinearFamily
    from fastem.sources import NpySource

    family, data, init, ckpt, out, kill_at, chunk_rows = sys.argv[1:8]
    kill_at = int(kill_at)
    calls = [0]
    real = LinearFamily.accumulate

    def counting(self, *args, **kw):  # one call per chunk of an EM pass
        calls[0] += 1
        if calls[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(self, *args, **kw)

    LinearFamily.accumulate = counting
    warnings.simplefilter("ignore")
    cls = PoissonMixture if family == "poisson" else VonMisesFisherMixture
    with np.load(init) as f:
        kw = {k: f[k] for k in f.files}
    est = cls(3, tol=0.0, max_iter=6, random_state=0, **kw)
    est.fit(NpySource(data, chunk_rows=int(chunk_rows)), checkpoint=ckpt)
    names = ["weights_"] + [k[: -len("init")] for k in kw if k != "weights_init"]
    np.savez(out, lbs=est.lower_bounds_, calls=calls[0], **{n: getattr(est, n) for n in names})
    """
)


@pytest.mark.parametrize("family", ["poisson", "vmf"])
def test_sigkill_mid_pass_then_resume_is_bitwise_identical(family, datasets, tmp_path):
    X = datasets[family][0][: 3 * BLOCK_ROWS]  # three chunks of BLOCK_ROWS per pass
    np.save(tmp_path / "x.npy", X)
    np.savez(tmp_path / "init.npz", **init_kwargs(family, X))
    (tmp_path / "child.py").write_text(CHILD)
    # warm numba's on-disk cache with this very path (a streamed, checkpointed fit), so no child compiles
    make_estimator(family, X, max_iter=2).fit(
        S.NpySource(tmp_path / "x.npy", chunk_rows=BLOCK_ROWS), checkpoint=tmp_path / "warm.ckpt"
    )

    def start(kill_at: int, state: str, out: str) -> subprocess.Popen:
        args = [sys.executable, str(tmp_path / "child.py"), family, str(tmp_path / "x.npy"),
                str(tmp_path / "init.npz"), str(tmp_path / state), str(tmp_path / out), str(kill_at),
                str(BLOCK_ROWS)]  # fmt: skip
        return subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def finish(proc: subprocess.Popen) -> subprocess.CompletedProcess:
        stdout, stderr = proc.communicate(timeout=300)
        return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)

    # The uninterrupted reference also runs in a child: every child then runs the kernels from
    # numba's on-disk cache, as test_checkpoint.py explains.
    # It and the run that is killed in iteration 3 (call 8 of 3 per pass) are independent: run both at once.
    reference, killed = start(0, "ref.ckpt", "ref.npz"), start(8, "state.ckpt", "out.npz")
    reference, killed = finish(reference), finish(killed)
    assert reference.returncode == 0, reference.stderr
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert (tmp_path / "state.ckpt").exists() and not (tmp_path / "out.npz").exists()
    resumed = finish(start(0, "state.ckpt", "out.npz"))
    assert resumed.returncode == 0, resumed.stderr
    ref, got = np.load(tmp_path / "ref.npz"), np.load(tmp_path / "out.npz")
    names = ["lbs", *fitted_names(family)]
    for key in names:
        assert_array_equal(got[key], ref[key], err_msg=key)
    assert ref["calls"] == 6 * 3
    assert 0 < got["calls"] < 6 * 3  # it resumed: the two complete passes were not run again
    # and the streamed, checkpointed fit is the in-memory fit (to rounding)
    mem = CLASSES[family](3, tol=0.0, max_iter=6, random_state=0, **init_kwargs(family, X)).fit(X)
    for key in fitted_names(family):
        assert_allclose(got[key], getattr(mem, key), rtol=RTOL, atol=1e-14, err_msg=key)
    assert_allclose(got["lbs"], mem.lower_bounds_, rtol=RTOL)


# ============================================================================== 5. model files
def _rewrite(path: Path, arrays: dict) -> None:
    """Rewrite a model file with changed arrays and valid checksums (as in test_io.py)."""
    with np.load(path, allow_pickle=False) as npz:
        head = json.loads(npz["header.json"].decode())
        arrs = {k: npz[k] for k in npz.files if k != "header.json"}
    arrs.update(arrays)
    for name, a in arrs.items():
        if name in head["arrays"]:
            head["arrays"][name]["sha256"] = hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()
            head["arrays"][name]["shape"] = list(a.shape)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("header.json", json.dumps(head))
        for name, a in arrs.items():
            buf = io.BytesIO()
            np.save(buf, a, allow_pickle=False)
            zf.writestr(name + ".npy", buf.getvalue())


@pytest.mark.parametrize("family", FAMILIES)
def test_model_file_round_trip_is_exact(family, datasets, references, tmp_path):
    X = datasets[family][0]
    est = references[family]
    path = est.save(tmp_path / "m.npz", data=X)
    loaded = fastem.load(path)
    assert type(loaded) is type(est) and loaded is not est
    for name in fitted_names(family):
        got, want = getattr(loaded, name), getattr(est, name)
        assert got.dtype == want.dtype and got.shape == want.shape, name
        assert_array_equal(got, want, err_msg=name)
    assert loaded.lower_bounds_ == est.lower_bounds_
    assert (loaded.converged_, loaded.n_iter_, loaded.lower_bound_, loaded.n_features_in_) == (
        est.converged_, est.n_iter_, est.lower_bound_, est.n_features_in_,
    )  # fmt: skip
    want_params, got_params = est.get_params(), loaded.get_params()
    for key in ("weights_init", *(f"{name}_init" for name in PARAMS[family])):
        assert_array_equal(got_params.pop(key), want_params.pop(key), err_msg=key)
    assert got_params == want_params
    assert_array_equal(loaded.predict(X), est.predict(X))
    assert_array_equal(loaded.predict_proba(X), est.predict_proba(X))
    assert_array_equal(loaded.score_samples(X), est.score_samples(X))
    # the rewrite helper alone keeps a valid file, so the refusals below come from their one change
    _rewrite(path, {})
    assert_array_equal(fastem.load(path).predict(X), est.predict(X))


def test_vmf_model_file_keeps_normalize(datasets, tmp_path):
    X = datasets["vmf"][0]
    est = make_estimator("vmf", X, normalize=True, max_iter=2).fit(2.0 * X)
    loaded = fastem.load(est.save(tmp_path / "m.npz"))
    assert loaded.normalize is True
    assert_array_equal(loaded.predict(2.0 * X), est.predict(2.0 * X))


def _negative_rate(a):
    r = a["rates_"].copy()
    r[1, 2] = -r[1, 2]
    return {"rates_": r}


def _zero_rate(a):
    r = a["rates_"].copy()
    r[0, 0] = 0.0
    return {"rates_": r}


def _probability_above_one(a):
    p = a["probabilities_"].copy()
    p[2, 1] = 1.5
    return {"probabilities_": p}


def _probability_zero(a):
    p = a["probabilities_"].copy()
    p[0, 3] = 0.0
    return {"probabilities_": p}


def _multinomial_rows_off(a):
    return {"probabilities_": a["probabilities_"] * 1.1}


def _multinomial_negative(a):
    p = a["probabilities_"].copy()
    p[1, 0], p[1, 1] = -p[1, 0], p[1, 1] + 2 * p[1, 0]  # rows still sum to 1
    return {"probabilities_": p}


def _non_unit_direction(a):
    m = a["mean_directions_"].copy()
    m[1] *= 1.1
    return {"mean_directions_": m}


def _negative_concentration(a):
    c = a["concentrations_"].copy()
    c[2] = -1.0
    return {"concentrations_": c}


def _nan_rate(a):
    r = a["rates_"].copy()
    r[0, 1] = np.nan
    return {"rates_": r}


def _weights_off(a):
    return {"weights_": a["weights_"] * 1.01}


@pytest.mark.parametrize(
    "family, change, message",
    [
        ("poisson", _negative_rate, "rates must be > 0"),
        ("poisson", _zero_rate, "rates must be > 0"),
        ("poisson", _nan_rate, "NaN"),
        ("bernoulli", _probability_above_one, r"in \(0, 1\)"),
        ("bernoulli", _probability_zero, r"in \(0, 1\)"),
        ("multinomial", _multinomial_rows_off, "summing to 1"),
        ("multinomial", _multinomial_negative, "positive rows"),
        ("vmf", _non_unit_direction, "unit vectors"),
        ("vmf", _negative_concentration, "concentrations must be >= 0"),
        ("vmf", _weights_off, "sum to 1"),
    ],
)
def test_damaged_parameters_with_valid_checksums_are_refused(family, change, message, references, tmp_path):
    path = references[family].save(tmp_path / "m.npz")
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files if k != "header.json"}
    _rewrite(path, change(arrays))
    with pytest.raises(ModelFileError, match=message):
        fastem.load(path)


# ------------------------------------------------------------------ scipy.sparse CSR on the executors
@pytest.fixture(scope="module")
def csr_fit(datasets):
    """(dense X, CSR X, a MultinomialMixture fitted on the CSR matrix)."""
    sparse = pytest.importorskip("scipy.sparse")
    X = datasets["multinomial"][0]
    C = sparse.csr_matrix(X)
    return X, C, make_estimator("multinomial", X).fit(C)


def test_checkpointed_fit_of_a_sparse_matrix(csr_fit, tmp_path):
    X, C, plain = csr_fit
    got = make_estimator("multinomial", X).fit(C, checkpoint=tmp_path / "csr.ckpt")
    assert_same_fit(got, plain, "multinomial")


def test_model_file_records_sparse_training_data(csr_fit, tmp_path):
    X, C, est = csr_fit
    loaded = fastem.load(est.save(tmp_path / "m.npz", data=C))
    assert_array_equal(loaded.predict(C), est.predict(X))


def test_predict_of_a_sparse_matrix_to_an_npy_file(csr_fit, tmp_path):
    X, C, est = csr_fit
    got = est.predict(C, out=tmp_path / "labels.npy")
    assert_array_equal(got, est.predict(X))


# ============================================================================== 6. parameter recovery
def _best_permutation(est_arrays: np.ndarray, true_arrays: np.ndarray) -> tuple[int, ...]:
    """The order of the fitted components that best matches the true ones (least squares)."""
    K = len(true_arrays)
    return min(
        itertools.permutations(range(K)),
        key=lambda perm: sum(np.sum((est_arrays[perm[k]] - true_arrays[k]) ** 2) for k in range(K)),
    )


#: (weights atol, {parameter: (atol, rtol)}) at 20_000 rows: about twice the errors observed (weights
#: 0.008, rates 1.7%, Bernoulli 0.013, multinomial 0.001, directions 0.010, kappa 0.8%) and far below
#: the distances between the true components (rates by units, Bernoulli by ~0.7, multinomial by
#: ~0.03, orthogonal directions), so a wrong E-step or M-step fails
RECOVERY = {
    "poisson": (0.02, {"rates": (0.0, 0.04)}),
    "bernoulli": (0.02, {"probabilities": (0.025, 0.0)}),
    "multinomial": (0.02, {"probabilities": (0.003, 0.0)}),
    "vmf": (0.02, {"mean_directions": (0.02, 0.0), "concentrations": (0.0, 0.05)}),
}


@pytest.mark.parametrize("family", FAMILIES)
def test_parameters_are_recovered_with_the_default_initialisation(family):
    X, labels, (true_weights, truth) = REGISTRY[family]["make"](20_000, seed=7)
    if family == "vmf":
        # the generator's 1 / sigma^2 is only the small-noise value: the true concentration of each
        # cluster is that of its own rows (mean resultant length -> kappa, by the oracle's solver)
        truth = dict(truth)
        truth["concentrations"] = np.array(
            [vmf_concentration(X.shape[1], np.linalg.norm(X[labels == k].mean(axis=0))) for k in range(3)]
        )
        assert_allclose(truth["concentrations"], 1 / VMF_SIGMA**2, rtol=0.2)  # near the generator's value
    est = CLASSES[family](3, n_init=3, random_state=0).fit(X)  # init_params="kmeans" and tol by default
    assert est.converged_
    first = PARAMS[family][0]
    perm = list(_best_permutation(getattr(est, f"{first}_"), truth[first]))
    weights_atol, tolerances = RECOVERY[family]
    assert_allclose(est.weights_[perm], true_weights, atol=weights_atol, rtol=0)
    for name, (atol, rtol) in tolerances.items():
        assert_allclose(getattr(est, f"{name}_")[perm], truth[name], atol=atol, rtol=rtol, err_msg=name)
    # most points are assigned to the component of their cluster
    assert np.mean(np.argsort(perm)[est.predict(X)] == labels) > 0.9
