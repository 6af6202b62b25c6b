"""fastem on Dask: a real LocalCluster (2 worker processes, 1 thread each), data read on the workers."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import threading
import time

import dask
import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from conftest import make_mixture
from distributed import Client, LocalCluster, get_task_stream, wait
from numpy.testing import assert_allclose, assert_array_equal

import fastem.dask as fdask
from fastem import GaussianMixture

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

RTOL = 1e-12
FITTED = ("weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_")


def _assert_same_fit(got, expected, rtol=RTOL):
    for name in FITTED:
        a, b = getattr(got, name), getattr(expected, name)
        assert_allclose(a, b, rtol=rtol, atol=rtol * np.abs(b).max(), err_msg=name)
    assert_allclose(got.lower_bounds_, expected.lower_bounds_, rtol=rtol)
    assert got.n_iter_ == expected.n_iter_


def _state(gm) -> dict:
    return {name: np.copy(getattr(gm, name)) for name in FITTED} | {"n_iter_": gm.n_iter_}


def _assert_state(gm, state):
    for name, value in state.items():
        assert_array_equal(getattr(gm, name), value, err_msg=name)


@pytest.fixture(scope="module")
def client():
    # compile (or load from the on-disk cache) in this process first, so that the
    # spawned workers find every kernel in the cache instead of compiling twice
    X, _ = make_mixture(300)
    for kind in ("full", "tied", "diag", "spherical"):
        GaussianMixture(2, covariance_type=kind, max_iter=2, random_state=0).fit(X).predict_proba(X)
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as c,
    ):
        yield c


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """3000 x 3 mixture in Zarr, 5 row chunks of 700 (the last one short)."""
    X, _ = make_mixture(3000, seed=5)
    path = str(tmp_path_factory.mktemp("zarr") / "small.zarr")
    da.from_array(X, chunks=(700, 3)).to_zarr(path)
    return X, path


@pytest.fixture(scope="module")
def large(tmp_path_factory):
    """40000 x 3 in Zarr: more rows than the initialisation sample."""
    X, _ = make_mixture(40_000, seed=11)
    path = str(tmp_path_factory.mktemp("zarr") / "large.zarr")
    da.from_array(X, chunks=(6000, 3)).to_zarr(path)
    return X, path


@pytest.mark.parametrize("kind", ["full", "tied", "diag", "spherical"])
def test_fit_from_zarr_equals_in_memory(client, small, kind):
    X, path = small
    kw = dict(covariance_type=kind, random_state=0, tol=0, max_iter=25)
    got = GaussianMixture(3, **kw).fit(da.from_zarr(path))
    _assert_same_fit(got, GaussianMixture(3, **kw).fit(X))
    assert got.n_features_in_ == 3 and not hasattr(got, "feature_names_in_")


def test_parquet_dataframe_and_sample_weight(client, small, tmp_path):
    X, _ = small
    df = pd.DataFrame(X, columns=["a", "b", "c"])
    dd.from_pandas(df, npartitions=4).to_parquet(tmp_path / "x.parquet")
    weights = np.random.default_rng(0).uniform(0.1, 2.0, len(X))
    kw = dict(random_state=0, tol=0, max_iter=15)
    expected = GaussianMixture(3, **kw).fit(X, sample_weight=weights)

    arr = dd.read_parquet(tmp_path / "x.parquet").to_dask_array(lengths=True)
    _assert_same_fit(GaussianMixture(3, **kw).fit(arr, sample_weight=weights), expected)
    # weights as a dask array with other chunks, and rows with unknown chunk sizes
    lazy = dd.read_parquet(tmp_path / "x.parquet").to_dask_array()
    assert np.isnan(lazy.chunks[0][0])
    got = GaussianMixture(3, **kw).fit(lazy, sample_weight=da.from_array(weights, chunks=1111))
    _assert_same_fit(got, expected)
    # a dask DataFrame keeps its column names
    by_df = GaussianMixture(3, **kw).fit(dd.read_parquet(tmp_path / "x.parquet"), sample_weight=weights)
    _assert_same_fit(by_df, expected)
    assert list(by_df.feature_names_in_) == ["a", "b", "c"]


def test_large_data_initialises_from_a_worker_side_sample(client, large, monkeypatch):
    X, path = large
    Xd = da.from_zarr(path)
    S = dict(init_sample_size=10_000)
    plan = GaussianMixture(4, random_state=0, **S)._plan_fit(Xd, None)
    assert plan.n_samples == 40_000 and plan.init_X.shape == (10_000, 3)
    rows = {r.tobytes() for r in X}
    assert all(r.tobytes() in rows for r in plan.init_X)  # real rows, gathered in row order
    # reproducible from random_state, whatever the chunking
    other = GaussianMixture(4, random_state=0, **S)._plan_fit(Xd.rechunk(2500), None)
    assert_array_equal(other.init_X, plan.init_X)
    assert not np.array_equal(GaussianMixture(4, random_state=1, **S)._plan_fit(Xd, None).init_X, plan.init_X)

    # the client never materialises X: only statistics and the sample come back
    def forbidden(*args, **kwargs):
        raise AssertionError("X was computed on the client")

    monkeypatch.setattr(da.Array, "__array__", forbidden)
    monkeypatch.setattr(da.Array, "compute", forbidden)
    init = GaussianMixture(4, random_state=0, max_iter=0, **S).fit(Xd)
    again = GaussianMixture(4, random_state=0, max_iter=0, **S).fit(Xd)
    _assert_same_fit(again, init, rtol=0)
    kw = dict(
        tol=0, max_iter=20, weights_init=init.weights_, means_init=init.means_,
        precisions_init=init.precisions_,
    )  # fmt: skip
    got = GaussianMixture(4, **kw).fit(Xd)
    monkeypatch.undo()
    _assert_same_fit(got, GaussianMixture(4, **kw).fit(X))
    # the full fit from random_state equals the in-memory fit from the sample's initialisation
    _assert_same_fit(GaussianMixture(4, random_state=0, tol=0, max_iter=20, **S).fit(Xd), got)
    # with the default init_sample_size (100000) all 40000 rows are the sample: as in memory
    kw = dict(random_state=0, tol=0, max_iter=10)
    _assert_same_fit(GaussianMixture(4, **kw).fit(Xd), GaussianMixture(4, **kw).fit(X))


def test_rereading_graph_ships_parameters_once_and_no_data(client, large):
    X, path = large
    gm = GaussianMixture(3, covariance_type="full", random_state=0, max_iter=1).fit(X)
    executor = fdask.DaskExecutor(da.from_zarr(path), None, client, gm._family(), keep_in_memory=False)
    assert executor.row_futures is None
    graph = dict(executor.graph(gm._params()).__dask_graph__())
    params_keys = [k for k in graph if str(k).startswith("fastem-params-")]
    assert len(params_keys) == 1
    # 7 chunks -> 7 block tasks plus the Zarr reads; the statistics are merged on the client
    assert sum(1 for k in graph if "_block_stats" in str(k)) == 7
    # nothing else (no merge tasks): the client merges the 7 statistics
    assert all(
        any(tag in str(k) for tag in ("_block_stats", "fastem-params", "zarr", "list-")) for k in graph
    )
    assert len(pickle.dumps(graph)) < X.nbytes / 10  # the data are not in the graph
    stats = executor.accumulate(gm._params())
    expected = gm._family().zero_stats(gm._params())
    gm._family().accumulate(X, None, gm._params(), expected, 0)
    assert_allclose(stats.S2, expected.S2, rtol=RTOL)


def test_share_rows_follows_threads_and_keeps_chunks_in_place():
    rows = [100] * 8
    assert fdask._share_rows(rows, ["a"] * 8, {"a": 1, "b": 1}) == ["a"] * 4 + ["b"] * 4
    assert fdask._share_rows(rows, ["a", "b"] * 4, {"a": 1, "b": 1}) == ["a", "b"] * 4  # nothing moves
    assert fdask._share_rows(rows, [None] * 8, {"a": 1, "b": 3}).count("b") == 6
    # a holder that is not a worker (any more) counts as nobody; uneven chunks
    owner = fdask._share_rows([500, 100, 100, 100, 100, 100], ["gone"] * 6, {"a": 1, "b": 1})
    assert owner == ["a", "b", "b", "b", "b", "b"]


def _counting_reads(counter: str):
    def counted(block):
        with open(counter, "a") as f:
            f.write("x")
        return block

    return counted


def test_rows_are_read_once_and_kept_in_worker_memory(client, small, tmp_path, monkeypatch):
    X, path = small  # 5 chunks
    counter = str(tmp_path / "reads")
    open(counter, "w").close()
    Xd = da.from_zarr(path).map_blocks(_counting_reads(counter), meta=np.empty((0, 3)))  # no call for meta
    passes = []
    original = fdask.DaskExecutor.accumulate

    def accumulate(self, params):
        passes.append(1)
        return original(self, params)

    monkeypatch.setattr(fdask.DaskExecutor, "accumulate", accumulate)
    kw = dict(covariance_type="diag", random_state=0, tol=0, max_iter=10)
    kept = GaussianMixture(3, **kw).fit(Xd)
    assert len(passes) >= 10
    assert os.path.getsize(counter) == 5  # one read per chunk, for the survey and every pass
    _assert_same_fit(kept, GaussianMixture(3, **kw).fit(X))
    deadline = time.monotonic() + 30  # the client releases keys asynchronously
    while any(Xd.name in str(key) for key in client.who_has()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(Xd.name in str(key) for key in client.who_has())  # held for the fit only
    # no room in the cluster's memory: every pass re-reads, with the same result bit for bit
    monkeypatch.setattr(fdask, "PERSIST_MEMORY_FRACTION", 0.0)
    open(counter, "w").close()
    passes.clear()
    reread = GaussianMixture(3, **kw).fit(Xd)
    assert os.path.getsize(counter) == 5 * (1 + len(passes))
    _assert_same_fit(reread, kept, rtol=0)


def test_result_does_not_depend_on_workers_or_placement(client, small):
    X, path = small
    kw = dict(covariance_type="full", random_state=0, tol=0, max_iter=15)
    spread = GaussianMixture(3, **kw).fit(da.from_zarr(path))  # fastem spreads the rows itself
    _assert_same_fit(spread, GaussianMixture(3, **kw).fit(X))
    params, family = spread._params(), spread._family()

    # the user persisted every chunk on one worker: 2 of the 5 chunks are copied once to the other
    first = sorted(client.scheduler_info()["workers"])[0]
    on_one = client.persist(da.from_zarr(path), workers=[first])
    wait(on_one)
    executor = fdask.DaskExecutor(on_one, None, client, family)
    assert sorted(len(chunks) for chunks in executor.groups.values()) == [2, 3]
    assert set(executor.worker_threads.values()) == {1}
    with get_task_stream(client) as stream:
        executor.accumulate(params)
    keys = [str(rec["key"]) for rec in stream.data]
    assert sum("_worker_stats" in k for k in keys) == 2  # one task per worker per pass
    assert not any("_copy_block" in k or "from-zarr" in k for k in keys)  # no data moved or re-read
    _assert_same_fit(GaussianMixture(3, **kw).fit(on_one), spread, rtol=0)

    # one worker with two threads: one task per pass, on two numba threads
    with (
        LocalCluster(n_workers=1, threads_per_worker=2, processes=True, dashboard_address=None) as cluster,
        Client(cluster, set_as_default=False) as own,
    ):
        mine = own.persist(da.from_zarr(path))
        executor = fdask.DaskExecutor(mine, None, own, family)
        assert list(executor.worker_threads.values()) == [2] and len(executor.groups) == 1
        _assert_same_fit(GaussianMixture(3, **kw).fit(mine), spread, rtol=0)


def test_predict_score_are_lazy_and_equal_in_memory(client, small, tmp_path):
    X, path = small
    Xd = da.from_zarr(path)
    gm = GaussianMixture(3, random_state=0).fit(Xd)
    ref = GaussianMixture(3, random_state=0).fit(X)
    for method, rtol in (("predict", 0), ("predict_proba", 1e-12), ("score_samples", 1e-12)):
        lazy = getattr(gm, method)(Xd)
        assert isinstance(lazy, da.Array)
        assert_allclose(lazy.compute(), getattr(ref, method)(X), rtol=rtol, atol=1e-15, err_msg=method)
    assert isinstance(gm.score(Xd), float)
    assert_allclose(gm.score(Xd), ref.score(X), rtol=1e-12)
    assert_array_equal(GaussianMixture(3, random_state=0).fit_predict(Xd).compute(), ref.predict(X))
    saved = gm.predict_proba(Xd, out=tmp_path / "resp.npy")
    assert_allclose(np.load(tmp_path / "resp.npy"), ref.predict_proba(X), rtol=1e-12, atol=1e-15)
    assert isinstance(saved, np.ndarray)
    with pytest.raises(ValueError, match="X has 2 features, but GaussianMixture is expecting 3"):
        gm.predict(Xd[:, :2])


def test_local_scheduler_without_a_client(small):
    X, path = small
    with dask.config.set(scheduler="threads"):
        Xd = da.from_zarr(path)
        assert fdask._current_client(Xd) is None
        got = GaussianMixture(3, covariance_type="diag", random_state=0, tol=0, max_iter=10).fit(Xd)
        labels = got.predict(Xd).compute()
    ref = GaussianMixture(3, covariance_type="diag", random_state=0, tol=0, max_iter=10).fit(X)
    _assert_same_fit(got, ref)
    assert_array_equal(labels, ref.predict(X))


def test_large_parameters_are_scattered_once_per_pass(client, small, monkeypatch):
    X, path = small
    kw = dict(covariance_type="full", random_state=0, tol=0, max_iter=5)
    expected = GaussianMixture(3, **kw).fit(da.from_zarr(path))
    scattered = []
    scatter = client.scatter

    def counting_scatter(self, data, **kwargs):
        scattered.append(kwargs.get("broadcast"))
        return scatter(data, **kwargs)

    monkeypatch.setattr(fdask, "SCATTER_PARAMS_BYTES", 0)
    monkeypatch.setattr(type(client), "scatter", counting_scatter)
    got = GaussianMixture(3, **kw).fit(da.from_zarr(path))
    assert len(scattered) >= 5 and all(scattered)  # one broadcast per pass
    _assert_same_fit(got, expected, rtol=0)


def test_worker_killed_mid_fit_gives_the_same_result(client, small, tmp_path, monkeypatch):
    """Rows re-read every pass: a killed read is redone and the result is bit-identical."""
    monkeypatch.setattr(fdask, "PERSIST_MEMORY_FRACTION", 0.0)
    X, path = small
    counter = str(tmp_path / "calls")
    open(counter, "w").close()

    def die_once(block, block_info=None):
        # first chunk, third read (survey, iteration 1, iteration 2): kill this worker process
        if block_info[0]["chunk-location"][0] == 0:
            with open(counter, "a") as f:
                f.write("x")
            if os.path.getsize(counter) == 3:
                os.kill(os.getpid(), 9)
        return block

    kw = dict(covariance_type="full", random_state=0, tol=0, max_iter=8)
    workers_before = set(client.scheduler_info()["workers"])
    disturbed = GaussianMixture(3, **kw).fit(da.from_zarr(path).map_blocks(die_once, dtype=X.dtype))
    assert os.path.getsize(counter) >= 4  # the killed read was redone
    client.wait_for_workers(2, timeout=60)
    assert set(client.scheduler_info()["workers"]) != workers_before  # the nanny replaced the worker
    calm = GaussianMixture(3, **kw).fit(da.from_zarr(path))
    _assert_same_fit(disturbed, calm, rtol=0)  # fixed merge tree: bit-identical
    _assert_same_fit(disturbed, GaussianMixture(3, **kw).fit(X))


def test_worker_killed_with_the_rows_in_its_memory(client, small, monkeypatch):
    """Its chunks are read again on another worker, the pass is redone there; same result bit for bit."""
    X, path = small
    kw = dict(covariance_type="full", random_state=0, tol=0, max_iter=8)
    calm = GaussianMixture(3, **kw).fit(da.from_zarr(path))
    client.wait_for_workers(2, timeout=60)
    pids = client.run(os.getpid)
    victim = sorted(pids)[0]
    original = fdask.DaskExecutor.accumulate
    calls = []

    def accumulate(self, params):
        calls.append(1)
        if len(calls) == 3:
            assert self.row_futures is not None  # the rows are held in worker memory
            os.kill(pids[victim], signal.SIGKILL)
        return original(self, params)

    monkeypatch.setattr(fdask.DaskExecutor, "accumulate", accumulate)
    disturbed = GaussianMixture(3, **kw).fit(da.from_zarr(path))
    monkeypatch.undo()
    client.wait_for_workers(2, timeout=60)
    assert victim not in client.scheduler_info()["workers"]
    _assert_same_fit(disturbed, calm, rtol=0)


def _hide_fastem():
    for name in [m for m in sys.modules if m == "fastem" or m.startswith("fastem.")]:
        del sys.modules[name]
    sys.modules["fastem"] = None  # import fastem -> ModuleNotFoundError


def _unhide_fastem():
    if sys.modules.get("fastem", 0) is None:
        del sys.modules["fastem"]


def test_worker_without_fastem_gives_a_clear_error(client, small):
    X, path = small
    gm = GaussianMixture(3, random_state=0, max_iter=5).fit(X)
    before = _state(gm)
    client.run(_hide_fastem)
    try:
        with pytest.raises(ImportError, match="Install fastem on every worker"):
            gm.fit(da.from_zarr(path))
        with pytest.raises(ImportError, match="cannot be imported on 2 of 2 Dask workers"):
            gm.predict(da.from_zarr(path))
    finally:
        client.run(_unhide_fastem)
    _assert_state(gm, before)


def test_task_failing_to_import_fastem_is_translated():
    def task():
        raise ModuleNotFoundError("No module named 'fastem'", name="fastem")

    with pytest.raises(ImportError, match="Install fastem on every worker") as info:
        fdask._compute(None, dask.delayed(task)())
    assert isinstance(info.value.__cause__, ModuleNotFoundError)


def test_cluster_going_away_gives_a_clear_error(small, monkeypatch):
    X, path = small
    gm = GaussianMixture(3, random_state=0, max_iter=5).fit(X)
    before = _state(gm)
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    own = Client(cluster, set_as_default=False)
    try:
        Xd = own.persist(da.from_zarr(path))  # the chunks live on this cluster only
        original = fdask.DaskExecutor.accumulate
        calls = []

        def accumulate(self, params):
            calls.append(1)
            if len(calls) == 2:  # the cluster dies during the second iteration
                threading.Thread(target=cluster.close).start()
            return original(self, params)

        monkeypatch.setattr(fdask.DaskExecutor, "accumulate", accumulate)
        with pytest.raises(fdask.ClusterError, match="went away"):
            gm.set_params(max_iter=50, tol=0).fit(Xd)
        _assert_state(gm, before)
        cluster.close()
        with pytest.raises(fdask.ClusterError, match="no longer running"):
            gm.fit(Xd)
        _assert_state(gm, before)
    finally:
        own.close()
        cluster.close()


def test_bad_dask_input_is_rejected_before_fitting(client, small):
    X, _ = small
    gm = GaussianMixture(3, random_state=0, max_iter=5).fit(X)
    before = _state(gm)
    bad = X.copy()
    bad[2345, 1] = np.nan
    with pytest.raises(ValueError, match=r"NaN at row 2345, column 1 \(counted from 0;"):
        gm.fit(da.from_array(bad, chunks=700))
    # a DataFrame's column is named too
    frame = dd.from_pandas(pd.DataFrame(bad, columns=["a", "b", "c"]), npartitions=3)
    with pytest.raises(ValueError, match=r"NaN at row 2345, column 1 \(counted from 0; column 'b';"):
        gm.fit(frame)
    with pytest.raises(ValueError, match=r"negative value at row 0 \(counted from 0\)"):
        gm.fit(da.from_array(X, chunks=700), sample_weight=-np.ones(len(X)))
    w = np.ones(len(X))
    w[1500] = np.inf
    with pytest.raises(ValueError, match=r"NaN or infinity at row 1500 \(counted from 0\)"):
        gm.fit(da.from_array(X, chunks=700), sample_weight=w)
    with pytest.raises(ValueError, match="one weight per sample"):
        gm.fit(da.from_array(X, chunks=700), sample_weight=np.ones(5))
    with pytest.raises(ValueError, match="Expected a 2D array"):
        gm.fit(da.from_array(X[:, 0], chunks=700))
    with pytest.raises(ValueError, match="n_components"):
        GaussianMixture(0).fit(da.from_array(X, chunks=700))
    with pytest.raises(TypeError, match="online"):
        gm.fit(da.from_array(X, chunks=700), algorithm="online")
    with pytest.raises(TypeError, match="checkpoints are not supported for Dask collections") as err:
        gm.fit(da.from_array(X, chunks=700), checkpoint="unused.ckpt")
    assert "Executor" not in str(err.value)
    _assert_state(gm, before)


def test_bad_value_in_chunks_of_unknown_size_names_the_chunk(client, small):
    X, _ = small
    gm = GaussianMixture(3, random_state=0, max_iter=5).fit(X)
    bad = X.copy()
    bad[1405, 2] = np.nan  # row 5 of the third chunk of 700
    lazy = da.from_array(bad, chunks=700)
    lazy = lazy[lazy[:, 0] > -np.inf]  # boolean indexing: the chunk sizes become unknown
    assert np.isnan(lazy.chunks[0][0])
    with pytest.raises(
        ValueError, match=r"^Row chunk 2 of input X contains NaN at row 5, column 2 \(counted"
    ):
        gm.predict(lazy).compute()


def test_missing_dask_extra_names_it():
    code = (
        "import sys\n"
        "sys.modules['dask'] = None\n"
        "sys.modules['distributed'] = None\n"
        "from fastem import GaussianMixture\n"
        "Fake = type('Array', (), {'__module__': 'dask.array.core'})\n"
        "try:\n"
        "    GaussianMixture(2).fit(Fake())\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert 'pip install "fastem[dask]"' in out.stdout, out.stdout + out.stderr
