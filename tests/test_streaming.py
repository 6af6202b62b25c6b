"""Streaming EM over data sources: parity with the in-memory fit, outputs, bad input, progress."""

from __future__ import annotations

import os
import sys
import warnings

import numpy as np
import pytest
from conftest import make_mixture
from numpy.testing import assert_allclose, assert_array_equal

from fastem import BLOCK_ROWS, GaussianMixture
from fastem import sources as S
from fastem.families.gaussian import GaussianStats as SufficientStats
from fastem.families.gaussian import accumulate_chunk

N_ROWS = 2 * BLOCK_ROWS + 333  # three blocks, the last one partial
FIT = dict(n_components=3, random_state=0, tol=0.0, max_iter=6)
ATTRS = ("weights_", "means_", "covariances_", "precisions_cholesky_")


@pytest.fixture(scope="module")
def data():
    return make_mixture(N_ROWS, seed=11)[0]


@pytest.fixture(scope="module")
def reference(data):
    """The in-memory fit every source must reproduce, one per covariance type."""
    out = {}
    for kind in ("full", "diag"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out[kind] = GaussianMixture(covariance_type=kind, **FIT).fit(data)
    return out


def _fit(X, kind="full", sample_weight=None, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tol=0: the ConvergenceWarning is expected
        return GaussianMixture(covariance_type=kind, **{**FIT, **kw}).fit(X, sample_weight=sample_weight)


def _assert_same_fit(a, b):
    for name in ATTRS:
        assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.lower_bounds_ == b.lower_bounds_


# ---------------------------------------------------------------- one maker per format
def _npy(tmp, X, chunk_rows):
    np.save(tmp / "x.npy", X)
    return S.NpySource(tmp / "x.npy", chunk_rows=chunk_rows)


def _raw(tmp, X, chunk_rows):
    X.astype("<f8").tofile(tmp / "x.bin")
    return S.RawSource(tmp / "x.bin", "<f8", (-1, X.shape[1]), chunk_rows=chunk_rows)


def _hdf5(tmp, X, chunk_rows):
    import h5py

    with h5py.File(tmp / "x.h5", "w") as f:
        f.create_dataset("group/points", data=X, chunks=(1000, X.shape[1]))
    return S.HDF5Source(tmp / "x.h5", "group/points", chunk_rows=chunk_rows)


def _zarr(tmp, X, chunk_rows):
    import zarr

    z = zarr.open_array(
        str(tmp / "x.zarr"), mode="w", shape=X.shape, chunks=(3000, X.shape[1]), dtype=X.dtype
    )
    z[:] = X
    return S.ZarrSource(tmp / "x.zarr", chunk_rows=chunk_rows)


def _parquet(tmp, X, chunk_rows):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"a": X[:, 0], "label": np.arange(len(X)).astype(str), "b": X[:, 1], "c": X[:, 2]})
    pq.write_table(table, tmp / "x.parquet", row_group_size=3000)
    return S.ParquetSource(tmp / "x.parquet", columns=["a", "b", "c"], chunk_rows=chunk_rows)


def _csv(tmp, X, chunk_rows):
    np.savetxt(tmp / "x.csv", X, delimiter=",", fmt="%.17g", header="a,b,c", comments="")
    return S.CSVSource(tmp / "x.csv", chunk_rows=chunk_rows, block_size=64 * 1024)


def _callable(tmp, X, chunk_rows):
    def chunks():  # uneven pieces: the source re-cuts them into chunk_rows
        for start in range(0, len(X), 1500):
            yield X[start : start + 1500]

    return S.CallableSource(chunks, chunk_rows=chunk_rows)


MAKERS = {"npy": _npy, "raw": _raw, "hdf5": _hdf5, "zarr": _zarr, "parquet": _parquet, "csv": _csv,
          "callable": _callable}  # fmt: skip


@pytest.mark.parametrize("fmt", list(MAKERS))
def test_every_source_reproduces_the_in_memory_fit_bitwise(tmp_path, data, reference, fmt):
    source = MAKERS[fmt](tmp_path, data, 2 * BLOCK_ROWS)
    gm = _fit(source)
    _assert_same_fit(reference["full"], gm)
    # the column names of Parquet and CSV files are feature names, as a DataFrame's are
    if fmt in ("parquet", "csv"):
        assert list(gm.feature_names_in_) == ["a", "b", "c"]
    else:
        assert not hasattr(gm, "feature_names_in_")
    # predictions over the source equal the in-memory ones
    assert_array_equal(gm.predict(source), reference["full"].predict(data))
    assert_array_equal(gm.score_samples(source), reference["full"].score_samples(data))
    assert gm.score(source) == pytest.approx(reference["full"].score(data), rel=1e-14)


@pytest.mark.parametrize("kind", ["full", "diag"])
@pytest.mark.parametrize("chunk_rows", [BLOCK_ROWS, 3 * BLOCK_ROWS, None])
def test_chunks_that_are_block_multiples_give_bitwise_identical_fits(
    tmp_path, data, reference, kind, chunk_rows
):
    _assert_same_fit(reference[kind], _fit(_npy(tmp_path, data, chunk_rows), kind))


@pytest.mark.parametrize("chunk_rows", [1000, BLOCK_ROWS + 1, 777])
def test_other_chunk_sizes_agree_to_1e_12(tmp_path, data, reference, chunk_rows):
    gm = _fit(_npy(tmp_path, data, chunk_rows))
    ref = reference["full"]
    for name in ATTRS:
        assert_allclose(getattr(gm, name), getattr(ref, name), rtol=1e-12, atol=1e-14, err_msg=name)
    assert_allclose(gm.lower_bounds_, ref.lower_bounds_, rtol=1e-12)


def test_accumulate_chunk_over_block_multiples_is_bitwise_the_whole_pass(data, reference):
    """The property the parity rests on, on the kernel driver itself."""
    params = reference["full"]._params()
    whole = SufficientStats.zeros("full", params.means)
    accumulate_chunk(data, None, params.packed(), whole, 0, whole.cov_code)
    pieces = SufficientStats.zeros("full", params.means)
    for start in range(0, len(data), BLOCK_ROWS):
        accumulate_chunk(
            data[start : start + BLOCK_ROWS], None, params.packed(), pieces, start, pieces.cov_code
        )
    for name in ("R", "S1", "S2", "scalars", "worst_index"):
        assert_array_equal(getattr(pieces, name), getattr(whole, name), err_msg=name)


def test_float32_npy_and_path_strings(tmp_path, data):
    X32 = data.astype(np.float32)
    np.save(tmp_path / "x32.npy", X32)
    gm = _fit(str(tmp_path / "x32.npy"))
    _assert_same_fit(_fit(X32), gm)
    assert gm.predict(tmp_path / "x32.npy").shape == (N_ROWS,)


def test_path_string_dispatch(tmp_path, data):
    _hdf5(tmp_path, data, None)
    assert isinstance(S.as_source(str(tmp_path / "x.h5")), S.HDF5Source)  # the only dataset
    assert isinstance(S.as_source(f"{tmp_path / 'x.h5'}:group/points"), S.HDF5Source)
    _csv(tmp_path, data, None)
    assert isinstance(S.as_source(tmp_path / "x.csv"), S.CSVSource)
    with pytest.raises(ValueError, match="suffix"):
        S.as_source(tmp_path / "x.unknown")


def test_plain_callable_and_sample_weight(tmp_path, data):
    w = np.random.default_rng(0).uniform(0.1, 2.0, len(data))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = GaussianMixture(**FIT).fit(data, sample_weight=w)
        np.save(tmp_path / "w.npy", w)
        gm = GaussianMixture(**FIT).fit(
            lambda: iter(np.array_split(data, 7)), sample_weight=np.load(tmp_path / "w.npy", mmap_mode="r")
        )
    _assert_same_fit(ref, gm)


def test_reservoir_initialisation_is_reproducible_and_uniform(tmp_path, data):
    source = _npy(tmp_path, data, BLOCK_ROWS)
    a = _fit(source, init_sample_size=500, random_state=3)
    b = _fit(source, init_sample_size=500, random_state=3)
    _assert_same_fit(a, b)
    from fastem._stream import scan

    res = scan(source, None, 500, 5)
    assert res.sample.shape == (500, 3) and res.n_samples == N_ROWS
    # rows are real rows of the data, drawn from the whole file (not just its head)
    rows = {tuple(r) for r in data}
    assert all(tuple(r) in rows for r in res.sample)
    index = [int(np.flatnonzero((data == r).all(axis=1))[0]) for r in res.sample[:100]]
    assert max(index) > N_ROWS // 2


# ---------------------------------------------------------------- outputs
@pytest.mark.parametrize("method,key", [("predict", "label"), ("score_samples", "logprob"),
                                        ("predict_proba", "resp")])  # fmt: skip
def test_out_writes_an_npy_atomically(tmp_path, data, reference, method, key):
    gm = reference["full"]
    source = _npy(tmp_path, data, 1000)
    out = tmp_path / f"{method}.npy"
    result = getattr(gm, method)(source, out=out)
    expected = getattr(gm, method)(data)
    assert_array_equal(np.load(out), expected)
    assert_array_equal(result, expected)
    # arrays can be written too
    getattr(gm, method)(data, out=tmp_path / "from_array.npy")
    assert_array_equal(np.load(tmp_path / "from_array.npy"), expected)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


# ---------------------------------------------------------------- bad input
def _nan_file(tmp_path, data, row, value=np.nan):
    bad = data.copy()
    bad[row, 1] = value
    np.save(tmp_path / "bad.npy", bad)
    return tmp_path / "bad.npy"


def _state(gm):
    return {name: getattr(gm, name).copy() for name in ATTRS}


@pytest.mark.parametrize("value,kind", [(np.nan, "NaN"), (np.inf, "infinity")])
def test_nonfinite_value_names_global_row_and_source_and_keeps_state(tmp_path, data, value, kind):
    gm = _fit(data)
    before = _state(gm)
    path = _nan_file(tmp_path, data, 5000, value)
    with pytest.raises(ValueError, match=rf"'.*bad\.npy' contains {kind} at row 5000, column 1"):
        gm.fit(S.NpySource(path, chunk_rows=1024))
    for name, arr in before.items():
        assert_array_equal(getattr(gm, name), arr)
    out = tmp_path / "labels.npy"
    with pytest.raises(ValueError, match="row 5000"):
        gm.predict(S.NpySource(path, chunk_rows=1024), out=out)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bad.npy"]  # no temporary left


def test_nan_in_a_later_chunk_of_a_callable(data):
    def chunks():
        yield data[:3000]
        bad = data[3000:].copy()
        bad[4321 - 3000, 0] = np.nan
        yield bad

    with pytest.raises(ValueError, match=r"callable source .* contains NaN at row 4321, column 0"):
        _fit(chunks)


def test_chunk_with_another_column_count(data):
    def chunks():
        yield data[:3000]
        yield data[3000:, :2]

    with pytest.raises(ValueError, match="2 columns at row 3000, but the data have 3 columns"):
        _fit(S.CallableSource(chunks))


def test_missing_truncated_and_unreadable_files(tmp_path, data):
    gm = _fit(data)
    before = _state(gm)
    with pytest.raises(FileNotFoundError, match="not found"):
        gm.fit(tmp_path / "nope.npy")
    np.save(tmp_path / "t.npy", data)
    raw = (tmp_path / "t.npy").read_bytes()
    (tmp_path / "t.npy").write_bytes(raw[: len(raw) - 100])
    with pytest.raises(ValueError, match="truncated"):
        gm.fit(tmp_path / "t.npy")
    with pytest.raises(ValueError, match="truncated"):
        gm.fit(S.RawSource(tmp_path / "t.npy", "<f8", (N_ROWS, 3), offset=128))
    (tmp_path / "junk.npy").write_bytes(b"not a numpy file at all")
    with pytest.raises(ValueError, match="not a valid .npy"):
        gm.fit(tmp_path / "junk.npy")
    out = tmp_path / "o.npy"
    with pytest.raises(FileNotFoundError):
        gm.score_samples(tmp_path / "nope.npy", out=out)
    assert not out.exists()
    if os.geteuid() != 0:  # root reads anything
        np.save(tmp_path / "locked.npy", data)
        os.chmod(tmp_path / "locked.npy", 0)
        with pytest.raises(PermissionError, match="not readable"):
            gm.fit(tmp_path / "locked.npy")
    for name, arr in before.items():
        assert_array_equal(getattr(gm, name), arr)


def test_file_truncated_after_opening_is_a_clear_error_not_a_crash(tmp_path, data):
    # .npy chunks are memory-mapped: reading a page past the end of a file that
    # shrank after it was opened would kill the process with SIGBUS
    gm = _fit(data)
    before = _state(gm)
    np.save(tmp_path / "t.npy", data)
    src = S.NpySource(tmp_path / "t.npy", chunk_rows=BLOCK_ROWS).open()
    raw = (tmp_path / "t.npy").read_bytes()
    (tmp_path / "t.npy").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="truncated"):
        gm.fit(src)
    for name, arr in before.items():
        assert_array_equal(getattr(gm, name), arr)


def test_wrong_feature_count_at_predict_and_bad_weights(tmp_path, data, reference):
    np.save(tmp_path / "two.npy", data[:, :2])
    with pytest.raises(ValueError, match="has 2 features, but GaussianMixture is expecting 3"):
        reference["full"].predict(tmp_path / "two.npy")
    source = _npy(tmp_path, data, None)
    with pytest.raises(ValueError, match="sample_weight has 10 entries"):
        _fit(source, sample_weight=np.ones(10))
    w = np.ones(N_ROWS)
    w[7000] = -1.0
    with pytest.raises(ValueError, match="negative value at row 7000"):
        _fit(source, sample_weight=w)


def test_missing_optional_library_names_the_extra(tmp_path, data, monkeypatch):
    _hdf5(tmp_path, data, None)
    monkeypatch.setitem(sys.modules, "h5py", None)  # import h5py now raises ImportError
    with pytest.raises(ImportError, match=r'pip install "fastem\[hdf5\]"'):
        _fit(tmp_path / "x.h5")
    monkeypatch.setitem(sys.modules, "pyarrow.csv", None)
    with pytest.raises(ImportError, match=r'pip install "fastem\[csv\]"'):
        S.CSVSource(tmp_path / "x.csv").open()


def test_non_numeric_csv_and_parquet_columns(tmp_path, data):
    (tmp_path / "t.csv").write_text("a,b\n1.0,2.0\n3.0,oops\n")
    with pytest.raises(ValueError, match=r"^'.*t\.csv' cannot be parsed at line 3: column 'b' holds 'oops'"):
        _fit(tmp_path / "t.csv", n_components=1)
    _parquet(tmp_path, data, None)
    with pytest.raises(ValueError, match="column 'label'"):
        _fit(S.ParquetSource(tmp_path / "x.parquet"))


# ---------------------------------------------------------------- progress
def test_verbose_prints_one_line_per_iteration(tmp_path, data, capsys):
    _fit(_npy(tmp_path, data, None), verbose=1, max_iter=3)
    lines = [line for line in capsys.readouterr().out.splitlines() if "mean log-likelihood" in line]
    assert len(lines) == 3
    assert "iteration    3" in lines[-1] and "change" in lines[-1] and " s " in lines[-1]


def test_progress_without_tqdm(tmp_path, data, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    _fit(_npy(tmp_path, data, None), verbose=1, max_iter=2)
    assert capsys.readouterr().out.count("mean log-likelihood") == 2


def test_nan_appearing_after_the_validation_pass_is_caught_in_the_em_pass(data):
    calls = [0]

    def chunks():  # clean on the validation pass, NaN from the second pass on
        calls[0] += 1
        bad = data.copy()
        if calls[0] > 1:
            bad[6000, 2] = np.nan
        yield from np.array_split(bad, 3)

    with pytest.raises(ValueError, match=r"contains NaN at row 6000, column 2"):
        _fit(chunks)
    calls[0] = 0
    with pytest.raises(ValueError, match=r"contains NaN at row 6000, column 2"):
        GaussianMixture(3, random_state=0, batch_size=1024).fit(chunks, algorithm="online")
