"""User-facing messages: every rule of issue 14's "Messages and output", one test each.

1. a data error names its place in the user's terms: the 0-based row index of an
   array (said to be 0-based), the 1-based line of a text file, the file name once;
2. CSV parse errors carry the line (and a headerless numeric CSV is read as data);
3. model files are never answered with advice to unpickle;
4. no internal class name reaches a message;
5. a resumed checkpoint says where it resumed (verbose >= 1);
6. the column names of Parquet and CSV files become ``feature_names_in_``.
"""

from __future__ import annotations

import ast
import pickle
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

import fastem
from fastem import GaussianMixture, PoissonMixture
from fastem import sources as S
from fastem.io import ModelFileError

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = ["a", "b", "c"]


def _quiet_fit(estimator, X, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a short fit's ConvergenceWarning is not the point here
        return estimator.fit(X, **kw)


@pytest.fixture(scope="module")
def blobs():
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0, 0.0], [8.0, 8.0, 0.0], [0.0, 8.0, 8.0]])
    return centres[rng.integers(0, 3, 3000)] + rng.normal(size=(3000, 3))


def _write_csv(path: Path, X: np.ndarray, header: str | None = "a,b,c") -> Path:
    np.savetxt(path, X, delimiter=",", fmt="%.17g", header=header or "", comments="")
    if header is None:  # savetxt writes an empty first line for header=""
        path.write_text(path.read_text().lstrip("\n"))
    return path


def _message(excinfo) -> str:
    return str(excinfo.value)


# ---------------------------------------------------------------- rule 1: the place, in the user's terms
def test_rule1_data_errors_name_their_place_in_the_users_terms(blobs, tmp_path, monkeypatch):
    X = blobs.copy()
    X[1233, 1] = np.nan  # the 1234th data row
    # an array: the row and column indices, said to count from 0
    with pytest.raises(ValueError) as err:
        GaussianMixture(2).fit(X)
    assert _message(err).startswith("Input X contains NaN at row 1233, column 1 (counted from 0;")

    # a CSV file with a header: also line 1235 of the file and the column's name, the file named once
    monkeypatch.chdir(tmp_path)
    _write_csv(tmp_path / "bad_nan.csv", X)
    with pytest.raises(ValueError) as err:
        GaussianMixture(2).fit("bad_nan.csv")
    text = _message(err)
    assert text.startswith("'bad_nan.csv' contains NaN at row 1233, column 1 (counted from 0; ")
    assert "line 1235 of the file, column 'b'" in text
    assert text.count("bad_nan.csv") == 1
    # the same place when applying a model to the file
    gm = _quiet_fit(GaussianMixture(2, max_iter=2, random_state=0), blobs)
    with pytest.raises(ValueError, match=r"row 1233, column 1 \(counted from 0; line 1235 of the file"):
        gm.predict("bad_nan.csv")

    # no header, and an empty line before the bad row: lines are the file's physical lines
    lines = (tmp_path / "bad_nan.csv").read_text().splitlines()[1:]
    lines.insert(10, "")
    (tmp_path / "plain.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError) as err:
        GaussianMixture(2).fit("plain.csv")
    assert "at row 1233, column 1 (counted from 0; line 1235 of the file;" in _message(err)

    # a family's refusal and a Parquet column's name
    import pyarrow as pa
    import pyarrow.parquet as pq

    counts = np.random.default_rng(1).poisson(3.0, size=(500, 3)).astype(float)
    counts[77, 2] = -1.0
    pq.write_table(pa.table({n: counts[:, j] for j, n in enumerate(["x", "y", "z"])}), tmp_path / "c.parquet")
    with pytest.raises(ValueError) as err:
        PoissonMixture(2).fit("c.parquet")
    assert _message(err).startswith(
        "'c.parquet' contains a negative count -1 at row 77, column 2 (counted from 0; column 'z';"
    )

    # sample weights: the row, counted from 0
    w = np.ones(len(blobs))
    w[7] = -1.0
    with pytest.raises(ValueError, match=r"negative value at row 7 \(counted from 0\)"):
        GaussianMixture(2).fit(blobs, sample_weight=w)
    np.save(tmp_path / "x.npy", blobs)
    w[7], w[9] = 1.0, np.nan
    with pytest.raises(ValueError, match=r"NaN or infinity at row 9 \(counted from 0\)"):
        GaussianMixture(2).fit(tmp_path / "x.npy", sample_weight=w)


def test_rule1_file_sources_start_with_the_quoted_file_name(tmp_path, monkeypatch):
    """The CLI adds the file name only when a message does not start with it: every reader starts with it."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("1 2\n")
    (tmp_path / "junk.npy").write_bytes(b"not a numpy file")
    (tmp_path / "t.csv").write_text("a,b\n1,2\n3,oops\n")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"a": [1.0, 2.0], "s": ["x", "y"]}), tmp_path / "s.parquet")
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f.create_dataset("points", data=np.array([[1.0, 2.0], [np.nan, 3.0], [4.0, 5.0]]))
    for path in ("notes.txt", "junk.npy", "t.csv", "s.parquet", "x.h5", "x.h5:points"):
        with pytest.raises((ValueError, TypeError)) as err:
            GaussianMixture(1).fit(path)
        assert _message(err).startswith(f"'{path}'"), _message(err)
        assert _message(err).count("x.h5" if "x.h5" in path else path) == 1, _message(err)
    with pytest.raises(ValueError, match=r"^'x.h5' \(dataset 'points'\) contains NaN at row 1, column 0"):
        GaussianMixture(1).fit("x.h5")


# ---------------------------------------------------------------- rule 2: CSV parse errors carry the line
def test_rule2_csv_parse_errors_carry_the_line_and_the_file_name_once(blobs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    lines = (_write_csv(tmp_path / "x.csv", blobs)).read_text().splitlines()
    # far enough down that pyarrow meets it in a later block than the first
    short = lines.copy()
    short[2500] = "1.5,2.5"
    (tmp_path / "short.csv").write_text("\n".join(short) + "\n")
    with pytest.raises(ValueError) as err:
        GaussianMixture(2).fit(S.CSVSource("short.csv", block_size=16 * 1024))
    text = _message(err)
    assert text.startswith("'short.csv' cannot be parsed at line 2501: expected 3 columns, got 2")
    assert text.count("short.csv") == 1

    word = lines.copy()
    word[2700] = "1.5,hello,2.5"
    (tmp_path / "word.csv").write_text("\n".join(word) + "\n")
    with pytest.raises(ValueError) as err:
        GaussianMixture(2).fit(S.CSVSource("word.csv", block_size=16 * 1024))
    text = _message(err)
    assert text.startswith(
        "'word.csv' cannot be parsed at line 2701: column 'b' holds 'hello', which is not a"
    )
    assert text.count("word.csv") == 1

    # in the first block: found when the file is opened
    (tmp_path / "early.csv").write_text("a,b,c\n1,2,3\n4,5\n7,8,9\n")
    with pytest.raises(
        ValueError, match=r"^'early.csv' cannot be parsed at line 3: expected 3 columns, got 2"
    ):
        GaussianMixture(1).fit("early.csv")


def test_rule2_a_headerless_numeric_csv_is_data_whatever_its_first_line(tmp_path):
    # a first line that repeats a value used to be taken as a header with a duplicate name
    X = np.array([[1.0, 3.0, 3.0], [1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.5]] * 5)
    _write_csv(tmp_path / "plain.csv", X, header=None)
    assert (tmp_path / "plain.csv").read_text().startswith("1,3,3\n")
    source = S.CSVSource(tmp_path / "plain.csv").open()
    assert source.n_features == 3 and source.feature_names is None
    gm = _quiet_fit(GaussianMixture(2, random_state=0, max_iter=5), source)
    assert source.n_samples == len(X)  # the first line is a row, not a header
    assert not hasattr(gm, "feature_names_in_")
    ref = _quiet_fit(GaussianMixture(2, random_state=0, max_iter=5), X)
    np.testing.assert_allclose(gm.means_, ref.means_, rtol=1e-12)
    # a first line with names (even one that looks numeric among them) is a header
    (tmp_path / "named.csv").write_text("x1,2,x3\n1,2,3\n4,5,6\n")
    assert list(S.CSVSource(tmp_path / "named.csv").open().feature_names) == ["x1", "2", "x3"]
    # a header naming a column twice gets a clear refusal, not a KeyError
    (tmp_path / "twice.csv").write_text("a,a,b\n1,2,3\n4,5,6\n")
    with pytest.raises(ValueError, match=r"column name 'a' 2 times in its header line"):
        S.CSVSource(tmp_path / "twice.csv").open()


# ---------------------------------------------------------------- rule 3: model files, never unpickling
@pytest.mark.parametrize(
    "content",
    [
        pytest.param(pickle.dumps({"weights_": [0.5, 0.5]}), id="pickle"),
        pytest.param(b"weights: 0.5 0.5\n", id="text"),
        pytest.param(np.random.default_rng(0).bytes(300), id="random-bytes"),
        pytest.param(b"", id="empty"),
    ],
)
def test_rule3_a_file_that_is_not_a_zip_is_not_a_model_file(tmp_path, content):
    path = tmp_path / "model.npz"
    path.write_bytes(content)
    for read in (fastem.load, fastem.io.read_header):
        with pytest.raises(ModelFileError) as err:
            read(path)
        text = _message(err)
        assert f"'{path}' is not a fastem model file" in text
        assert "pickle" not in text.lower() and "allow_pickle" not in text


def test_rule3_object_arrays_and_checkpoints_get_no_unpickling_advice(blobs, tmp_path):
    gm = _quiet_fit(GaussianMixture(2, max_iter=3, random_state=0), blobs)
    path = gm.save(tmp_path / "m.npz")
    # a model file whose member holds Python objects (with a valid checksum): refused unread
    import zipfile

    with zipfile.ZipFile(path) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    with zipfile.ZipFile(path, "w") as zf:
        for name, payload in members.items():
            if name == "means_.npy":
                import io

                buf = io.BytesIO()
                np.save(buf, np.array([[None] * 3] * 2, dtype=object), allow_pickle=True)
                payload = buf.getvalue()
            zf.writestr(name, payload)
    with pytest.raises(ModelFileError) as err:
        fastem.load(path)
    assert "holds Python objects" in _message(err) and "pickle" not in _message(err).lower()
    # a checkpoint path that holds a pickle
    (tmp_path / "c.ckpt").write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(ValueError) as err:
        GaussianMixture(2).fit(blobs, checkpoint=tmp_path / "c.ckpt")
    assert "not a readable fastem checkpoint" in _message(err)
    assert "allow_pickle" not in _message(err) and "pickle.load" not in _message(err)


# ---------------------------------------------------------------- rule 4: no internal class names
INTERNAL = re.compile(r"\b(\w*Executor|FitPlan|PlanRequest|ScanResult|_Prefetcher|NpzFile)\b")
MESSAGE_FILES = ["_validate.py", "sources.py", "_stream.py", "io.py", "dask.py", "checkpoint.py"]


def _message_texts(tree: ast.AST):
    """The literal parts of every string passed to raise X(...), print(...) and warnings.warn(...)."""
    for node in ast.walk(tree):
        call = None
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
            call = node.exc
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
            "print", "warn", "_say",
        ):  # fmt: skip
            call = node
        if call is None:
            continue
        for arg in call.args:
            for part in ast.walk(arg):
                if isinstance(part, ast.Constant) and isinstance(part.value, str):
                    yield node.lineno, part.value
                if isinstance(part, ast.Attribute) and part.attr == "__name__":
                    owner = ast.unparse(part.value)
                    if "executor" in owner or "plan" in owner:
                        yield node.lineno, f"type name of {owner}"


def test_rule4_no_internal_class_names_in_messages(blobs):
    found = []
    for name in MESSAGE_FILES:
        tree = ast.parse((ROOT / "fastem" / name).read_text())
        for line, text in _message_texts(tree):
            if INTERNAL.search(text) or text.startswith("type name of"):
                found.append(f"fastem/{name}:{line}: {text!r}")
    assert not found, "\n".join(found)
    # and at run time: the Dask refusal of checkpoints names the input, not the executor
    da = pytest.importorskip("dask.array")
    import dask

    with dask.config.set(scheduler="sync"), pytest.raises(TypeError) as err:
        GaussianMixture(2).fit(da.from_array(blobs, chunks=1000), checkpoint="unused.ckpt")
    assert "checkpoints are not supported for Dask collections" in _message(err)
    assert not INTERNAL.search(_message(err))


# ---------------------------------------------------------------- rule 5: a resumed checkpoint says so
class _Stop(Exception):
    pass


def _stop_at(n_iter: int):
    def callback(it):
        if it.n_iter == n_iter:
            raise _Stop

    return callback


def test_rule5_a_resumed_checkpoint_says_where_it_resumed(blobs, tmp_path, capsys):
    ckpt = tmp_path / "fit.ckpt"
    kw = dict(n_components=3, random_state=0, tol=0.0, max_iter=6)
    with pytest.raises(_Stop):
        _quiet_fit(GaussianMixture(**kw), blobs, checkpoint=ckpt, callbacks=_stop_at(3))
    capsys.readouterr()
    # silent without verbose
    quiet = _quiet_fit(GaussianMixture(**kw), blobs, checkpoint=tmp_path / "other.ckpt")
    assert capsys.readouterr().out == ""
    _quiet_fit(GaussianMixture(**kw, verbose=1), blobs, checkpoint=ckpt)
    out = capsys.readouterr().out.splitlines()
    assert (
        out[0]
        == f"Checkpoint '{ckpt}': resuming initialization 0 after iteration 2 (those 2 passes are kept)."
    )
    assert out[1] == "Initialization 0"  # the numbering of the lines that follow
    # a finished fit: says it returns the saved result
    again = _quiet_fit(GaussianMixture(**kw, verbose=1), blobs, checkpoint=ckpt)
    out = capsys.readouterr().out
    assert f"Checkpoint '{ckpt}': holds a finished fit" in out and "without any pass" in out
    np.testing.assert_array_equal(again.means_, quiet.means_)


# ---------------------------------------------------------------- rule 6: feature names from files
def test_rule6_parquet_and_csv_column_names_become_feature_names_in(blobs, tmp_path):
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    frame = pd.DataFrame(blobs, columns=COLUMNS)
    table = pa.table(
        {"id": np.arange(len(blobs)).astype(str)} | {c: blobs[:, j] for j, c in enumerate(COLUMNS)}
    )
    pq.write_table(table, tmp_path / "x.parquet")
    _write_csv(tmp_path / "x.csv", blobs)
    fits = {
        "parquet": S.ParquetSource(tmp_path / "x.parquet", columns=COLUMNS),
        "csv": tmp_path / "x.csv",
    }
    by_frame = _quiet_fit(GaussianMixture(3, random_state=0, max_iter=20), frame)
    for kind, data in fits.items():
        gm = _quiet_fit(GaussianMixture(3, random_state=0, max_iter=20), data)
        assert list(gm.feature_names_in_) == COLUMNS, kind
        assert gm.feature_names_in_.dtype == object
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # same columns: no "fitted with feature names" warning
            labels = gm.predict(frame)
            np.testing.assert_array_equal(gm.predict(data), labels)
        np.testing.assert_array_equal(labels, by_frame.predict(frame))
        # scikit-learn's rule for other columns holds too
        with pytest.raises(ValueError, match="feature names"):
            gm.predict(frame[["b", "a", "c"]])
        # and a model file keeps the names
        loaded = fastem.load(gm.save(tmp_path / f"{kind}.npz"))
        assert list(loaded.feature_names_in_) == COLUMNS
    # a file with other column names is refused by name
    _write_csv(tmp_path / "other.csv", blobs, header="a,c,b")
    with pytest.raises(ValueError, match=r"^'.*other.csv' has the columns \['a', 'c', 'b'\]"):
        gm.predict(tmp_path / "other.csv")
