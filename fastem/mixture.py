"""GaussianMixture: the scikit-learn-compatible estimator on top of the EM driver."""

from __future__ import annotations

import os
import warnings
from numbers import Integral, Real

import numpy as np

from ._base import (
    EstimatorBase,
    as_float_array,
    check_feature_names,
    check_is_fitted,
    check_random_state,
    convergence_warning,
    feature_names,
)
from ._em import fit_restarts
from ._executor import ArrayExecutor, FitPlan
from ._init import initial_params
from ._kernels.gaussian import _first_nonfinite
from ._stats import (
    COVARIANCE_TYPES,
    GaussianParams,
    covariance_shape,
    precisions_from_precisions_cholesky,
)
from ._threads import thread_limit

INIT_METHODS = ("kmeans", "k-means++", "random", "random_from_data")


def _check_finite(X: np.ndarray, name: str = "X") -> None:
    """Raise a ValueError naming the first NaN/inf (row, column), without temporaries."""
    with thread_limit(None, X.shape[0]):
        flat = _first_nonfinite(X)
    if flat >= 0:
        row, col = divmod(int(flat), X.shape[1])
        value = X[row, col]
        kind = "NaN" if np.isnan(value) else "infinity"
        raise ValueError(
            f"Input {name} contains {kind} at row {row}, column {col} (the first non-finite "
            "value). Remove or impute NaN and inf values before calling fastem."
        )


def _is_dask_collection(X) -> bool:
    """A Dask array or dataframe (checked by module name, so dask stays optional)."""
    return type(X).__module__.split(".")[0] == "dask"


def _is_source(X) -> bool:
    """A path, a callable yielding chunks, or a ``fastem.sources`` object."""
    return isinstance(X, (str, os.PathLike)) or callable(X) or getattr(X, "_is_fastem_source", False)


def _check_choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"Invalid value for '{name}': {value!r}. Allowed values are {list(allowed)}.")


def _check_number(name, value, kind, low, *, strict=False, allow_none=False) -> None:
    if value is None and allow_none:
        return
    ok = isinstance(value, kind) and not isinstance(value, bool)
    if ok:
        ok = value > low if strict else value >= low
    if not ok:
        sign = ">" if strict else ">="
        what = "an integer" if kind is Integral else "a real number"
        raise ValueError(f"Invalid value for '{name}': {value!r}. It must be {what} {sign} {low}.")


class GaussianMixture(EstimatorBase):
    """Gaussian mixture model fitted by Expectation-Maximization, with fused numba kernels.

    Drop-in replacement for :class:`sklearn.mixture.GaussianMixture` (same
    parameters, methods and fitted attributes), plus ``n_jobs`` and
    ``sample_weight``. Each EM iteration is one parallel pass over the data
    that computes the responsibilities and the weighted moments together, in
    float64, without any N x K or N x D temporary array.

    Parameters
    ----------
    n_components : int, default=1
        Number of mixture components.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}, default='full'
        'full': each component has its own general covariance matrix;
        'tied': all components share one general covariance matrix;
        'diag': each component has its own diagonal covariance matrix;
        'spherical': each component has its own single variance.
    tol : float, default=1e-3
        Convergence threshold on the change of the mean log-likelihood.
    reg_covar : float, default=1e-6
        Non-negative regularization added to the diagonal of covariances.
    max_iter : int, default=100
        Number of EM iterations to perform.
    n_init : int, default=1
        Number of initializations; the best result (highest lower bound) is kept.
    init_params : {'kmeans', 'k-means++', 'random', 'random_from_data'}, default='kmeans'
        Initialization: k-means++ seeding then Lloyd iterations, k-means++ seeds
        only, random responsibilities, or randomly chosen data points.
    weights_init : array-like of shape (n_components,), default=None
        User-provided initial weights.
    means_init : array-like of shape (n_components, n_features), default=None
        User-provided initial means.
    precisions_init : array-like, default=None
        User-provided initial precisions (inverse covariances); shape
        (n_components,) spherical, (n_features, n_features) tied,
        (n_components, n_features) diag, (n_components, n_features, n_features) full.
    random_state : int, RandomState instance or None, default=None
        Seed for initialization and :meth:`sample`.
    warm_start : bool, default=False
        Start the next ``fit`` from the current solution (``n_init`` is ignored).
    verbose : int, default=0
        1 prints each initialization and iteration count, 2 adds timings and
        log-likelihood changes.
    verbose_interval : int, default=10
        Iterations between progress messages.
    n_jobs : int or None, default=None
        Number of threads for the kernels; None uses all cores, -1 all, -2 all but one.
    init_sample_size : int, default=100_000
        When fitting on a data source (see :mod:`fastem.sources`), the
        initialisation runs on a uniform reservoir sample of at most this many
        rows, drawn in one pass and reproducible from ``random_state``. A
        source with at most this many rows is initialised exactly like the
        same data in memory.
    batch_size : int, default=65_536
        Rows per mini-batch of ``fit(..., algorithm="online")``.
    learning_decay : float, default=0.6
        kappa in (0.5, 1] of the online step size eta_t = (t + learning_offset) ** -kappa
        (:meth:`partial_fit` and ``algorithm="online"``); larger forgets old batches faster.
    learning_offset : float, default=2.0
        t0 >= 0 of the online step size; larger damps the first updates.

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
    means_ : ndarray of shape (n_components, n_features)
    covariances_ : ndarray, shape depends on ``covariance_type``
    precisions_ : ndarray, shape depends on ``covariance_type``
    precisions_cholesky_ : ndarray, shape depends on ``covariance_type``
        Upper-triangular U with precision = U U^T (full, tied), or 1/sqrt(variance).
    converged_ : bool
    n_iter_ : int
    lower_bound_ : float
        Mean log-likelihood at the start of the last iteration of the best run.
    lower_bounds_ : list of float
        Mean log-likelihood at every iteration of the best run; non-decreasing.
    n_features_in_ : int
    n_steps_ : int
        Online updates made so far (:meth:`partial_fit`, ``algorithm="online"``).

    Examples
    --------
    >>> import numpy as np
    >>> from fastem import GaussianMixture
    >>> X = np.array([[1, 2], [1, 4], [1, 0], [10, 2], [10, 4], [10, 0]], dtype=float)
    >>> gm = GaussianMixture(n_components=2, random_state=0).fit(X)
    >>> np.sort(gm.means_[:, 0])
    array([ 1., 10.])
    """

    def __init__(
        self,
        n_components: int = 1,
        *,
        covariance_type: str = "full",
        tol: float = 1e-3,
        reg_covar: float = 1e-6,
        max_iter: int = 100,
        n_init: int = 1,
        init_params: str = "kmeans",
        weights_init=None,
        means_init=None,
        precisions_init=None,
        random_state=None,
        warm_start: bool = False,
        verbose: int = 0,
        verbose_interval: int = 10,
        n_jobs: int | None = None,
        init_sample_size: int = 100_000,
        batch_size: int = 65_536,
        learning_decay: float = 0.6,
        learning_offset: float = 2.0,
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.n_jobs = n_jobs
        self.init_sample_size = init_sample_size
        self.batch_size = batch_size
        self.learning_decay = learning_decay
        self.learning_offset = learning_offset

    # ------------------------------------------------------------------ validation
    def _check_parameters(self, n_features: int) -> dict:
        """Validate hyper-parameters and ``*_init`` arrays; return the arrays as float64."""
        _check_number("n_components", self.n_components, Integral, 1)
        _check_choice("covariance_type", self.covariance_type, COVARIANCE_TYPES)
        _check_number("tol", self.tol, Real, 0.0)
        _check_number("reg_covar", self.reg_covar, Real, 0.0)
        _check_number("max_iter", self.max_iter, Integral, 0)
        _check_number("n_init", self.n_init, Integral, 1)
        _check_choice("init_params", self.init_params, INIT_METHODS)
        _check_number(
            "verbose", int(self.verbose) if isinstance(self.verbose, bool) else self.verbose, Integral, 0
        )
        _check_number("verbose_interval", self.verbose_interval, Integral, 1)
        if not isinstance(self.warm_start, (bool, np.bool_)):
            raise ValueError(
                f"Invalid value for 'warm_start': {self.warm_start!r}. It must be True or False."
            )
        if self.n_jobs is not None and (
            not isinstance(self.n_jobs, Integral) or isinstance(self.n_jobs, bool) or self.n_jobs == 0
        ):
            raise ValueError(
                f"Invalid value for 'n_jobs': {self.n_jobs!r}. Use None (all cores), a positive "
                "thread count, or a negative count (-1 = all cores)."
            )
        _check_number("init_sample_size", self.init_sample_size, Integral, 1)
        _check_number("batch_size", self.batch_size, Integral, 1)
        _check_number("learning_offset", self.learning_offset, Real, 0.0)
        if not (
            isinstance(self.learning_decay, Real)
            and not isinstance(self.learning_decay, bool)
            and 0.5 < self.learning_decay <= 1.0
        ):
            raise ValueError(
                f"Invalid value for 'learning_decay': {self.learning_decay!r}. It must be a real "
                "number in (0.5, 1]."
            )
        K, D, kind = self.n_components, n_features, self.covariance_type
        out = {"weights_init": None, "means_init": None, "precisions_init": None}
        if self.weights_init is not None:
            w = self._init_array("weights_init", self.weights_init, (K,))
            if np.any(w < 0) or np.any(w > 1):
                raise ValueError(
                    "Invalid value for 'weights_init': weights must lie in [0, 1], got "
                    f"min {w.min():.5f} and max {w.max():.5f}."
                )
            if not np.allclose(w.sum(), 1.0, rtol=0, atol=1e-6):
                raise ValueError(
                    f"Invalid value for 'weights_init': weights must sum to 1, got {w.sum():.6f}. "
                    "Normalise them with w / w.sum()."
                )
            out["weights_init"] = w
        if self.means_init is not None:
            out["means_init"] = self._init_array("means_init", self.means_init, (K, D))
        if self.precisions_init is not None:
            p = self._init_array("precisions_init", self.precisions_init, covariance_shape(kind, K, D))
            if kind in ("full", "tied"):
                mats = p if kind == "full" else p[None]
                for k, mat in enumerate(mats):
                    where = f"precisions_init[{k}]" if kind == "full" else "precisions_init"
                    if not np.allclose(mat, mat.T, rtol=1e-10, atol=1e-12 * np.abs(mat).max()):
                        raise ValueError(
                            f"'{where}' is not symmetric: pass a symmetric positive-definite matrix."
                        )
                    if np.any(np.linalg.eigvalsh(mat) <= 0.0):
                        raise ValueError(
                            f"'{where}' is not positive definite: pass a symmetric positive-definite matrix."
                        )
            elif np.any(p <= 0.0):
                raise ValueError(f"Invalid value for 'precisions_init': {kind} precisions must be positive.")
            out["precisions_init"] = p
        return out

    @staticmethod
    def _init_array(name: str, value, shape: tuple) -> np.ndarray:
        arr = np.asarray(value, dtype=np.float64)
        if arr.shape != shape:
            raise ValueError(f"The parameter '{name}' should have the shape {shape}, but got {arr.shape}.")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"The parameter '{name}' contains NaN or infinity.")
        return arr

    def _validate_X(self, X, *, fitting: bool) -> np.ndarray:
        X = as_float_array(X, ensure_min_samples=2 if fitting else 1, estimator=self)
        if not fitting:
            if X.shape[1] != self.n_features_in_:
                raise ValueError(
                    f"X has {X.shape[1]} features, but {type(self).__name__} is expecting "
                    f"{self.n_features_in_} features as input."
                )
        _check_finite(X)
        return X

    @staticmethod
    def _validate_sample_weight(sample_weight, n_samples: int) -> np.ndarray | None:
        if sample_weight is None:
            return None
        sw = np.asarray(sample_weight, dtype=np.float64)
        if sw.ndim == 0:
            sw = np.full(n_samples, float(sw))
        if sw.shape != (n_samples,):
            raise ValueError(
                f"sample_weight has shape {sw.shape}, but X has {n_samples} samples: pass one "
                "weight per sample."
            )
        if not np.all(np.isfinite(sw)):
            raise ValueError("sample_weight contains NaN or infinity.")
        if np.any(sw < 0):
            raise ValueError("sample_weight contains negative values: weights must be >= 0.")
        if not sw.sum() > 0:
            raise ValueError("sample_weight sums to zero: at least one sample needs a positive weight.")
        return np.ascontiguousarray(sw)

    # ------------------------------------------------------------------ fitting
    def fit(
        self,
        X,
        y=None,
        sample_weight=None,
        *,
        algorithm: str = "batch",
        checkpoint: str | os.PathLike | None = None,
        n_passes: int = 1,
    ) -> GaussianMixture:
        """Estimate the model parameters with the EM algorithm.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or a data source
            Training data; float32 data is used as-is (statistics accumulate in
            float64). A data source (a :mod:`fastem.sources` object, a path with
            a known suffix, or a callable returning an iterator of chunks) is
            streamed: each EM iteration is one sequential pass over it, with
            memory that does not grow with the data, and the same result as the
            in-memory fit (bitwise when ``chunk_rows`` is a multiple of
            ``BLOCK_ROWS``) from the same initialisation. Initialisation uses a
            uniform sample of ``init_sample_size`` rows.
        y : Ignored
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weight of each sample in the M-step and log-likelihood.
            For a source, a 1-D array or ``np.memmap`` read chunk by chunk.
        algorithm : {'batch', 'online'}, default='batch'
            'batch': exact EM. 'online': ``n_passes`` passes of stepwise EM in
            mini-batches of ``batch_size`` rows (see :meth:`partial_fit`), one
            initialisation; ``lower_bounds_`` holds one value per pass.
        checkpoint : str or PathLike, default=None
            File where the state is written atomically after every pass. If it
            exists, the fit resumes after its last complete pass and ends
            bitwise identical to an uninterrupted fit; a checkpoint written for
            other data or another configuration raises ``ValueError``.
        n_passes : int, default=1
            Passes over the data for ``algorithm='online'``.

        Returns
        -------
        self : GaussianMixture
        """
        _check_choice("algorithm", algorithm, ("batch", "online"))
        _check_number("n_passes", n_passes, Integral, 1)
        plan = self._plan_fit(X, sample_weight)
        n_samples, n_features = plan.n_samples, plan.n_features
        init_arrays = self._check_parameters(n_features)
        if n_samples < self.n_components:
            raise ValueError(
                "Expected n_samples >= n_components but got "
                f"n_components = {self.n_components}, n_samples = {n_samples}. "
                "Decrease n_components or provide more samples."
            )
        warm = bool(self.warm_start) and hasattr(self, "converged_")
        if warm and self.n_features_in_ != n_features:
            raise ValueError(
                f"X has {n_features} features, but the warm-started {type(self).__name__} "
                f"was fitted with {self.n_features_in_}."
            )
        if plan.init_X.shape[0] < self.n_components:
            raise ValueError(
                f"The initialisation sample has {plan.init_X.shape[0]} rows, fewer than "
                f"n_components = {self.n_components}: increase init_sample_size."
            )
        random_state = check_random_state(self.random_state)
        executor = plan.executor

        def initialise(_: int) -> GaussianParams:
            if hasattr(executor, "start_run"):
                executor.start_run()
            if warm:
                return self._params()
            return initial_params(
                plan.init_X,
                plan.init_sample_weight,
                n_components=self.n_components,
                covariance_type=self.covariance_type,
                init_params=self.init_params,
                reg_covar=self.reg_covar,
                random_state=random_state,
                **init_arrays,
            )

        online_state = None
        with thread_limit(self.n_jobs, n_samples):
            if checkpoint is not None:
                from . import checkpoint as ckpt

                data_fp = ckpt.data_fingerprint(executor, sample_weight)
                config_fp = ckpt.config_fingerprint(
                    self, algorithm=algorithm, n_passes=n_passes, warm=warm,
                    warm_params=ckpt._hash_array(self.means_) if warm else None,
                )  # fmt: skip
            if algorithm == "online":
                from .online import fit_online

                if checkpoint is not None:
                    run, online_state = ckpt.fit_online_checkpointed(
                        checkpoint, self, executor, initialise,
                        data_fp=data_fp, config_fp=config_fp, n_passes=n_passes,
                    )  # fmt: skip
                else:
                    run, online_state = fit_online(self, executor, initialise(0), n_passes=n_passes)
            elif checkpoint is not None:
                run = ckpt.fit_restarts_checkpointed(
                    checkpoint, executor, initialise, random_state,
                    covariance_type=self.covariance_type, data_fp=data_fp, config_fp=config_fp,
                    n_init=1 if warm else self.n_init, tol=self.tol, max_iter=self.max_iter,
                    reg_covar=self.reg_covar, start_lower_bound=self.lower_bound_ if warm else -np.inf,
                    verbose=int(self.verbose), verbose_interval=self.verbose_interval,
                )  # fmt: skip
            else:
                run = fit_restarts(
                    executor.accumulate,
                    initialise,
                    n_init=1 if warm else self.n_init,
                    tol=self.tol,
                    max_iter=self.max_iter,
                    reg_covar=self.reg_covar,
                    start_lower_bound=self.lower_bound_ if warm else -np.inf,
                    verbose=int(self.verbose),
                    verbose_interval=self.verbose_interval,
                )
        if algorithm == "batch" and not run.converged and self.max_iter > 0:
            warnings.warn(
                "Best performing initialization did not converge. Try different init "
                "parameters, or increase max_iter, tol, or check for degenerate data.",
                convergence_warning(),
                stacklevel=2,
            )
        self._set_fitted(run, plan.n_features, plan.feature_names)
        self._online_state = online_state  # None after a batch fit: partial_fit restarts its statistics
        self.n_steps_ = 0 if online_state is None else online_state.n_steps
        return self

    def partial_fit(self, X, y=None, sample_weight=None) -> GaussianMixture:
        """One step of online (stepwise) EM on a mini-batch.

        Stepwise EM (Cappe & Moulines 2009; Liang & Klein 2009) keeps running
        sufficient statistics per unit weight and blends in the batch's:
        ``s <- (1 - eta_t) s + eta_t s_batch`` with ``eta_t = (t +
        learning_offset) ** -learning_decay``, then takes the M-step (with the
        ``reg_covar`` floor). The first call on an unfitted estimator
        initialises from its batch (``init_params``, ``*_init``) and takes the
        batch's statistics as they are; on an estimator fitted by ``fit`` the
        first call continues from the fitted parameters.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The mini-batch (at least ``n_components`` rows on the first call).
        y : Ignored
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self : GaussianMixture
        """
        from .online import online_step

        fitted = hasattr(self, "converged_")
        if fitted:
            check_feature_names(self, X)
        X = self._validate_X(X, fitting=not fitted)
        sw = self._validate_sample_weight(sample_weight, X.shape[0])
        init_arrays = self._check_parameters(X.shape[1])
        state = getattr(self, "_online_state", None) if fitted else None
        with thread_limit(self.n_jobs, X.shape[0]):
            if fitted:
                params = self._params()
                lower_bounds = list(self.lower_bounds_) if state is not None else []
            else:
                if X.shape[0] < self.n_components:
                    raise ValueError(
                        "Expected n_samples >= n_components in the first partial_fit batch but got "
                        f"n_components = {self.n_components}, n_samples = {X.shape[0]}."
                    )
                params = initial_params(
                    X, sw, n_components=self.n_components, covariance_type=self.covariance_type,
                    init_params=self.init_params, reg_covar=self.reg_covar,
                    random_state=check_random_state(self.random_state), **init_arrays,
                )  # fmt: skip
                lower_bounds = []
            if state is not None and state.stats.covariance_type != self.covariance_type:
                state = None
            params, state, ll, _ = online_step(
                params, X, sw, state, reg_covar=self.reg_covar,
                learning_offset=self.learning_offset, learning_decay=self.learning_decay,
            )  # fmt: skip
        from ._em import EMRun

        lower_bounds.append(ll)
        run = EMRun(params, state.n_steps, False, ll, lower_bounds)
        names = feature_names(X) if not fitted else getattr(self, "feature_names_in_", None)
        self._set_fitted(run, X.shape[1], names)
        self._online_state = state
        self.n_steps_ = state.n_steps
        return self

    def _plan_fit(self, X, sample_weight) -> FitPlan:
        """Validate the training data and choose the executor that will run the passes.

        In-memory arrays run on :class:`ArrayExecutor`; other kinds of input
        (data sources, Dask arrays) bring their own executor and a sample of
        rows for initialisation.
        """
        if _is_dask_collection(X):
            from .dask import plan_fit as plan_dask_fit

            return plan_dask_fit(self, X, sample_weight)
        if _is_source(X):
            from .sources import plan_fit as plan_source_fit

            return plan_source_fit(self, X, sample_weight)
        names = feature_names(X)  # before validation turns a DataFrame into an array
        X = self._validate_X(X, fitting=True)
        sw = self._validate_sample_weight(sample_weight, X.shape[0])
        return FitPlan(ArrayExecutor(X, sw), X, sw, X.shape[0], X.shape[1], names)

    def _set_fitted(self, run, n_features: int, names) -> None:
        """Publish a finished run: every attribute is assigned here, after all work."""
        params = run.params.filled()
        kind = params.covariance_type
        self.weights_ = params.weights
        self.means_ = params.means
        self.covariances_ = params.covariances
        self.precisions_cholesky_ = params.precisions_cholesky
        self.precisions_ = precisions_from_precisions_cholesky(params.precisions_cholesky, kind)
        self.converged_ = bool(run.converged)
        self.n_iter_ = int(run.n_iter)
        self.lower_bound_ = float(run.lower_bound)
        self.lower_bounds_ = list(map(float, run.lower_bounds))
        self.n_features_in_ = n_features
        if names is not None:
            self.feature_names_in_ = names
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_

    def _params(self) -> GaussianParams:
        return GaussianParams(
            self.covariance_type,
            np.asarray(self.weights_, dtype=np.float64),
            np.ascontiguousarray(self.means_, dtype=np.float64),
            np.ascontiguousarray(self.precisions_cholesky_, dtype=np.float64),
            self.covariances_,
        )

    def fit_predict(self, X, y=None, sample_weight=None) -> np.ndarray:
        """Fit the model and return the most probable component of each sample.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
        """
        return self.fit(X, y, sample_weight=sample_weight).predict(X)

    # ------------------------------------------------------------------ scoring
    def _score(self, X, **wanted) -> dict:
        check_is_fitted(self)
        if _is_dask_collection(X):
            from .dask import score as score_dask

            return score_dask(self, X, **wanted)
        if _is_source(X):
            from .sources import score as score_source

            return score_source(self, X, **wanted)
        check_feature_names(self, X)
        X = self._validate_X(X, fitting=False)
        if wanted.get("out") is not None:  # an array written to .npy like a source's output
            from .sources import ArraySource
            from .sources import score as score_source

            return score_source(self, ArraySource(X), **wanted)
        wanted.pop("out", None)
        with thread_limit(self.n_jobs, X.shape[0]):
            return ArrayExecutor(X).score(self._params(), **wanted)

    def score_samples(self, X, *, out: str | os.PathLike | None = None) -> np.ndarray:
        """Log-likelihood log p(x) of each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or a data source
        out : str or PathLike, default=None
            Write the result to this ``.npy`` file (atomically, with memory
            bounded by one chunk) and return it as a read-only memory map.

        Returns
        -------
        log_prob : ndarray of shape (n_samples,)
        """
        return self._score(X, logprob=True, out=out)["logprob"]

    def score(self, X, y=None) -> float:
        """Mean log-likelihood per sample of ``X``.

        Returns
        -------
        log_likelihood : float
        """
        if _is_source(X):  # streamed: O(1) memory
            from .sources import score as score_source

            return float(score_source(self, X, mean=True)["mean"])
        return float(self.score_samples(X).mean())

    def predict(self, X, *, out: str | os.PathLike | None = None) -> np.ndarray:
        """Most probable component of each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or a data source
        out : str or PathLike, default=None
            Write the labels to this ``.npy`` file (atomically, with memory
            bounded by one chunk) and return them as a read-only memory map.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
        """
        return self._score(X, label=True, out=out)["label"]

    def predict_proba(self, X, *, out: str | os.PathLike | None = None) -> np.ndarray:
        """Responsibilities p(component | x): the only N x K output of the package.

        ``X`` may be a data source; ``out`` writes the result to a ``.npy`` file
        as in :meth:`predict`.

        Returns
        -------
        resp : ndarray of shape (n_samples, n_components)
        """
        return self._score(X, resp=True, out=out)["resp"]

    def sample(self, n_samples: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Draw samples from the fitted mixture (same draws as scikit-learn for equal parameters).

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        y : ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        if not isinstance(n_samples, Integral) or n_samples < 1:
            raise ValueError(
                f"Invalid value for 'n_samples': {n_samples!r}. The sampling requires at least one sample."
            )
        rng = check_random_state(self.random_state)
        counts = rng.multinomial(n_samples, self.weights_)
        kind = self.covariance_type
        if kind == "full":
            parts = [
                rng.multivariate_normal(m, c, int(n))
                for m, c, n in zip(self.means_, self.covariances_, counts, strict=True)
            ]
        elif kind == "tied":
            parts = [
                rng.multivariate_normal(m, self.covariances_, int(n))
                for m, n in zip(self.means_, counts, strict=True)
            ]
        else:
            parts = [
                m + rng.standard_normal(size=(n, self.means_.shape[1])) * np.sqrt(c)
                for m, c, n in zip(self.means_, self.covariances_, counts, strict=True)
            ]
        y = np.concatenate([np.full(n, k, dtype=int) for k, n in enumerate(counts)])
        return np.vstack(parts), y

    def _n_parameters(self) -> int:
        K, D = self.means_.shape
        cov = {"full": K * D * (D + 1) / 2, "diag": K * D, "tied": D * (D + 1) / 2, "spherical": K}
        return int(cov[self.covariance_type] + K * D + K - 1)

    def _mean_and_count(self, X) -> tuple[float, int]:
        if _is_source(X):
            from .sources import score as score_source

            res = score_source(self, X, mean=True)
            return float(res["mean"]), int(res["n_samples"])
        return self.score(X), np.shape(X)[0]

    def bic(self, X) -> float:
        """Bayesian information criterion on ``X`` (lower is better)."""
        mean, n = self._mean_and_count(X)
        return -2 * mean * n + self._n_parameters() * np.log(n)

    def aic(self, X) -> float:
        """Akaike information criterion on ``X`` (lower is better)."""
        mean, n = self._mean_and_count(X)
        return -2 * mean * n + 2 * self._n_parameters()

    def save(self, path: str | os.PathLike, *, data=None) -> os.PathLike:
        """Write the fitted model to ``path`` atomically, in fastem's model format (not pickle).

        Parameters
        ----------
        path : str or os.PathLike
            Target file (``.npz`` is a good suffix); read back with :func:`fastem.load`.
        data : array-like or path, default=None
            Training data to record as its shape and SHA-256 fingerprint.

        Returns
        -------
        path : pathlib.Path

        See Also
        --------
        fastem.io : the file format.
        """
        from .io import save

        return save(self, path, data=data)
