"""Model files: exact round trips, and refusal of truncated, corrupted, inconsistent or newer files."""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

import fastem
from fastem import GaussianMixture
from fastem.io import FORMAT_VERSION, ModelFileError, data_fingerprint, read_header

FITTED = ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_")


@pytest.fixture(scope="module")
def small(X):
    return np.ascontiguousarray(X[:300])


@pytest.fixture(scope="module")
def models(small):
    return {
        kind: GaussianMixture(3, covariance_type=kind, random_state=0, n_init=2).fit(small)
        for kind in ("full", "tied", "diag", "spherical")
    }


@pytest.fixture
def saved(models, small, tmp_path):
    path = tmp_path / "model.npz"
    models["full"].save(path, data=small)
    return path


def assert_same_model(a: GaussianMixture, b: GaussianMixture, X: np.ndarray) -> None:
    for name in FITTED:
        got, want = getattr(b, name), getattr(a, name)
        assert got.dtype == want.dtype and np.array_equal(got, want), name
    assert b.lower_bounds_ == a.lower_bounds_
    assert (b.converged_, b.n_iter_, b.lower_bound_, b.n_features_in_) == (
        a.converged_,
        a.n_iter_,
        a.lower_bound_,
        a.n_features_in_,
    )
    pa, pb = a.get_params(), b.get_params()
    for key in ("weights_init", "means_init", "precisions_init"):
        va, vb = pa.pop(key), pb.pop(key)
        assert (va is None and vb is None) or np.array_equal(va, vb), key
    assert pa == pb
    # bit for bit, not approximately
    assert np.array_equal(b.predict(X), a.predict(X))
    assert np.array_equal(b.predict_proba(X), a.predict_proba(X))
    assert np.array_equal(b.score_samples(X), a.score_samples(X))


@pytest.mark.parametrize("kind", ["full", "tied", "diag", "spherical"])
def test_round_trip_is_exact(models, small, tmp_path, kind):
    gm = models[kind]
    path = gm.save(tmp_path / f"{kind}.npz", data=small)
    loaded = fastem.load(path)
    assert loaded is not gm and loaded.covariance_type == kind
    assert_same_model(gm, loaded, small)


@pytest.mark.filterwarnings("ignore:X does not have valid feature names")
def test_round_trip_keeps_init_arrays_feature_names_and_hyperparameters(small, tmp_path):
    pd = pytest.importorskip("pandas")
    gm = GaussianMixture(
        2,
        covariance_type="diag",
        tol=1e-5,
        reg_covar=1e-4,
        max_iter=50,
        means_init=small[:2],
        weights_init=[0.25, 0.75],
        random_state=7,
        n_jobs=1,
        verbose_interval=3,
    ).fit(small)
    # set by hand: GaussianMixture._plan_fit drops DataFrame column names (reported to the lead)
    gm.feature_names_in_ = np.array(["a", "b", "c"], dtype=object)
    loaded = fastem.load(gm.save(tmp_path / "m.npz"))
    assert list(loaded.feature_names_in_) == ["a", "b", "c"]
    assert_same_model(gm, loaded, small)
    with pytest.raises(ValueError, match="feature names"):  # the names are checked as before saving
        loaded.predict(pd.DataFrame(small, columns=["x", "y", "z"]))


def test_header_records_fit_and_data(models, small, tmp_path):
    data_file = tmp_path / "train.npy"
    np.save(data_file, small)
    path = models["diag"].save(tmp_path / "m.npz", data=os.fspath(data_file))
    header = read_header(path)
    assert header["format"] == "fastem-model" and header["format_version"] == FORMAT_VERSION
    assert header["fastem_version"] == fastem.__version__
    assert header["covariance_type"] == "diag" and header["n_components"] == 3
    assert header["fit"]["n_iter"] == models["diag"].n_iter_
    assert header["data"]["n_samples"] == 300 and header["data"]["n_features"] == 3
    # the fingerprint of a file is what sha256sum prints
    assert (
        header["data"]["fingerprint"] == "sha256:file:" + hashlib.sha256(data_file.read_bytes()).hexdigest()
    )
    header_arr = read_header(models["diag"].save(tmp_path / "m2.npz", data=small))
    assert header_arr["data"]["fingerprint"] == data_fingerprint(small.copy())
    assert data_fingerprint(small + 1e-12) != data_fingerprint(small)
    # a valid .npz: numpy reads the arrays without pickle
    with np.load(path, allow_pickle=False) as npz:
        assert np.array_equal(npz["lower_bounds_"], models["diag"].lower_bounds_)


def test_unfitted_and_missing(tmp_path):
    with pytest.raises(NotFittedError):
        GaussianMixture(2).save(tmp_path / "m.npz")
    assert not (tmp_path / "m.npz").exists()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        fastem.load(tmp_path / "absent.npz")


def test_every_truncation_is_refused(saved):
    blob = saved.read_bytes()
    for n in range(0, len(blob), 7):
        saved.write_bytes(blob[:n])
        with pytest.raises(ModelFileError):
            fastem.load(saved)


def test_every_byte_flip_is_refused_or_harmless(saved, models, small):
    """Flip each byte: the loader either refuses the file or returns the very same model."""
    blob = bytearray(saved.read_bytes())
    refused = 0
    for i in range(len(blob)):
        damaged = bytearray(blob)
        damaged[i] ^= 0x5A
        saved.write_bytes(bytes(damaged))
        try:
            loaded = fastem.load(saved)
        except ModelFileError:
            refused += 1
            continue
        for name in FITTED:  # e.g. a zip timestamp changed: nothing that matters
            assert np.array_equal(getattr(loaded, name), getattr(models["full"], name)), (i, name)
    assert refused > 0.8 * len(blob)


def _rewrite(path, *, header=None, arrays=None, rehash=True):
    """Rewrite a model file with changed header fields or arrays, optionally with valid checksums."""
    with np.load(path, allow_pickle=False) as npz:
        head = json.loads(npz["header.json"].decode())
        arrs = {k: npz[k] for k in npz.files if k != "header.json"}
    if arrays:
        arrs.update(arrays)
    if header:
        header(head)
    if rehash:
        for name, a in arrs.items():
            if name not in head["arrays"]:
                continue
            head["arrays"][name]["sha256"] = hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()
            head["arrays"][name]["shape"] = list(a.shape)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("header.json", json.dumps(head))
        for name, a in arrs.items():
            buf = io.BytesIO()
            np.save(buf, a, allow_pickle=True)
            zf.writestr(name + ".npy", buf.getvalue())


def test_newer_format_version_is_refused(saved):
    _rewrite(saved, header=lambda h: h.update(format_version=FORMAT_VERSION + 1, fastem_version="9.0"))
    with pytest.raises(ModelFileError, match=rf"version {FORMAT_VERSION + 1}.*fastem 9.0.*Upgrade fastem"):
        fastem.load(saved)


def test_rewrite_helper_keeps_a_valid_file(saved, models, small):
    _rewrite(saved)  # so the refusals below come from the one change each makes
    assert_same_model(models["full"], fastem.load(saved), small)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a: {"weights_": a["weights_"] * 1.01}, "sum to 1"),
        (lambda a: {"weights_": np.array([1.2, -0.1, -0.1])}, "non-negative"),
        (lambda a: {"means_": a["means_"][:, :2].copy()}, r"means_ has shape \(3, 2\)"),
        (lambda a: {"means_": np.where(a["means_"] > 0, np.nan, a["means_"])}, "NaN"),
        (lambda a: {"precisions_cholesky_": -a["precisions_cholesky_"]}, "not positive definite"),
        (lambda a: {"precisions_": a["precisions_"] * 2}, "disagrees with precisions_cholesky_"),
        (lambda a: {"covariances_": a["covariances_"] * 2}, "not the inverse"),
        (lambda a: {"lower_bounds_": np.zeros(99)}, "lower_bounds_ has shape"),
        (lambda a: {"means_": np.array([["x"] * 3] * 3)}, "float64"),
        (lambda a: {"means_": np.array([[None] * 3] * 3, dtype=object)}, "holds Python objects"),
    ],
)
def test_inconsistent_arrays_with_valid_checksums_are_refused(saved, change, message):
    with np.load(saved, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files if k != "header.json"}
    _rewrite(saved, arrays=change(arrays))
    with pytest.raises(ModelFileError, match=message):
        fastem.load(saved)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda h: h.update(format="something-else"), "not a fastem model file"),
        (lambda h: h.update(covariance_type="banded"), "unknown covariance_type"),
        (lambda h: h["fit"].update(n_iter=-1), "n_iter"),
        (lambda h: h["fit"].update(converged="yes"), "converged"),
        (lambda h: h["hyperparameters"].update(bogus=1), "unknown hyper-parameters"),
        (lambda h: h["hyperparameters"].update(n_components=5), "disagree"),
        (lambda h: h["arrays"].pop("precisions_"), "precisions_ missing"),
    ],
)
def test_bad_headers_are_refused(saved, edit, message):
    _rewrite(saved, header=edit)
    with pytest.raises(ModelFileError, match=message):
        fastem.load(saved)


def test_checksum_catches_a_changed_array(saved):
    with np.load(saved, allow_pickle=False) as npz:
        means = npz["means_"] + 1e-9
    _rewrite(saved, arrays={"means_": means}, rehash=False)
    with pytest.raises(ModelFileError, match="SHA-256"):
        fastem.load(saved)


def test_not_a_model_file(tmp_path, small):
    np.save(tmp_path / "a.npy", small)
    with pytest.raises(ModelFileError, match="single .npy array"):
        fastem.load(tmp_path / "a.npy")
    np.savez(tmp_path / "b.npz", x=small)
    with pytest.raises(ModelFileError, match="no header.json"):
        fastem.load(tmp_path / "b.npz")
    (tmp_path / "c.npz").write_text("hello")
    with pytest.raises(ModelFileError, match="is not a fastem model file: it is not a ZIP archive"):
        fastem.load(tmp_path / "c.npz")
    (tmp_path / "d.npz").write_bytes(b"PK\x03\x04" + bytes(100))  # a damaged ZIP
    with pytest.raises(ModelFileError, match="truncated, corrupted or not a fastem model"):
        fastem.load(tmp_path / "d.npz")


def test_write_is_atomic(saved, models, monkeypatch):
    """A failure between writing and renaming leaves the previous file intact and no temporary file."""
    before = saved.read_bytes()

    def crash(fd):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="simulated"):
        models["tied"].save(saved)
    monkeypatch.undo()
    assert saved.read_bytes() == before
    assert sorted(p.name for p in saved.parent.iterdir()) == ["model.npz"]
    assert fastem.load(saved).covariance_type == "full"
    # a successful save replaces the file with normal permissions (not mkstemp's 0600)
    models["tied"].save(saved)
    assert fastem.load(saved).covariance_type == "tied"
    umask = os.umask(0)
    os.umask(umask)
    assert saved.stat().st_mode & 0o777 == 0o666 & ~umask
