"""The ``fastem`` command: fit, predict, score, inspect and select mixture models from a shell.

Run ``fastem --help`` or ``fastem COMMAND --help``. Exit codes: 0 success,
1 the work failed (unreadable data, bad model file, failed fit), 2 the command
line is wrong. Errors are one line on stderr; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
#: ``--family`` name -> estimator class name in fastem.mixture (the model header's "family" key)
FAMILIES = {
    "gaussian": "GaussianMixture",
    "poisson": "PoissonMixture",
    "bernoulli": "BernoulliMixture",
    "multinomial": "MultinomialMixture",
    "vmf": "VonMisesFisherMixture",
}
#: what each family's data must look like, for --help
_FAMILY_DATA = {
    "gaussian": "real numbers",
    "poisson": "non-negative integer counts",
    "bernoulli": "0/1 features",
    "multinomial": "count vectors (each row at least one count)",
    "vmf": "unit-norm rows (or add --normalize)",
}
#: mclust's names for the same models, shown in the `select` table for readers who know mclust
MCLUST_NAMES = {"full": "VVV", "tied": "EEE", "diag": "VVI", "spherical": "VII"}
#: formats the in-memory fallback reads when fastem.sources is not installed
FALLBACK_FORMATS = (".npy", ".csv", ".tsv", ".txt")

#: suffixes accepted for model files (guards against `--out data.npy` overwriting data)
MODEL_SUFFIXES = (".npz", ".fastem")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

#: the Gaussian family's --reg-covar when it is not given (scikit-learn's default)
REG_COVAR = 1e-6

_CHUNK_ROWS_HELP = (
    "rows read and processed at a time when DATA is streamed from disk: smaller chunks use less "
    "memory, multiples of 4096 give the same result as an in-memory fit (default: about 32 MiB of rows)"
)
_THREADS_HELP = "threads, -1 for all (default: all)"
#: ``--missing``: what NaN in the data means (gaussian, poisson, bernoulli)
MISSING_CHOICES = ("error", "marginalize")
MISSING_FAMILIES = ("gaussian", "poisson", "bernoulli")
_MISSING_APPLY_HELP = (
    "gaussian, poisson, bernoulli models: marginalize scores rows with missing values (NaN, empty CSV "
    "fields, Parquet nulls) on their observed entries; error refuses them (default: the model's setting)"
)
_MISSING_HELP = (
    "gaussian, poisson, bernoulli: what a missing value means (NaN; in a CSV file also an empty field or "
    "NA, nan, null...; a Parquet null): error refuses it with its row named, marginalize treats it as a "
    "missing entry that EM marginalises out exactly (infinity and rows with nothing observed are still "
    "refused) (default: error)"
)


class UsageError(Exception):
    """The command line is wrong: exit code 2."""


class CommandError(Exception):
    """The requested work failed: exit code 1."""


# ============================================================================ argument parsing
class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line instead of argparse's usage block
        raise UsageError(f"{self.prog}: error: {message} (see '{self.prog} --help')")


def _number(convert, accept, expected: str):
    """An argparse ``type``: ``convert(text)``, refused unless ``accept(value)``."""

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not accept(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


_positive_int = _number(int, lambda v: v >= 1, "a positive integer")
_nonneg_int = _number(int, lambda v: v >= 0, "an integer >= 0")
_nonneg_float = _number(float, lambda v: v >= 0 and np.isfinite(v), "a finite number >= 0")


def _threads(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a thread count, got {text!r}") from None
    if value == 0:
        raise argparse.ArgumentTypeError(
            "0 threads has no meaning: use a positive count, or -1 for all cores"
        )
    return value


def parse_k_range(text: str) -> list[int]:
    """Component counts from ``"3"``, ``"1..10"``, ``"2-6"`` or ``"1,2,4,8"`` (combinations allowed).

    Raises
    ------
    argparse.ArgumentTypeError
        On anything else, or a count below 1, or an empty range.
    """
    values: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)\s*(?:\.\.|-|:)\s*(\d+)", part)
        if m:
            low, high = int(m.group(1)), int(m.group(2))
            if low > high:
                raise argparse.ArgumentTypeError(f"empty range {part!r}: write LOW..HIGH with LOW <= HIGH")
            values.update(range(low, high + 1))
        elif re.fullmatch(r"\d+", part):
            values.add(int(part))
        else:
            raise argparse.ArgumentTypeError(
                f"expected K, LOW..HIGH or a comma-separated list such as 1,2,4, got {text!r}"
            )
    if min(values) < 1:
        raise argparse.ArgumentTypeError(f"component counts must be >= 1, got {text!r}")
    return sorted(values)


def _covariance_list(text: str) -> list[str]:
    if text == "all":
        return list(COVARIANCE_TYPES)
    kinds = [k.strip() for k in text.split(",")]
    for k in kinds:
        if k not in COVARIANCE_TYPES:
            raise argparse.ArgumentTypeError(
                f"unknown covariance type {k!r}: use all or a comma-separated subset of "
                + ", ".join(COVARIANCE_TYPES)
            )
    return list(dict.fromkeys(kinds))


_EPILOG_MAIN = """\
examples:
  fastem fit data.npy -k 8 --out model.npz
  fastem predict model.npz data.npy --out labels.npy
  fastem predict model.npz data.npy --proba --out resp.npy
  fastem score model.npz test.csv
  fastem info model.npz
  fastem select data.parquet -k 1..10 --covariance all --out best.npz
  fastem demo --plot faithful.png

DATA is any format fastem reads: .npy, .csv (one row per sample, optional
header), and with fastem.sources also .parquet, .h5 (path.h5:dataset) and .zarr.
Model files are fastem's own documented .npz format (see `pydoc fastem.io`),
never pickle.

exit status: 0 success, 1 the work failed (unreadable file, invalid model,
failed fit), 2 the command line is wrong. Errors are one line on stderr;
add --debug for a traceback.
"""


def build_parser() -> argparse.ArgumentParser:
    """The ``fastem`` argument parser (exposed for documentation and tests)."""
    from . import __version__

    common = _Parser(add_help=False)
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks on errors"
    )

    fitting = _Parser(add_help=False)
    g = fitting.add_argument_group("EM options")
    g.add_argument(
        "--family",
        choices=tuple(FAMILIES),
        default="gaussian",
        help="mixture family (default: gaussian); the data must be "
        + "; ".join(f"{name}: {what}" for name, what in _FAMILY_DATA.items()),
    )
    g.add_argument(
        "--normalize",
        action="store_true",
        help="vmf only: divide each row by its norm instead of refusing rows that are not unit vectors",
    )
    g.add_argument(
        "--max-iter", type=_nonneg_int, default=100, metavar="N", help="EM iterations at most (default: 100)"
    )
    g.add_argument(
        "--tol",
        type=_nonneg_float,
        default=1e-3,
        help="stop when the mean log-likelihood per row gains less (default: 1e-3)",
    )
    g.add_argument(
        "--n-init", type=_positive_int, default=1, metavar="N", help="restarts; the best is kept (default: 1)"
    )
    g.add_argument(
        "--init",
        choices=("kmeans", "k-means++", "random", "random_from_data"),
        default="kmeans",
        help="initialisation (default: kmeans)",
    )
    g.add_argument(
        "--reg-covar",
        type=_nonneg_float,
        default=None,  # None: not given, so other families can refuse it; gaussian fills in REG_COVAR
        metavar="R",
        help=f"gaussian only: added to each covariance's diagonal, keeping it positive definite "
        f"(default: {np.format_float_scientific(REG_COVAR, exp_digits=1, trim='-')})",
    )
    g.add_argument(
        "--accelerate",
        choices=("squarem",),
        default=None,
        help="squarem: SQUAREM-accelerated EM (fewer passes over the data on slowly converging fits; "
        "the log-likelihood still never decreases) (default: plain EM)",
    )
    g.add_argument(
        "--algorithm",
        choices=("batch", "hard"),
        default="batch",
        help="batch: EM with soft responsibilities; hard: classification EM, every row fully assigned to "
        "its likeliest component (k-means-like; the classification log-likelihood never decreases) "
        "(default: batch)",
    )
    g.add_argument(
        "--prior",
        choices=("mclust",),
        default=None,
        help="gaussian only: mclust: MAP-EM under R mclust's default conjugate prior (priorControl()), "
        "which keeps covariances from collapsing; BIC/AIC are then at the MAP estimate (default: none)",
    )
    g.add_argument("--missing", choices=MISSING_CHOICES, default=None, help=_MISSING_HELP)
    g.add_argument(
        "--accumulation",
        choices=("float64", "float32"),
        default=None,
        help="gaussian only: float32: float32 sums per tile of rows for float32 data (a float32 .npy, "
        "HDF5 or Zarr file), about 1.6x the float64 speed for full covariances, parameters within 1e-5 "
        "relative of float64 sums; data of other dtypes are refused (default: float64)",
    )
    g.add_argument(
        "--seed", type=int, default=0, help="random seed; the same seed gives the same model (default: 0)"
    )
    g.add_argument("--threads", type=_threads, default=None, metavar="N", help=_THREADS_HELP)
    g.add_argument("--chunk-rows", type=_positive_int, default=None, metavar="N", help=_CHUNK_ROWS_HELP)
    g.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress on stderr: a bar when stderr is a terminal (needs tqdm); otherwise select prints "
        "one line per fit (default: automatic)",
    )

    parser = _Parser(
        prog="fastem",
        description="Fit mixture models (Gaussian, Poisson, Bernoulli, multinomial, von Mises-Fisher) "
        "by EM with fast parallel kernels.",
        epilog=_EPILOG_MAIN,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"fastem {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)

    def add(name: str, help_: str, epilog: str, parents=()) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            help=help_,
            description=help_,
            epilog="examples:\n" + epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
            parents=[common, *parents],
        )

    p = add(
        "fit",
        "Fit a mixture (Gaussian unless --family says otherwise) to DATA and save it as a model file.",
        "  fastem fit data.npy -k 8 --out model.npz\n"
        "  fastem fit data.csv -k 3 --covariance diag --n-init 5 --seed 1 --out model.npz\n"
        "  fastem fit counts.csv -k 4 --family poisson --out model.npz\n"
        "  fastem fit embeddings.npy -k 20 --family vmf --normalize --out model.npz\n"
        "  fastem fit big.npy -k 16 --chunk-rows 100000 --threads 8 --out model.npz\n",
        [fitting],
    )
    p.add_argument("data", metavar="DATA", help="training data (.npy, .csv, .parquet, .h5, .zarr)")
    p.add_argument("-k", "--n-components", type=_positive_int, required=True, metavar="K")
    p.add_argument(
        "--covariance",
        choices=COVARIANCE_TYPES,
        default=None,
        help="gaussian only: covariance type (default: full)",
    )
    p.add_argument("--out", "-o", required=True, metavar="MODEL", help="model file to write (.npz)")
    p.add_argument(
        "--require-converged", action="store_true", help="exit with status 1 if EM did not converge"
    )

    p = add(
        "predict",
        "Write the most probable component of each row of DATA (or, with --proba, all responsibilities).",
        "  fastem predict model.npz data.npy --out labels.npy\n"
        "  fastem predict model.npz data.csv --proba --out resp.csv\n",
    )
    p.add_argument("model", metavar="MODEL")
    p.add_argument("data", metavar="DATA")
    p.add_argument(
        "--out", "-o", required=True, metavar="FILE", help="labels (int64) or responsibilities: .npy or .csv"
    )
    p.add_argument("--proba", action="store_true", help="write the N x K responsibilities instead of labels")
    p.add_argument("--missing", choices=MISSING_CHOICES, default=None, help=_MISSING_APPLY_HELP)
    p.add_argument("--threads", type=_threads, default=None, metavar="N", help=_THREADS_HELP)
    p.add_argument("--chunk-rows", type=_positive_int, default=None, metavar="N", help=_CHUNK_ROWS_HELP)

    p = add(
        "score",
        "Log-likelihood of DATA under MODEL: mean per row, total, BIC and AIC.",
        "  fastem score model.npz test.npy\n  fastem score model.npz test.npy --json\n"
        "  fastem score model.npz test.npy --out logdens.npy\n",
    )
    p.add_argument("model", metavar="MODEL")
    p.add_argument("data", metavar="DATA")
    p.add_argument("--out", "-o", metavar="FILE", help="also write each row's log-density (.npy or .csv)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--missing", choices=MISSING_CHOICES, default=None, help=_MISSING_APPLY_HELP)
    p.add_argument("--threads", type=_threads, default=None, metavar="N", help=_THREADS_HELP)
    p.add_argument("--chunk-rows", type=_positive_int, default=None, metavar="N", help=_CHUNK_ROWS_HELP)

    p = add(
        "impute",
        "Write DATA with each missing value (NaN, an empty CSV field, a Parquet null) replaced by its "
        "conditional mean under MODEL given the row's observed values (gaussian, poisson, bernoulli models).",
        "  fastem impute model.npz holes.npy --out filled.npy\n"
        "  fastem impute model.npz holes.csv --out filled.csv\n",
    )
    p.add_argument("model", metavar="MODEL")
    p.add_argument("data", metavar="DATA")
    p.add_argument("--out", "-o", required=True, metavar="FILE", help="the completed rows: .npy or .csv")
    p.add_argument("--threads", type=_threads, default=None, metavar="N", help=_THREADS_HELP)
    p.add_argument("--chunk-rows", type=_positive_int, default=None, metavar="N", help=_CHUNK_ROWS_HELP)

    p = add(
        "info",
        "Describe a model file: parameters, fit record, training data fingerprint.",
        "  fastem info model.npz\n  fastem info model.npz --json\n",
    )
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--json", action="store_true", help="print the file header as JSON")

    p = add(
        "select",
        "Fit every (K, covariance type), print BIC and AIC tables, and keep the best model.",
        "  fastem select data.npy -k 1..9 --out best.npz\n"
        "  fastem select data.csv -k 2,4,8 --covariance full,diag --criterion aic\n"
        "  fastem select counts.csv -k 1..6 --family poisson --out best.npz\n",
        [fitting],
    )
    p.add_argument("data", metavar="DATA")
    p.add_argument(
        "-k",
        "--n-components",
        type=parse_k_range,
        default=parse_k_range("1..9"),
        metavar="KS",
        help="component counts: K, LOW..HIGH or a list 1,2,4 (default: 1..9)",
    )
    p.add_argument(
        "--covariance",
        type=_covariance_list,
        default=None,
        metavar="TYPES",
        help="gaussian only: all (default) or a comma-separated subset of full,tied,diag,spherical",
    )
    p.add_argument(
        "--criterion", choices=("bic", "aic"), default="bic", help="what 'best' means (default: bic)"
    )
    p.add_argument("--out", "-o", metavar="MODEL", help="save the best model here")

    p = add(
        "demo",
        "Fit the bundled Old Faithful data (2 full components) and print the model.",
        "  fastem demo\n  fastem demo --plot faithful.png\n",
    )
    p.add_argument(
        "--plot",
        metavar="PATH",
        help="also draw EM at work from a deliberately poor start (the model after 0, 1, 2, 5 and 10 "
        "iterations and the converged one, and the log-likelihood curve) to PATH (.png, .pdf, .svg)",
    )

    p = add(
        "compile",
        "Compile the numba kernels ahead of time into numba's on-disk cache, so that no fit waits for them.",
        "  fastem compile\n  fastem compile --family gaussian --covariance full,diag --dtype float64\n",
    )
    from ._compile import add_arguments as add_compile_arguments

    add_compile_arguments(p)
    return parser


# ============================================================================ data
def _sources_module():
    """``fastem.sources`` if installed, else None (then the in-memory fallback reads .npy and .csv)."""
    try:
        from . import sources
    except ModuleNotFoundError as exc:
        if exc.name != f"{__package__}.sources":
            raise
        return None
    return sources


def _data_for_estimator(path: str, chunk_rows: int | None) -> Any:
    """What to hand the estimator: an opened ``fastem.sources`` source (streamed), else an array.

    Opening the source checks that the input exists and is readable and gives
    its shape, before any long work starts.
    """
    sources = _sources_module()
    if sources is None:
        return load_in_memory(path)
    with _reading(path):
        return sources.as_source(path, chunk_rows=chunk_rows)


def load_in_memory(path: str) -> np.ndarray:
    """Fallback reader used only when ``fastem.sources`` is not installed: .npy or text into memory.

    Parameters
    ----------
    path : str
        A ``.npy`` file (memory-mapped, no pickle), or ``.csv``/``.tsv``/``.txt``
        text with one sample per row and an optional header line.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features)
    """
    if not os.path.exists(path):
        raise CommandError(f"data file '{path}' does not exist")
    suffix = Path(path).suffix.lower()
    if suffix not in FALLBACK_FORMATS:
        raise CommandError(
            f"cannot read '{path}': {suffix or 'this'} files need fastem.sources, which is not installed; "
            "convert the data to .npy or .csv"
        )
    try:
        if suffix == ".npy":
            X = np.load(path, mmap_mode="r", allow_pickle=False)
        else:
            delimiter = {".csv": ",", ".tsv": "\t"}.get(suffix)
            with open(path, encoding="utf-8") as f:
                first = f.readline()
            skip = 0 if _is_numeric_line(first, delimiter) else 1  # a header line
            X = np.loadtxt(path, delimiter=delimiter, skiprows=skip, dtype=np.float64, ndmin=2)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise CommandError(f"cannot read data file '{path}': {exc}") from None
    if X.ndim != 2:
        raise CommandError(f"data file '{path}' holds a {X.ndim}-D array; fastem needs rows x features (2-D)")
    if X.shape[0] == 0:
        raise CommandError(f"data file '{path}' has no rows")
    return X


def _is_numeric_line(line: str, delimiter: str | None) -> bool:
    try:
        [float(v) for v in line.strip().split(delimiter) if v.strip() != ""]
    except ValueError:
        return False
    return True


def _n_rows(data: Any) -> int | None:
    if isinstance(data, np.ndarray):
        return int(data.shape[0])
    n = getattr(data, "n_samples", None) or getattr(data, "n_rows", None)
    return int(n) if isinstance(n, (int, np.integer)) else None


def _write_array(path: str, a: np.ndarray, *, header: str | None = None) -> None:
    """Write an output array atomically as .npy or .csv (chosen by suffix)."""
    from .io import atomic_open

    suffix = Path(path).suffix.lower()
    with atomic_open(path) as f:
        if suffix == ".npy":
            np.lib.format.write_array(f, np.ascontiguousarray(a), allow_pickle=False)
        else:
            fmt = "%d" if a.dtype.kind in "iu" else "%.17g"
            np.savetxt(f, a, delimiter=",", fmt=fmt, header=header or "", comments="")


def _check_output(
    path: str | None, suffixes: tuple[str, ...] = (".npy", ".csv"), inputs: Sequence[str] = ()
) -> None:
    """Refuse an output path that cannot be written before doing any long work."""
    if path is None:
        return
    if Path(path).suffix.lower() not in suffixes:
        raise UsageError(f"fastem: error: output '{path}' must end in {' or '.join(suffixes)}")
    for source in inputs:  # `--out data.npy` would silently destroy the input
        if os.path.exists(source) and Path(source).resolve() == Path(path).resolve():
            raise UsageError(f"fastem: error: output '{path}' is also an input; choose another file")
    parent = Path(path).parent
    if not parent.is_dir():
        raise CommandError(f"cannot write '{path}': directory '{parent}' does not exist")
    if Path(path).is_dir():
        raise CommandError(f"cannot write '{path}': it is a directory")
    if not os.access(parent, os.W_OK):
        raise CommandError(f"cannot write '{path}': no permission to write in '{parent}'")


# ============================================================================ progress and warnings
@contextlib.contextmanager
def _em_progress(enabled: bool | None, max_iter: int, n_init: int, desc: str) -> Iterator[list]:
    """A tqdm bar over EM iterations (stderr), as a driver callback the command passes to ``fit``.

    Yields the list of callbacks to pass (empty without tqdm or when disabled);
    a converged run jumps the bar to the end of its restart.
    """
    total = max_iter * n_init
    if enabled is False or total == 0:
        yield []
        return
    try:
        from tqdm import tqdm
    except ImportError:
        if enabled:
            print("fastem: warning: --progress needs tqdm: pip install 'fastem[progress]'", file=sys.stderr)
        yield []
        return
    from ._em import Callback

    bar = tqdm(total=total, desc=desc, unit="it", file=sys.stderr, disable=None if enabled is None else False)

    class Progress(Callback):
        start = 0

        def on_run_start(self, init, params, lower_bounds):
            self.start = init * max_iter
            bar.update(max(0, self.start + len(lower_bounds) - bar.n))

        def on_iteration(self, it):
            bar.set_postfix_str(f"loglik/row {it.lower_bound:.6g}, change {it.change:.2g}", refresh=False)
            bar.update(1)

        def on_run_end(self, init, run, best):
            bar.update(max(0, self.start + max_iter - bar.n))

    try:
        yield [Progress()]
    finally:
        bar.close()


@contextlib.contextmanager
def _one_line_warnings() -> Iterator[list[str]]:
    """Collect warnings and print each as one line on stderr instead of Python's two-line form."""
    lines: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        try:
            yield lines
        finally:
            for w in caught:
                if w.category.__name__ == "ConvergenceWarning":
                    continue  # the commands report convergence themselves
                msg = _one_line(str(w.message))
                if msg not in lines:
                    lines.append(msg)
                    print(f"fastem: warning: {msg}", file=sys.stderr)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


# ============================================================================ commands
def _check_family_options(args, gaussian_default) -> None:
    """Fill in the Gaussian-only defaults, or refuse them (exit 2) when given with another family."""
    family = args.family
    if family == "gaussian":
        args.covariance = gaussian_default if args.covariance is None else args.covariance
        args.reg_covar = REG_COVAR if args.reg_covar is None else args.reg_covar
    else:
        given = [opt for opt, value in (("--covariance", args.covariance), ("--reg-covar", args.reg_covar),
                                        ("--prior", args.prior),
                                        ("--accumulation", getattr(args, "accumulation", None)))
                 if value is not None]  # fmt: skip
        if given:
            verb, pronoun = ("apply", "them") if len(given) > 1 else ("applies", "it")
            raise UsageError(
                f"fastem {args.command}: error: {' and '.join(given)} only {verb} to --family gaussian, "
                f"not {family}; drop {pronoun}"
            )
    if args.normalize and family != "vmf":
        raise UsageError(
            f"fastem {args.command}: error: --normalize only applies to --family vmf, not {family}"
        )
    if args.missing is not None and family not in MISSING_FAMILIES:
        raise UsageError(
            f"fastem {args.command}: error: --missing only applies to --family "
            f"{', '.join(MISSING_FAMILIES)}, not {family}"
        )


def _estimator(args, n_components: int, covariance: str | None):
    from . import mixture

    cls = getattr(mixture, FAMILIES[args.family])
    common = dict(
        tol=args.tol,
        max_iter=args.max_iter,
        n_init=args.n_init,
        init_params=args.init,
        random_state=args.seed,
        n_jobs=args.threads,
        accelerate=args.accelerate,
    )
    if args.family in MISSING_FAMILIES:
        common["missing"] = args.missing or "error"
    if args.family == "gaussian":
        return cls(
            n_components, covariance_type=covariance, reg_covar=args.reg_covar, prior=args.prior,
            accumulation=getattr(args, "accumulation", None) or "float64", **common,
        )  # fmt: skip
    if args.family == "vmf":
        return cls(n_components, normalize=args.normalize, **common)
    return cls(n_components, **common)


def _model_name(family: str, covariance: str | None) -> str:
    """How the commands name a model kind: the covariance type for Gaussians, else the family."""
    return covariance if family == "gaussian" else family


@contextlib.contextmanager
def _reading(path: str) -> Iterator[None]:
    """Turn the estimator's and the readers' errors into one-line command errors naming ``path``."""
    try:
        yield
    except FileNotFoundError as exc:
        if not os.path.exists(path.rpartition(":")[0] or path) and not os.path.exists(path):
            raise CommandError(f"data file '{path}' does not exist") from None
        raise CommandError(_one_line(exc)) from None
    except ImportError as exc:  # an optional reader (pyarrow, h5py, zarr) is missing
        raise CommandError(_one_line(exc)) from None
    except (OSError, ValueError, TypeError) as exc:
        message = _one_line(exc)
        if message.startswith(f"'{path}'"):  # the reader named the file already
            raise CommandError(message) from None
        raise CommandError(f"{path}: {message}") from None


def _fit(gm, data: Any, path: str, callbacks=None, algorithm: str = "batch") -> None:
    try:
        with _reading(path):
            gm.fit(data, callbacks=callbacks, algorithm=algorithm)
    except CommandError as exc:  # the estimator's advice names its Python option; give the flag
        raise CommandError(_as_flags(str(exc))) from None


def _as_flags(message: str) -> str:
    """The estimator's advice in command-line terms: its Python options become flags."""
    return message.replace("pass normalize=True", "add --normalize").replace(
        "pass missing='marginalize'", "add --missing marginalize"
    )


def _save(gm, out: str, path: str, data: Any) -> None:
    """Save with the training data's fingerprint (of the file) and shape (when known)."""
    from .io import save

    n = _n_rows(data)
    shape = None if n is None else (n, gm.n_features_in_)
    try:
        save(gm, out, data=path, data_shape=shape)
    except OSError as exc:
        raise CommandError(f"cannot write model file '{out}': {_one_line(exc)}") from None


def cmd_fit(args) -> int:
    _check_family_options(args, "full")
    _check_output(args.out, MODEL_SUFFIXES, [args.data])
    data = _data_for_estimator(args.data, args.chunk_rows)
    gm = _estimator(args, args.n_components, args.covariance)
    tic = time.perf_counter()
    with _one_line_warnings(), _em_progress(args.progress, args.max_iter, args.n_init, "EM") as progress:
        _fit(gm, data, args.data, progress, algorithm=getattr(args, "algorithm", "batch"))
    seconds = time.perf_counter() - tic
    n = _n_rows(data)
    _save(gm, args.out, args.data, data)
    rows = f"{n} rows" if n is not None else "rows"
    what = f"{args.n_components} {_model_name(args.family, args.covariance)} components"
    print(f"fitted {what} to {args.data} ({rows} x {gm.n_features_in_} features)")
    state = "yes" if gm.converged_ else f"NO (change still >= tol {args.tol:g} after --max-iter)"
    print(f"  iterations:      {gm.n_iter_}  converged: {state}")
    if gm.n_iter_:
        total = f"{gm.lower_bound_ * n:.4f} total, " if n is not None else ""
        kind = ", classification log-likelihood of hard EM" if gm.algorithm_ == "hard" else ""
        print(f"  log-likelihood:  {total}{gm.lower_bound_:.6f} per row (at the last E-step{kind})")
    print(f"  seconds:         {seconds:.2f}")
    print(f"  model:           {args.out}")
    if not gm.converged_ and args.max_iter > 0:
        print(
            f"fastem: warning: EM did not converge in {gm.n_iter_} iterations; "
            "raise --max-iter or --tol, or try --n-init",
            file=sys.stderr,
        )
        if args.require_converged:
            return EXIT_FAILED
    return EXIT_OK


def _load_model(path: str):
    from .io import ModelFileError
    from .mixture import load

    try:
        return load(path)
    except FileNotFoundError:
        raise CommandError(f"model file '{path}' does not exist") from None
    except ModelFileError as exc:
        raise CommandError(_one_line(exc)) from None


def _apply(method, data: Any, path: str, out: str | None = None) -> np.ndarray:
    """``method(data)``; with ``out`` (.npy) the estimator streams the result to that file."""
    try:
        with _reading(path):
            return method(data) if out is None else method(data, out=out)
    except CommandError as exc:
        message = _as_flags(_one_line(exc))
        if message.startswith(f"'{path}'"):  # "'x.csv' contains ...": a sentence of its own
            raise CommandError(f"cannot apply the model: {message}") from None
        raise CommandError(f"cannot apply the model to {message}") from None


def _streams_npy(path: str | None) -> bool:
    """Whether the estimator can write ``path`` itself (bounded memory, atomic): .npy with sources."""
    return path is not None and path.lower().endswith(".npy") and _sources_module() is not None


def _model_and_data(args):
    """(model, data, .npy path the estimator writes itself or None) for ``predict`` and ``score``."""
    _check_output(args.out, inputs=[args.model, args.data])
    gm = _load_model(args.model)
    if args.threads is not None:
        gm.n_jobs = args.threads
    missing = getattr(args, "missing", None)
    if missing is not None:
        if "missing" not in gm.get_params():
            raise UsageError(
                f"fastem {args.command}: error: --missing only applies to models of the families "
                f"{', '.join(MISSING_FAMILIES)}; {args.model} holds a {type(gm).__name__}"
            )
        gm.missing = missing
    data = _data_for_estimator(args.data, args.chunk_rows)
    direct = args.out if _streams_npy(args.out) else None
    return gm, data, direct


def cmd_predict(args) -> int:
    gm, data, direct = _model_and_data(args)
    with _one_line_warnings():
        if args.proba:
            result = _apply(gm.predict_proba, data, args.data, direct)
            header = ",".join(f"p{k}" for k in range(result.shape[1]))
        else:
            result = _apply(gm.predict, data, args.data, direct)
            header = "label"
    if direct is None:
        _write_array(args.out, result, header=header)
    if args.proba:
        print(f"wrote {result.shape[0]} x {result.shape[1]} responsibilities to {args.out}")
    else:
        counts = np.bincount(result, minlength=gm.n_components)
        sizes = ", ".join(f"{k}: {c}" for k, c in enumerate(counts))
        print(f"wrote {result.shape[0]} labels to {args.out} (rows per component: {sizes})")
    return EXIT_OK


def _criteria(gm, logprob: np.ndarray) -> dict:
    n = logprob.shape[0]
    total = float(logprob.sum())
    p = gm._n_parameters()
    return {
        "n_samples": n,
        "log_likelihood": total,
        "mean_log_likelihood": total / n,
        "n_parameters": p,
        "bic": -2 * total + p * np.log(n),
        "aic": -2 * total + 2 * p,
    }


def cmd_score(args) -> int:
    gm, data, direct = _model_and_data(args)
    with _one_line_warnings():
        logprob = _apply(gm.score_samples, data, args.data, direct)
    result = _criteria(gm, logprob)
    if args.out and direct is None:
        _write_array(args.out, logprob, header="log_density")
    if args.json:
        print(json.dumps({"model": args.model, "data": args.data, **result}))
        return EXIT_OK
    print(f"{args.data}: {result['n_samples']} rows under {args.model}")
    print(f"  mean log-likelihood per row: {result['mean_log_likelihood']:.6f}")
    print(f"  total log-likelihood:        {result['log_likelihood']:.4f}")
    print(f"  BIC: {result['bic']:.2f}  AIC: {result['aic']:.2f}  ({result['n_parameters']} free parameters)")
    if args.out:
        print(f"  per-row log-densities written to {args.out}")
    return EXIT_OK


def cmd_impute(args) -> int:
    gm, data, direct = _model_and_data(args)
    if not hasattr(gm, "impute"):
        raise CommandError(
            f"{args.model} holds a {type(gm).__name__}, which cannot impute: impute takes a model of the "
            f"families {', '.join(MISSING_FAMILIES)}"
        )
    with _one_line_warnings():
        result = _apply(gm.impute, data, args.data, direct)
    if direct is None:
        names = getattr(gm, "feature_names_in_", None)
        header = ",".join(map(str, names)) if names is not None else None
        _write_array(args.out, result, header=header)
    print(f"wrote {result.shape[0]} x {result.shape[1]} rows with missing values filled to {args.out}")
    return EXIT_OK


def cmd_info(args) -> int:
    from .io import ModelFileError, read_header

    try:
        header = read_header(args.model)
    except FileNotFoundError:
        raise CommandError(f"model file '{args.model}' does not exist") from None
    except ModelFileError as exc:
        raise CommandError(_one_line(exc)) from None
    gm = _load_model(args.model)  # full validation, so `info` never vouches for a damaged file
    if args.json:
        print(json.dumps(header, indent=1))
        return EXIT_OK
    fit, data = header["fit"], header["data"]
    K, D = header["n_components"], header["n_features"]
    estimator, family = header["estimator"], header.get("family", "gaussian")
    if family == "gaussian":
        print(f"{args.model}: fastem {estimator}, model format {header['format_version']}")
    else:
        print(f"{args.model}: fastem {estimator} ({family} family), model format {header['format_version']}")
    print(f"  written by fastem {header['fastem_version']} at {header['created']}")
    kind = header["covariance_type"] if family == "gaussian" else family
    print(f"  {K} {kind} components in {D} dimensions ({gm._n_parameters()} parameters)")
    if family == "vmf":
        print(
            f"  rows normalised by fastem: {'yes' if header.get('normalize') else 'no (unit rows required)'}"
        )
    lb = fit["lower_bound"]
    hard = header.get("algorithm") == "hard"
    print(
        f"  fit: {fit['n_iter']} iterations{' of hard (classification) EM' if hard else ''}, "
        f"converged: {'yes' if fit['converged'] else 'no'}, "
        f"mean {'classification ' if hard else ''}log-likelihood {lb:.6f} per row"
    )
    if data is None:
        print("  training data: not recorded")
    else:
        shape = f"{data['n_samples']} x {data['n_features']}" if data["n_samples"] is not None else "shape ?"
        where = f" from {data['path']}" if data.get("path") else ""
        print(f"  training data: {shape}{where}")
        print(f"    fingerprint {data['fingerprint']}")
    hyper = header["hyperparameters"]
    shown = ("tol", "reg_covar", "max_iter", "n_init", "init_params", "random_state")
    print("  hyper-parameters: " + ", ".join(f"{k}={hyper[k]!r}" for k in shown if k in hyper))
    if hyper.get("missing", "error") != "error":
        print(f"  missing values:  {hyper['missing']} (NaN marks a missing entry)")
    if hyper.get("accumulation", "float64") != "float64":
        print(f"  accumulation:    {hyper['accumulation']} (float32 sums per tile of rows)")
    with np.printoptions(precision=4, suppress=True, linewidth=100):
        order = np.argsort(-gm.weights_)
        print("  components (by weight):")
        for k in order[:20]:
            print(f"    {k:>3}  weight {gm.weights_[k]:.4f}  {_component_summary(gm, family, k)}")
        if K > 20:
            print(f"    ... {K - 20} more (fastem info --json or fastem.load for all)")
    for note in header.get("notes", []):
        print(f"  note: {note}")
    return EXIT_OK


#: the fitted parameter array `info` shows per component, and how it labels it
_INFO_VECTOR = {
    "gaussian": ("means_", "mean"),
    "poisson": ("rates_", "rates"),
    "bernoulli": ("probabilities_", "P(x=1)"),
    "multinomial": ("probabilities_", "probabilities"),
    "vmf": ("mean_directions_", "direction"),
}
#: features shown per component before `info` elides the rest
_INFO_FEATURES = 8


def _component_summary(gm, family: str, k: int) -> str:
    """One component's parameters for `info`: kappa for vMF, then its per-feature vector (shortened)."""
    attribute, label = _INFO_VECTOR[family]
    vector = getattr(gm, attribute)[k]
    kappa = gm.concentrations_[k] if family == "vmf" else None
    head = "" if kappa is None else f"kappa {kappa:.2f}  " if kappa < 1e6 else f"kappa {kappa:.3e}  "
    if family == "gaussian" or vector.size <= _INFO_FEATURES:
        return f"{head}{label} {vector}"
    shown = np.array2string(vector[: _INFO_FEATURES - 2])[:-1]  # drop "]" to append the elision
    return f"{head}{label} {shown} ...] +{vector.size - _INFO_FEATURES + 2} more"


def cmd_select(args) -> int:
    _check_family_options(args, list(COVARIANCE_TYPES))
    _check_output(args.out, MODEL_SUFFIXES, [args.data])
    data = _data_for_estimator(args.data, args.chunk_rows)
    # one column per covariance type for Gaussians; the other families have no such dimension
    ks, kinds = args.n_components, args.covariance if args.family == "gaussian" else [args.family]
    table: dict[tuple[int, str], dict | None] = {}
    best = None
    cells = [(k, kind) for k in ks for kind in kinds]
    with _one_line_warnings(), _select_progress(len(cells), args.progress, args.criterion) as report:
        for k, kind in cells:
            gm = _estimator(args, k, kind)
            tic = time.perf_counter()
            try:
                _fit(gm, data, args.data, algorithm=args.algorithm)
                scores = _criteria(gm, _apply(gm.score_samples, data, args.data))
            except CommandError as exc:
                print(f"fastem: warning: K={k} {kind}: {_one_line(exc)}", file=sys.stderr)
                table[k, kind] = None
                report(k, kind, None, gm, time.perf_counter() - tic)
                continue
            scores["converged"] = gm.converged_
            report(k, kind, scores, gm, time.perf_counter() - tic)
            table[k, kind] = scores
            if best is None or scores[args.criterion] < best[0][args.criterion]:
                best = (scores, k, kind, gm)
    if best is None:
        raise CommandError("every fit failed; see the warnings above")
    n = best[0]["n_samples"]
    print(f"{args.data}: {n} rows; model selection over K = {_k_text(ks)} (seed {args.seed})")
    for crit in ("bic", "aic"):
        print()
        print(_criterion_table(table, ks, kinds, crit))
    ranked = sorted(((s[args.criterion], k, kind) for (k, kind), s in table.items() if s), key=lambda t: t[0])
    print(f"\nTop {min(3, len(ranked))} models by {args.criterion.upper()}:")
    for value, k, kind in ranked[:3]:
        print(f"  {_column_label(kind)}, K={k}: {value:.2f}")
    if any(s is not None and not s["converged"] for s in table.values()):
        print("(~ marks fits that did not converge within --max-iter)")
    if args.prior is not None:
        print(f"(BIC and AIC are evaluated at the MAP estimate under the {args.prior} prior, as mclust does)")
    scores, k, kind, gm = best
    summary = f"best: {kind}, K={k} ({args.criterion.upper()} {scores[args.criterion]:.2f})"
    if args.out:
        _save(gm, args.out, args.data, data)
        print(f"{summary} saved to {args.out}")
    else:
        print(f"{summary}; use --out to save it")
    return EXIT_OK


@contextlib.contextmanager
def _select_progress(n_fits: int, enabled: bool | None, criterion: str) -> Iterator[Callable]:
    """Progress of ``select``; yields ``report(k, kind, scores or None, gm, seconds)``, called after each fit.

    A tqdm bar when stderr is a terminal (or ``--progress`` asks for it);
    otherwise (a log file, a pipe, CI, or no tqdm) one plain line per fit,
    since a bar's carriage returns would make an unreadable log; nothing with
    ``--no-progress``.
    """
    if enabled is False:
        yield lambda *_: None
        return
    bar = None
    if enabled or _is_terminal(sys.stderr):
        try:
            from tqdm import tqdm
        except ImportError:
            pass
        else:
            bar = tqdm(total=n_fits, desc="select", unit="model", file=sys.stderr)
    if bar is not None:
        try:
            yield lambda *_: bar.update(1)
        finally:
            bar.close()
        return
    done = 0
    width = len(str(n_fits))

    def report(k: int, kind: str, scores: dict | None, gm, seconds: float) -> None:
        nonlocal done
        done += 1
        if scores is None:
            result = "failed"
        else:
            state = "converged" if scores["converged"] else "did not converge"
            result = f"{criterion.upper()} {scores[criterion]:.2f}, {state} after {gm.n_iter_} iterations"
        print(
            f"fastem select: [{done:>{width}}/{n_fits}] K={k} {kind}: {result} ({seconds:.2f} s)",
            file=sys.stderr,
            flush=True,
        )

    yield report


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _k_text(ks: list[int]) -> str:
    if ks == list(range(ks[0], ks[-1] + 1)) and len(ks) > 2:
        return f"{ks[0]}..{ks[-1]}"
    return ",".join(map(str, ks))


def _column_label(kind: str) -> str:
    """A covariance type with its mclust name ("full (VVV)"), or a family name as it is."""
    return f"{kind} ({MCLUST_NAMES[kind]})" if kind in MCLUST_NAMES else kind


def _criterion_table(table: dict, ks: list[int], kinds: list[str], crit: str) -> str:
    """An mclust-style table: rows K, columns covariance types (or the family); '*' marks the best."""
    values = [s[crit] for s in table.values() if s is not None]
    best = min(values) if values else None
    width = 14
    head = f"{crit.upper()} (lower is better)".ljust(22)
    lines = [head, "   K" + "".join(_column_label(kind).rjust(width + 2) for kind in kinds)]
    for k in ks:
        row = f"{k:>4}"
        for kind in kinds:
            s = table.get((k, kind))
            if s is None:
                cell = "failed"
            else:
                mark = "*" if s[crit] == best else ("~" if not s["converged"] else " ")
                cell = f"{s[crit]:.2f}{mark}"
            row += cell.rjust(width + 2)
        lines.append(row)
    return "\n".join(line.rstrip() for line in lines)


class _CompileWatch:
    """Listens to numba's compile events for fastem's kernels; see :func:`_compile_notice`."""

    def __init__(self, stream):
        self.stream = stream
        self.compiled = False
        self.seconds = 0.0
        self._depth = 0
        self._tic = 0.0

    def on_start(self, event) -> None:
        dispatcher = (event.data or {}).get("dispatcher")
        module = getattr(getattr(dispatcher, "py_func", None), "__module__", "") or ""
        if self._depth == 0 and not module.startswith(f"{__package__}."):
            return  # someone else's function: not ours to announce
        if not self.compiled:
            self.compiled = True
            where = getattr(getattr(dispatcher, "_cache", None), "cache_path", None)
            cached = f", cached in {where}" if where else ""
            print(f"compiling fastem kernels (first use only{cached}) ...", file=self.stream, flush=True)
        if self._depth == 0:
            self._tic = time.perf_counter()
        self._depth += 1

    def on_end(self, event) -> None:
        if self._depth == 0:
            return
        self._depth -= 1
        if self._depth == 0:  # kernels called from kernels compile inside their caller: count once
            self.seconds += time.perf_counter() - self._tic


@contextlib.contextmanager
def _compile_notice(stream=None) -> Iterator[_CompileWatch]:
    """Print one line on ``stream`` (stderr) when, and only when, numba compiles a fastem kernel.

    numba fires its "numba:compile" event only on a real compilation, not when
    a kernel is loaded from the on-disk cache, so a warm cache prints nothing.
    The yielded watch reports whether anything compiled and for how long.
    """
    watch = _CompileWatch(sys.stderr if stream is None else stream)
    try:
        from numba.core import event
    except ImportError:  # an API numba may move: then say nothing rather than fail the command
        yield watch
        return

    class Listener(event.Listener):
        def on_start(self, ev):
            watch.on_start(ev)

        def on_end(self, ev):
            watch.on_end(ev)

    from ._kernels._notice import notice

    previous, notice.enabled = notice.enabled, False  # this command prints its own line, not the library's
    try:
        with event.install_listener("numba:compile", Listener()):
            yield watch
    finally:
        notice.enabled = previous


def cmd_compile(args) -> int:
    from ._compile import run_command

    return run_command(args)


def cmd_demo(args) -> int:
    if args.plot is not None:
        _check_output(args.plot, (".png", ".pdf", ".svg"))
        try:  # fail before fitting if the extra is missing
            from .plot import require_matplotlib

            require_matplotlib()
        except ImportError as exc:
            raise CommandError(_one_line(exc)) from None
    with _compile_notice() as watch:  # one notice for the whole command, and only if anything compiles
        _demo(args, watch)
    return EXIT_OK


def _demo(args, watch: _CompileWatch) -> None:
    from . import __version__
    from .datasets import load_old_faithful
    from .mixture import GaussianMixture

    X = load_old_faithful()
    n = X.shape[0]
    tic, compiling = time.perf_counter(), watch.seconds
    gm = GaussianMixture(n_components=2, covariance_type="full", tol=1e-8, random_state=0).fit(X)
    seconds, compiling = time.perf_counter() - tic, watch.seconds - compiling
    timing = f"{seconds:.2f} s"
    if compiling > 0:  # say what the wait was, and how long the fit itself took
        timing = f"{max(seconds - compiling, 0.0):.2f} s (+ {compiling:.1f} s compiling the kernels, once)"
    order = np.argsort(gm.means_[:, 0])
    np.set_printoptions(precision=4, suppress=True)
    print(
        f"fastem {__version__}: Old Faithful ({n} eruptions x {X.shape[1]} features), "
        "2 full-covariance components"
    )
    print(f"default (k-means) start: converged: {gm.converged_} after {gm.n_iter_} iterations in {timing}")
    for rank, k in enumerate(order):
        print(f"\ncomponent {rank}: weight {gm.weights_[k]:.4f}")
        print(f"  mean (eruptions, waiting): {gm.means_[k]}")
        print("  covariance:")
        for row in gm.covariances_[k]:
            print(f"    {row}")
    total = gm.score(X) * n
    print(f"\nlog-likelihood: {total:.4f}  ({total / n:.5f} per sample)")
    print(f"BIC: {gm.bic(X):.2f}  AIC: {gm.aic(X):.2f}")
    if args.plot is None:
        return
    from .plot import faithful_em_figure, faithful_em_trace

    trace = faithful_em_trace(X)
    faithful_em_figure(X, trace).savefig(args.plot, dpi=110)
    # the figure's run differs from the one above by its start only: say so, and compare the ends
    start, end = trace.lower_bounds[0] * n, trace.lower_bounds[-1] * n
    verb = "converges" if trace.converged else "stops"
    if abs(end - total) <= 1e-6 * abs(total):  # both runs stop at tol 1e-8 per sample
        where = f"at the same optimum, {end:.4f}"
    else:
        where = f"at {end:.4f}, not at the optimum above ({total:.4f})"
    print(f"\nplot of EM at work written to {args.plot}")
    print("  The figure runs EM from a deliberately poor start (means across the two clusters, as")
    print(f"  in Bishop 2006, Fig. 9.8), not from the k-means start above: from log-likelihood {start:.2f}")
    print(f"  it {verb} after {trace.n_iter} iterations (not {gm.n_iter_}) {where}.")


COMMANDS = {
    "fit": cmd_fit,
    "predict": cmd_predict,
    "score": cmd_score,
    "impute": cmd_impute,
    "info": cmd_info,
    "select": cmd_select,
    "demo": cmd_demo,
    "compile": cmd_compile,
}


# ============================================================================ entry point
def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``fastem`` command; returns the exit status (0 ok, 1 failed work, 2 usage error).

    Parameters
    ----------
    argv : sequence of str, default=None
        Arguments without the program name; ``sys.argv[1:]`` when None.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv  # known before parsing, so even parse failures can show a traceback
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except UsageError as exc:
        if debug:
            raise
        print(_one_line(exc), file=sys.stderr)
        return EXIT_USAGE
    except CommandError as exc:
        if debug:
            raise
        print(f"fastem: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_FAILED
    except SystemExit as exc:  # --help and --version exit through argparse
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    except KeyboardInterrupt:
        print("fastem: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `fastem info m.npz | head -1`: the reader left; exit quietly like Unix tools
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the final flush at exit cannot fail again
        return 128 + 13
    except Exception as exc:  # anything unforeseen: still one line, unless --debug
        if debug:
            raise
        detail = f"{type(exc).__name__}: {_one_line(exc)}"
        print(f"fastem: error: {detail} (rerun with --debug for details)", file=sys.stderr)
        return EXIT_FAILED
