"""``missing="marginalize"`` end to end: estimators, sources, Dask, online EM, checkpoints, model files, CLI.

The Gaussian fits are checked against the row-by-row plain-NumPy reference of
``tests/reference_missing.py`` (1, 10 and 50 iterations from given initial
parameters, every covariance type, with and without sample weights, 1e-10
relative); Poisson and Bernoulli fits against ``tests/reference_missing_expfam.py``.
Everything else is checked against the in-memory fit, and the messages for
bad input against what they must say.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import reference as ref
import reference_missing as refm
import reference_missing_expfam as refx
from conftest import make_mixture
from model_files import rewrite_header
from numpy.testing import assert_allclose, assert_array_equal

import fastem
from fastem import GaussianMixture, cli
from fastem.checkpoint import CheckpointMismatchError
from fastem.io import ModelFileError, read_header
from fastem.mixture import BernoulliMixture, MultinomialMixture, PoissonMixture
from fastem.sources import NpySource

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

RTOL = 1e-10
COV_TYPES = ref.COV_TYPES
FITTED = ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_")
#: rows whose points start the three components (one in each cluster of ``holes``)
INIT_ROWS = (0, 1, 3)


def with_holes(X, rate=0.2, seed=3):
    """A copy of X with each entry missing with probability ``rate`` (every row keeps an entry)."""
    return refm.mcar(X, rate, np.random.RandomState(seed))


@pytest.fixture(scope="module")
def holes():
    """(complete X, X with 20% MCAR entries): 240 x 3, three correlated clusters."""
    X, _ = make_mixture(240, seed=21)
    return X, with_holes(X)


@pytest.fixture(scope="module")
def big_holes():
    """3 * 4096 + 321 rows with 20% MCAR entries: several blocks and chunks."""
    X, _ = make_mixture(3 * 4096 + 321, seed=8)
    return with_holes(X, seed=9)


def _init(X, cov_type):
    """Initial parameters from the complete rows (means at three data points, the data covariance)."""
    return ref.explicit_init(X, INIT_ROWS, cov_type)


def _assert_close(got, expected, rtol=RTOL):
    assert_allclose(got, expected, rtol=rtol, atol=rtol * np.abs(expected).max())


def _assert_same_fit(got, expected, rtol=0.0):
    for name in FITTED + ("lower_bounds_",):
        a, b = np.asarray(getattr(got, name)), np.asarray(getattr(expected, name))
        if rtol == 0.0:
            assert_array_equal(a, b, err_msg=name)
        else:
            assert_allclose(a, b, rtol=rtol, atol=rtol * np.abs(b).max(), err_msg=name)


def _marginal(cov_type, init, **kw):
    kw = {"tol": 0.0, **kw}
    return GaussianMixture(3, covariance_type=cov_type, missing="marginalize", **init["kwargs"], **kw)


# ============================================================================ against the reference
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "sample_weight"])
@pytest.mark.parametrize("n_iter", [1, 10, 50])
def test_fit_equals_the_row_by_row_reference(holes, cov_type, n_iter, weighted):
    X, Xm = holes
    sw = np.random.default_rng(5).uniform(0.1, 3.0, len(X)) if weighted else None
    init = _init(X, cov_type)
    gm = _marginal(cov_type, init, max_iter=n_iter).fit(Xm, sample_weight=sw)
    (w, m, c), lower_bounds = refm.em_missing(
        Xm, init["weights"], init["means"], init["covariances"], cov_type, n_iter, 1e-6, sample_weight=sw
    )
    assert gm.n_iter_ == n_iter and len(gm.lower_bounds_) == n_iter
    _assert_close(gm.weights_, w)
    _assert_close(gm.means_, m)
    _assert_close(gm.covariances_, c)
    _assert_close(np.array(gm.lower_bounds_), np.array(lower_bounds))
    # the observed-data log-likelihood never decreases (EM's free energy)
    steps = np.diff(gm.lower_bounds_)
    assert np.all(steps >= -1e-12 * np.abs(gm.lower_bounds_[1:])), steps.min()
    # prediction with holes: the marginal densities and responsibilities of the observed entries
    log_prob, resp, _, _ = refm.e_step_missing(Xm, w, m, c, cov_type)
    _assert_close(gm.score_samples(Xm), log_prob)
    _assert_close(gm.predict_proba(Xm), resp)
    assert_array_equal(gm.predict(Xm), resp.argmax(axis=1))
    assert_allclose(gm.score(Xm), log_prob.mean(), rtol=RTOL)
    _assert_close(gm.impute(Xm), refm.impute_reference(Xm, w, m, c, cov_type))


def test_without_nan_the_fit_is_bitwise_the_fit_of_missing_error(X, cov_type):
    plain = GaussianMixture(3, covariance_type=cov_type, random_state=0, max_iter=20).fit(X)
    marginal = GaussianMixture(
        3, covariance_type=cov_type, random_state=0, max_iter=20, missing="marginalize"
    )
    marginal.fit(X)
    _assert_same_fit(marginal, plain)
    assert_array_equal(marginal.predict_proba(X), plain.predict_proba(X))
    assert_array_equal(marginal.score_samples(X), plain.score_samples(X))
    assert_array_equal(marginal.impute(X), X)


# ============================================================================ what marginalising buys
def _six_dimensional_mixture(n_samples, seed):
    """(X, true means, true covariances): three well-separated correlated clusters in 6-D.

    The parameters are fixed (means 10 to 16 apart, covariances A A^T / 6 + I / 2);
    ``seed`` draws the rows.
    """
    fixed = np.random.default_rng(0)
    means = fixed.normal(scale=4.0, size=(3, 6))
    A = fixed.normal(size=(3, 6, 6))
    covariances = np.einsum("kij,klj->kil", A, A) / 6 + 0.5 * np.eye(6)
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n_samples)
    X = np.stack([rng.multivariate_normal(means[k], covariances[k]) for k in labels])
    return X, means, covariances


def _errors(gm, true_means, true_covariances):
    """(mean distance of the means, mean relative Frobenius error of the covariances), matched by mean."""
    order = [int(np.argmin(np.linalg.norm(gm.means_ - mu, axis=1))) for mu in true_means]
    assert sorted(order) == [0, 1, 2]
    means, cov = gm.means_[order], gm.covariances_[order]
    relative = [np.linalg.norm(c - t) / np.linalg.norm(t) for c, t in zip(cov, true_covariances, strict=True)]
    return np.linalg.norm(means - true_means, axis=1).mean(), np.mean(relative)


def test_marginalising_recovers_the_mixture_better_than_dropping_incomplete_rows():
    # 20% of the entries missing completely at random: only about 0.8^6 = 26% of the rows are
    # complete. Averaged over three data sets of 1000 rows.
    kw = dict(covariance_type="full", random_state=0, n_init=3)
    marginal, dropped = [], []
    for seed in range(3):
        X, true_means, true_cov = _six_dimensional_mixture(1000, seed)
        Xm = with_holes(X, 0.2, seed=100 + seed)
        complete = Xm[~np.isnan(Xm).any(axis=1)]
        assert 0.2 < len(complete) / len(X) < 0.32
        marginal.append(
            _errors(GaussianMixture(3, missing="marginalize", **kw).fit(Xm), true_means, true_cov)
        )
        dropped.append(_errors(GaussianMixture(3, **kw).fit(complete), true_means, true_cov))
    (m_means, m_cov), (d_means, d_cov) = np.mean(marginal, axis=0), np.mean(dropped, axis=0)
    # measured: means 0.158 from the truth (marginalize) vs 0.295 (complete rows only), covariances
    # 0.157 vs 0.314 relative (Frobenius)
    assert m_means < 0.75 * d_means, (marginal, dropped)
    assert m_cov < 0.75 * d_cov, (marginal, dropped)


def test_impute_beats_column_means():
    X, _, _ = _six_dimensional_mixture(1000, 0)
    Xm = with_holes(X, 0.2, seed=100)
    hole = np.isnan(Xm)
    gm = GaussianMixture(3, random_state=0, n_init=3, missing="marginalize").fit(Xm)
    filled = gm.impute(Xm)
    assert not np.isnan(filled).any()
    assert_array_equal(filled[~hole], X[~hole])  # observed entries are left alone
    assert np.isnan(Xm).sum() == hole.sum()  # and the input is not modified
    column_means = np.where(hole, np.nanmean(Xm, axis=0), Xm)
    rmse = np.sqrt(np.mean((filled[hole] - X[hole]) ** 2))
    rmse_columns = np.sqrt(np.mean((column_means[hole] - X[hole]) ** 2))
    # measured: 1.31 (conditional means under the mixture) vs 3.39 (column means)
    assert rmse < 0.5 * rmse_columns, (rmse, rmse_columns)


def test_impute_works_for_a_model_fitted_with_missing_error(holes):
    X, Xm = holes
    init = _init(X, "full")
    gm = GaussianMixture(3, tol=0.0, max_iter=5, **init["kwargs"]).fit(X)
    assert gm.missing == "error"
    (w, m, c) = gm.weights_, gm.means_, gm.covariances_
    _assert_close(gm.impute(Xm), refm.impute_reference(Xm, w, m, c, "full"))
    with pytest.raises(ValueError, match=r"row \d+, column \d+.*missing='marginalize'"):
        gm.predict(Xm)  # scoring with holes is the setting's business


def test_impute_keeps_float32():
    X, _ = make_mixture(300, seed=2)
    Xm = with_holes(X).astype(np.float32)
    gm = GaussianMixture(3, random_state=0, missing="marginalize").fit(Xm)
    filled = gm.impute(Xm)
    assert filled.dtype == np.float32 and not np.isnan(filled).any()


# ============================================================================ sources, Dask, online
def _fitted_from(data, init, sample_weight=None, **kw):
    gm = _marginal("full", init, max_iter=4, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return gm.fit(data, sample_weight=sample_weight)


def test_npy_source_with_nan_equals_in_memory_bitwise(tmp_path, big_holes):
    Xm = big_holes
    np.save(tmp_path / "x.npy", Xm)
    init = _init(np.nan_to_num(Xm), "full")
    sw = np.random.default_rng(1).uniform(0.5, 2.0, len(Xm))
    memory = _fitted_from(Xm, init, sw)
    for chunk_rows in (4096, 8192):  # multiples of BLOCK_ROWS: the same sums in the same order
        streamed = _fitted_from(NpySource(tmp_path / "x.npy", chunk_rows=chunk_rows), init, sw)
        _assert_same_fit(streamed, memory)
    odd = _fitted_from(NpySource(tmp_path / "x.npy", chunk_rows=1000), init, sw)
    _assert_same_fit(odd, memory, rtol=1e-12)
    path = str(tmp_path / "x.npy")
    assert_array_equal(memory.predict(path), memory.predict(Xm))
    assert_array_equal(memory.score_samples(path), memory.score_samples(Xm))
    assert memory.score(path) == pytest.approx(memory.score(Xm), rel=1e-12)
    assert_array_equal(memory.impute(path), memory.impute(Xm))
    out = memory.impute(path, out=tmp_path / "filled.npy")
    assert_array_equal(out, memory.impute(Xm))
    assert_array_equal(np.load(tmp_path / "filled.npy"), memory.impute(Xm))


@pytest.mark.parametrize("kind", ["hdf5", "zarr"])
def test_hdf5_and_zarr_with_nan_equal_in_memory_bitwise(tmp_path, big_holes, kind):
    from fastem.sources import HDF5Source, ZarrSource

    Xm = big_holes
    if kind == "hdf5":
        h5py = pytest.importorskip("h5py")
        with h5py.File(tmp_path / "x.h5", "w") as f:
            f.create_dataset("points", data=Xm, chunks=(1000, 3))
        source = HDF5Source(tmp_path / "x.h5", "points", chunk_rows=4096)
    else:
        zarr = pytest.importorskip("zarr")
        z = zarr.open_array(
            str(tmp_path / "x.zarr"), mode="w", shape=Xm.shape, chunks=(3000, 3), dtype=Xm.dtype
        )
        z[:] = Xm
        source = ZarrSource(tmp_path / "x.zarr", chunk_rows=4096)
    init = _init(np.nan_to_num(Xm), "full")
    _assert_same_fit(_fitted_from(source, init), _fitted_from(Xm, init))


def test_npy_source_with_nan_under_missing_error_names_the_file_and_row(tmp_path, big_holes):
    np.save(tmp_path / "x.npy", big_holes)
    row = int(np.flatnonzero(np.isnan(big_holes).any(axis=1))[0])
    column = int(np.flatnonzero(np.isnan(big_holes[row]))[0])
    with pytest.raises(ValueError, match=rf"x.npy' contains NaN at row {row}, column {column} .*missing="):
        GaussianMixture(3).fit(tmp_path / "x.npy")


def _csv_with_empty_fields(path, Xm, markers=("", "nan", "NA")):
    """A CSV file with a header, NaN written as an empty field, 'nan' or 'NA' in turn."""
    lines = ["a,b,c"]
    n = 0
    for row in Xm:
        fields = []
        for v in row:
            if np.isnan(v):
                fields.append(markers[n % len(markers)])
                n += 1
            else:
                fields.append(repr(float(v)))
        lines.append(",".join(fields))
    path.write_text("\n".join(lines) + "\n")


def test_csv_with_empty_fields_and_null_markers_equals_in_memory(tmp_path, holes):
    pytest.importorskip("pyarrow")
    X, Xm = holes
    _csv_with_empty_fields(tmp_path / "x.csv", Xm)
    assert ",," in (tmp_path / "x.csv").read_text()
    init = _init(X, "full")
    memory = _fitted_from(Xm, init)
    streamed = _fitted_from(str(tmp_path / "x.csv"), init)
    _assert_same_fit(streamed, memory, rtol=1e-12)
    assert list(streamed.feature_names_in_) == ["a", "b", "c"]
    assert_array_equal(streamed.predict(str(tmp_path / "x.csv")), memory.predict(Xm))
    # under missing="error" the message names the line of the file
    first = int(np.flatnonzero(np.isnan(Xm).any(axis=1))[0])
    with pytest.raises(
        ValueError, match=rf"x.csv' contains NaN at row {first}, .*line {first + 2} of the file"
    ):
        GaussianMixture(3).fit(str(tmp_path / "x.csv"))


def test_parquet_with_nulls_equals_in_memory(tmp_path, holes):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    X, Xm = holes
    columns = {
        name: pa.array(np.where(np.isnan(col), 0.0, col), mask=np.isnan(col))  # nulls, not NaN
        for name, col in zip("abc", Xm.T, strict=True)
    }
    table = pa.table(columns)
    assert table.column("a").null_count == int(np.isnan(Xm[:, 0]).sum()) > 0
    pq.write_table(table, tmp_path / "x.parquet", row_group_size=100)
    init = _init(X, "full")
    memory = _fitted_from(Xm, init)
    streamed = _fitted_from(str(tmp_path / "x.parquet"), init)
    _assert_same_fit(streamed, memory, rtol=1e-12)
    _assert_close(streamed.impute(str(tmp_path / "x.parquet")), memory.impute(Xm))


def test_partial_fit_with_holes(holes):
    X, Xm = holes
    init = _init(X, "diag")
    # a first partial_fit takes its batch's statistics as they are: one EM step
    online = _marginal("diag", init).partial_fit(Xm)
    batch = _marginal("diag", init, max_iter=1).fit(Xm)
    for name in ("weights_", "means_", "covariances_"):
        _assert_close(getattr(online, name), getattr(batch, name), rtol=1e-12)
    for start in range(0, len(Xm), 60):
        online.partial_fit(Xm[start : start + 60])
    assert online.n_steps_ == 5 and np.all(np.isfinite(online.covariances_))
    with pytest.raises(ValueError, match="missing='marginalize'"):
        GaussianMixture(3, **init["kwargs"], covariance_type="diag").partial_fit(Xm)
    stepwise = GaussianMixture(3, random_state=0, batch_size=64, missing="marginalize")
    stepwise.fit(Xm, algorithm="online", n_passes=3)
    assert len(stepwise.lower_bounds_) == 3 and np.all(np.isfinite(stepwise.lower_bounds_))


@pytest.mark.filterwarnings("ignore:Port .* is already in use")
def test_dask_equals_in_memory(holes):
    da = pytest.importorskip("dask.array")
    distributed = pytest.importorskip("distributed")
    X, Xm = holes
    init = _init(X, "full")
    sw = np.random.default_rng(2).uniform(0.5, 2.0, len(Xm))
    memory = _fitted_from(Xm, init, sw)
    memory.predict_proba(Xm)  # compiled here first: the spawned workers read numba's cache
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster),
    ):
        dX = da.from_array(Xm, chunks=(70, 3))
        dsw = da.from_array(sw, chunks=70)
        on_dask = _fitted_from(dX, init, dsw)
        _assert_same_fit(on_dask, memory, rtol=1e-12)
        _assert_close(np.asarray(memory.predict_proba(dX)), memory.predict_proba(Xm), rtol=1e-12)
        with pytest.raises(ValueError, match=r"contains NaN at row \d+.*missing='marginalize'"):
            GaussianMixture(3, **init["kwargs"]).fit(dX)


# ============================================================================ checkpoints and model files
class _Interrupt(Exception):
    pass


def test_checkpoint_round_trip_and_a_changed_setting_is_refused(tmp_path, holes):
    X, Xm = holes
    init = _init(X, "full")
    ckpt = tmp_path / "fit.ckpt"
    plain = _marginal("full", init, max_iter=8).fit(Xm)

    def stop_at_5(it):
        if it.n_iter == 5:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        _marginal("full", init, max_iter=8).fit(Xm, checkpoint=ckpt, callbacks=stop_at_5)
    resumed = _marginal("full", init, max_iter=8).fit(Xm, checkpoint=ckpt)
    _assert_same_fit(resumed, plain)
    meta = json.loads(str(np.load(ckpt)["__meta__"]))
    assert meta["config"]["missing"] == "marginalize"
    assert meta["config"]["family_missing"] == "marginalize"
    with pytest.raises(
        CheckpointMismatchError, match="written by a fit with missing='marginalize'.*missing='error'"
    ):
        GaussianMixture(3, tol=0.0, max_iter=8, **init["kwargs"]).fit(X, checkpoint=ckpt)


def test_checkpoint_written_before_the_setting_existed_resumes_as_error(tmp_path, X):
    ckpt = tmp_path / "old.ckpt"
    gm = GaussianMixture(3, random_state=0, max_iter=3).fit(X, checkpoint=ckpt)
    with np.load(ckpt) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays.pop("__meta__")))
    del meta["config"]["missing"]
    np.savez(ckpt, __meta__=np.array(json.dumps(meta)), **arrays)
    again = GaussianMixture(3, random_state=0, max_iter=3).fit(X, checkpoint=ckpt)
    _assert_same_fit(again, gm)
    with pytest.raises(
        CheckpointMismatchError, match="missing='error', but this fit has missing='marginalize'"
    ):
        GaussianMixture(3, random_state=0, max_iter=3, missing="marginalize").fit(X, checkpoint=ckpt)


def test_model_file_stores_the_setting(tmp_path, holes):
    X, Xm = holes
    gm = GaussianMixture(3, random_state=0, missing="marginalize").fit(Xm)
    gm.save(tmp_path / "m.npz")
    header = read_header(tmp_path / "m.npz")
    assert header["missing"] == "marginalize" and header["hyperparameters"]["missing"] == "marginalize"
    loaded = fastem.load(tmp_path / "m.npz")
    assert loaded.missing == "marginalize"
    assert_array_equal(loaded.predict_proba(Xm), gm.predict_proba(Xm))
    assert_array_equal(loaded.impute(Xm), gm.impute(Xm))
    # a file whose header and hyper-parameters disagree is refused
    rewrite_header(tmp_path / "m.npz", lambda h: h.pop("missing"))
    with pytest.raises(ModelFileError, match="missing"):
        fastem.load(tmp_path / "m.npz")


def test_model_file_written_before_the_setting_existed_loads_as_error(tmp_path, X):
    gm = GaussianMixture(3, random_state=0).fit(X)
    gm.save(tmp_path / "old.npz")
    assert "missing" not in read_header(tmp_path / "old.npz")  # the family's config says nothing
    rewrite_header(tmp_path / "old.npz", lambda h: h["hyperparameters"].pop("missing"))
    loaded = fastem.load(tmp_path / "old.npz")
    assert loaded.missing == "error"
    assert_array_equal(loaded.predict(X), gm.predict(X))
    rewrite_header(tmp_path / "old.npz", lambda h: h["hyperparameters"].update(missing="drop"))
    with pytest.raises(ModelFileError, match="Allowed values are"):
        fastem.load(tmp_path / "old.npz")


# ============================================================================ the command line
def _call(capsys, *args):
    code = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_missing_marginalize_round_trip(tmp_path, capsys, holes):
    X, Xm = holes
    np.save(tmp_path / "holes.npy", Xm)
    _csv_with_empty_fields(tmp_path / "holes.csv", Xm)
    code, _, err = _call(capsys, "fit", tmp_path / "holes.npy", "-k", 3, "--out", tmp_path / "m.npz")
    assert code == 1 and "contains NaN at row" in err and "add --missing marginalize" in err, err
    code, out, err = _call(capsys, "fit", tmp_path / "holes.npy", "-k", 3, "--missing", "marginalize",
                           "--seed", 4, "--out", tmp_path / "m.npz")  # fmt: skip
    assert code == 0, err
    gm = fastem.load(tmp_path / "m.npz")
    assert gm.missing == "marginalize"
    code, out, _ = _call(capsys, "info", tmp_path / "m.npz")
    assert code == 0 and "missing values:  marginalize" in out
    same = GaussianMixture(3, random_state=4, missing="marginalize").fit(Xm)
    assert_array_equal(gm.means_, same.means_)
    code, _, err = _call(
        capsys, "predict", tmp_path / "m.npz", tmp_path / "holes.csv", "--out", tmp_path / "l.npy"
    )
    assert code == 0, err
    assert_array_equal(np.load(tmp_path / "l.npy"), same.predict(Xm))
    code, out, err = _call(capsys, "impute", tmp_path / "m.npz", tmp_path / "holes.npy", "--out",
                           tmp_path / "filled.npy")  # fmt: skip
    assert code == 0, err
    assert_array_equal(np.load(tmp_path / "filled.npy"), same.impute(Xm))
    code, out, err = _call(capsys, "impute", tmp_path / "m.npz", tmp_path / "holes.csv", "--out",
                           tmp_path / "filled.csv")  # fmt: skip
    assert code == 0, err
    assert_allclose(np.loadtxt(tmp_path / "filled.csv", delimiter=","), same.impute(Xm), rtol=1e-15)
    # a model fitted without holes scores rows with holes when told to
    GaussianMixture(3, random_state=0).fit(X).save(tmp_path / "plain.npz")
    code, _, err = _call(capsys, "score", tmp_path / "plain.npz", tmp_path / "holes.npy")
    assert code == 1 and "add --missing marginalize" in err
    code, out, err = _call(capsys, "score", tmp_path / "plain.npz", tmp_path / "holes.npy", "--missing",
                           "marginalize", "--json")  # fmt: skip
    assert code == 0, err
    assert np.isfinite(json.loads(out)["mean_log_likelihood"])


def test_cli_missing_is_refused_for_families_without_it(tmp_path, capsys):
    np.save(tmp_path / "counts.npy", np.ones((20, 3)))
    args = ("--family", "multinomial", "--missing", "marginalize", "--out", tmp_path / "m.npz")
    code, _, err = _call(capsys, "fit", tmp_path / "counts.npy", "-k", 2, *args)
    assert code == 2 and "--missing only applies to --family gaussian, poisson, bernoulli" in err


# ============================================================================ messages
def test_messages_name_the_place_and_the_fix(holes):
    X, Xm = holes
    marginal = GaussianMixture(3, missing="marginalize")
    bad = Xm.copy()
    bad[7, 2] = np.inf
    with pytest.raises(ValueError, match=r"Input X contains infinity at row 7, column 2 \(counted from 0"):
        marginal.fit(bad)
    bad = Xm.copy()
    bad[11] = np.nan
    with pytest.raises(ValueError, match=r"row 11 \(counted from 0.*Drop the rows with no observed value"):
        marginal.fit(bad)
    first = int(np.flatnonzero(np.isnan(Xm).any(axis=1))[0])
    message = (
        rf"Input X contains NaN at row {first}, column \d \(counted from 0; the first non-finite value\)\. "
        r"Remove or impute NaN and inf values before calling fastem\. To treat NaN as a missing entry "
        r"instead, pass missing='marginalize'"
    )
    with pytest.raises(ValueError, match=message):
        GaussianMixture(3).fit(Xm)
    allowed = r"Invalid value for 'missing': 'drop'\. Allowed values are \['error', 'marginalize'\]"
    with pytest.raises(ValueError, match=allowed):
        GaussianMixture(3, missing="drop").fit(X)
    with pytest.raises(ValueError, match="Invalid value for 'missing'"):
        PoissonMixture(2, missing=True).fit(np.ones((4, 2)))
    counts = np.ones((5, 3))
    counts[3, 0] = np.nan
    with pytest.raises(ValueError, match=r"NaN at row 3, column 0 .*pass missing='marginalize'"):
        PoissonMixture(2).fit(counts)
    with pytest.raises(ValueError, match="mean and covariance of the data.*GaussianPrior"):
        GaussianMixture(3, missing="marginalize", prior="mclust").fit(Xm)
    # the families that cannot marginalise take no such parameter, and get no such hint
    assert "missing" not in MultinomialMixture().get_params()
    counts = np.ones((5, 3))
    counts[2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN at row 2") as info:
        MultinomialMixture(2).fit(counts)
    assert "missing=" not in str(info.value)


def test_sklearn_tags_say_whether_nan_is_allowed():
    assert GaussianMixture(missing="marginalize").__sklearn_tags__().input_tags.allow_nan
    assert not GaussianMixture().__sklearn_tags__().input_tags.allow_nan


# ============================================================================ Poisson and Bernoulli
def _counts_with_holes(family, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 300)
    if family == "poisson":
        means = np.array([[1.0, 6.0, 2.0, 9.0], [7.0, 1.5, 5.0, 0.5]])
        X = rng.poisson(means[labels]).astype(float)
    else:
        means = np.array([[0.9, 0.2, 0.7, 0.1], [0.2, 0.8, 0.3, 0.6]])
        X = (rng.random((300, 4)) < means[labels]).astype(float)
    Xm = with_holes(X, 0.25, seed=seed + 1)
    return X, Xm, means


@pytest.mark.parametrize("family", ["poisson", "bernoulli"])
@pytest.mark.parametrize("n_iter", [1, 10, 50])
def test_poisson_and_bernoulli_equal_the_reference(family, n_iter):
    X, Xm, means = _counts_with_holes(family)
    sw = np.random.default_rng(3).uniform(0.2, 2.0, len(X))
    weights0 = np.array([0.4, 0.6])
    means0 = np.clip(means + 0.1 * np.array([[1, -1, 1, -1], [-1, 1, -1, 1]]), 0.05, None)
    means0 = np.minimum(means0, 0.95) if family == "bernoulli" else means0
    cls, name = (PoissonMixture, "rates") if family == "poisson" else (BernoulliMixture, "probabilities")
    gm = cls(
        2, tol=0.0, max_iter=n_iter, weights_init=weights0, missing="marginalize", **{f"{name}_init": means0}
    )
    gm.fit(Xm, sample_weight=sw)
    w, m, history = refx.em(family, Xm, sw, weights0, means0, n_iter)
    _assert_close(gm.weights_, w)
    _assert_close(getattr(gm, f"{name}_"), m)
    _assert_close(np.array(gm.lower_bounds_), np.array(history) / sw.sum())
    _assert_close(gm.impute(Xm), refx.impute(family, Xm, w, m))
    # without NaN the same fit as missing="error", bit for bit
    plain = cls(2, tol=0.0, max_iter=n_iter, weights_init=weights0, **{f"{name}_init": means0}).fit(X)
    marginal = cls(2, tol=0.0, max_iter=n_iter, weights_init=weights0, missing="marginalize",
                   **{f"{name}_init": means0}).fit(X)  # fmt: skip
    assert_array_equal(getattr(marginal, f"{name}_"), getattr(plain, f"{name}_"))
    assert_array_equal(marginal.lower_bounds_, plain.lower_bounds_)
