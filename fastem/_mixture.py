"""The scikit-learn surface every mixture estimator shares, over any family.

A concrete estimator (``fastem.mixture``) says which family it fits, which
parameters it validates and which attributes it publishes; everything else
(input planning, restarts, online EM, checkpoints, callbacks, scoring,
sampling, BIC/AIC, model files) is here, once, and works the same for every
family because it only speaks the protocol of ``fastem/families/base.py``.
"""

from __future__ import annotations

import os
import warnings
from numbers import Integral, Real
from typing import ClassVar

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
from ._em import EMRun, PassCounter, VerboseLines, as_callbacks, fit_restarts
from ._executor import ArrayExecutor, FitPlan
from ._kernels._blocks import reused_block_partials
from ._threads import thread_limit
from ._validate import check_missing, check_n_features, check_rows, sample_weight_array
from .families.base import ClassificationEM, unwrapped

INIT_METHODS = ("kmeans", "k-means++", "random", "random_from_data")
#: the ``algorithm`` of ``fit``: exact (soft) EM, stepwise online EM, classification (hard) EM
ALGORITHMS = ("batch", "online", "hard")

_ONLINE_PRIOR = (
    "prior= is supported by the batch algorithm only: online EM keeps statistics per unit weight, so the "
    "prior's pseudo-observations would not weigh against the data. Fit with algorithm='batch', or "
    "prior=None for online EM and partial_fit."
)


def is_dask_collection(X) -> bool:
    """A Dask array or dataframe (checked by module name, so dask stays optional)."""
    return type(X).__module__.split(".")[0] == "dask"


def is_source(X) -> bool:
    """A path, a callable yielding chunks, or a ``fastem.sources`` object."""
    return isinstance(X, (str, os.PathLike)) or callable(X) or getattr(X, "_is_fastem_source", False)


def check_choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"Invalid value for '{name}': {value!r}. Allowed values are {list(allowed)}.")


def check_number(name, value, kind, low, *, strict=False, allow_none=False, high=None) -> None:
    if value is None and allow_none:
        return
    ok = isinstance(value, kind) and not isinstance(value, bool)
    if ok:
        ok = value > low if strict else value >= low
        if high is not None:
            ok = ok and value <= high
    if not ok:
        sign = ">" if strict else ">="
        what = "an integer" if kind is Integral else "a real number"
        bound = f"{sign} {low}" + (f" and <= {high}" if high is not None else "")
        raise ValueError(f"Invalid value for '{name}': {value!r}. It must be {what} {bound}.")


def init_array(name: str, value, shape: tuple, *, label: str | None = None, layout: str = "") -> np.ndarray:
    """A user's ``*_init`` array as float64 of the expected shape, finite.

    The shape error uses scikit-learn's wording ("The parameter 'weights'
    should have the shape of ..."), naming the parameter as scikit-learn does
    (``label``, by default ``name`` without ``_init``), then which argument it
    is and its ``layout`` in words (e.g. "(n_components, n_features)").
    """
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape != shape:
        label = name.removesuffix("_init") if label is None else label
        expected = f"{shape}, i.e. {layout}" if layout else f"{shape}"
        raise ValueError(
            f"The parameter '{label}' should have the shape of {shape}, but got {arr.shape}: "
            f"pass {name} with shape {expected}."
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"The parameter '{name}' contains NaN or infinity.")
    return arr


def check_weights_init(w: np.ndarray) -> None:
    """scikit-learn's checks (and wording) of ``weights_init``: in [0, 1] and summing to 1."""
    if np.any(w < 0) or np.any(w > 1):
        # scikit-learn's message prints the minimum as "max value" and the maximum as "min value"
        raise ValueError(
            "The parameter 'weights' should be in the range [0, 1], but got max value "
            f"{w.min():.5f}, min value {w.max():.5f} (scikit-learn's wording, with the two swapped: "
            f"the smallest value in weights_init is {w.min():.5g} and the largest {w.max():.5g})."
        )
    if not np.allclose(w.sum(), 1.0, rtol=0, atol=1e-6):
        raise ValueError(
            f"The parameter 'weights' should be normalized, but got sum(weights) = {w.sum():.5f}. "
            "Normalise weights_init with w / w.sum()."
        )


class BaseMixture(EstimatorBase):
    """Shared implementation of the mixture estimators (not public: use a concrete class).

    Subclasses define ``_family()``, ``_check_family_parameters(n_features)``
    (returning the validated ``*_init`` arrays as keyword arguments of the
    family's ``initial_params``; ``weights_init`` is checked here), optionally
    ``_check_family_hyperparameters()``, ``_publish(params)`` (set the fitted
    attributes), ``_params()`` (the family's parameters from them),
    ``_check_model_file(header, arrays, n_iter)`` and the class attributes
    ``_model_arrays`` (fitted array attributes) and ``_init_array_params``.
    """

    #: the ``init_params`` values this estimator takes
    _init_methods: tuple[str, ...] = INIT_METHODS

    #: the fitted attribute that marks a fitted estimator
    _fitted_marker: ClassVar[str] = "weights_"
    #: estimator-specific parameters that do not change the fitted result
    _result_neutral_params: ClassVar[frozenset] = frozenset({"verbose", "verbose_interval", "n_jobs"})

    # ------------------------------------------------------------------ hooks
    def _as_array(self, X, *, fitting: bool):
        """The input as the kernels need it (default: a C-contiguous float32/float64 array)."""
        return as_float_array(X, ensure_min_samples=2 if fitting else 1, estimator=self)

    # ------------------------------------------------------------------ validation
    def _check_parameters(self, n_features: int) -> dict:
        """Validate hyper-parameters and ``*_init`` arrays; return the arrays as float64."""
        check_number("n_components", self.n_components, Integral, 1)
        check_number("tol", self.tol, Real, 0.0)
        check_number("max_iter", self.max_iter, Integral, 0)
        check_number("n_init", self.n_init, Integral, 1)
        check_choice("init_params", self.init_params, self._init_methods)
        check_choice("accelerate", self.accelerate, (None, "squarem"))
        check_number(
            "verbose", int(self.verbose) if isinstance(self.verbose, bool) else self.verbose, Integral, 0
        )
        check_number("verbose_interval", self.verbose_interval, Integral, 1)
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
        check_number("init_sample_size", self.init_sample_size, Integral, 1)
        check_number("batch_size", self.batch_size, Integral, 1)
        check_number("learning_offset", self.learning_offset, Real, 0.0)
        if not (
            isinstance(self.learning_decay, Real)
            and not isinstance(self.learning_decay, bool)
            and 0.5 < self.learning_decay <= 1.0
        ):
            raise ValueError(
                f"Invalid value for 'learning_decay': {self.learning_decay!r}. It must be a real "
                "number in (0.5, 1]."
            )
        self._check_family_hyperparameters()
        out = {}
        if self.weights_init is not None:  # scikit-learn's order: weights, then the family's arrays
            w = init_array("weights_init", self.weights_init, (self.n_components,), layout="(n_components,)")
            check_weights_init(w)
            out["weights_init"] = w
        out.update(self._check_family_parameters(n_features))
        return out

    def _check_family_hyperparameters(self) -> None:
        """Validate the family's own scalar hyper-parameters (before any ``*_init`` array)."""

    #: the prior classes of :mod:`fastem.priors` the estimator takes (``prior=``)
    _prior_classes: ClassVar[tuple] = ()

    def _prior(self):
        """The ``prior`` parameter as a prior object, or None (raises ValueError for a bad one)."""
        from .priors import as_prior

        return as_prior(getattr(self, "prior", None), self._prior_classes, type(self).__name__)

    def _check_prior_with_missing(self, prior) -> None:
        """Refuse a prior whose hyperparameters come from the data when NaN marks missing entries.

        The data mean and covariance such a prior is built from are undefined
        with holes in the data (and estimating them is what the fit is for).
        """
        needs_data = getattr(prior, "needs_data", None)
        if getattr(self, "missing", "error") == "marginalize" and needs_data is not None and needs_data():
            raise ValueError(
                f"prior={self.prior!r} takes its hyperparameters from the mean and covariance of the data, "
                "which missing entries leave undefined. With missing='marginalize', give them explicitly, "
                "e.g. GaussianPrior(mean=..., scale=...) from fastem.priors, or fit without a prior."
            )

    def _fit_family(self, family, executor, n_features: int):
        """The family with its prior's hyperparameters set from the data (the validation pass's moments)."""
        moments = None
        if family.needs_data_moments:
            # streaming and Dask executors bring the moments of their validation pass
            moments = getattr(executor, "data_moments", None)
            if moments is None:
                from .priors import DataMoments

                moments = DataMoments.of_rows(executor.X, executor.sample_weight)
        return family.for_fit(self.n_components, n_features, moments)

    def _as_fitted(self, family):
        """``family`` as the fitted model ran it: wrapped for classification EM after ``algorithm="hard"``.

        Subclasses' ``_family()`` return this, so that model files (the family's
        ``config``) record ``algorithm: "hard"``; scoring is unaffected.
        """
        if getattr(self, "algorithm_", None) == "hard":
            return ClassificationEM(unwrapped(family))
        return family

    def _read_algorithm(self, header: dict) -> None:
        """Set ``algorithm_`` from a model file's header (only hard fits are recorded)."""
        algorithm = header.get("algorithm", "batch")
        if algorithm not in ("batch", "hard"):
            raise ValueError(f"invalid header: unknown algorithm {algorithm!r}.")
        self.algorithm_ = algorithm

    def _validate_X(self, X, *, fitting: bool):
        X = self._as_array(X, fitting=fitting)
        if not fitting:
            check_n_features(X.shape[1], self.n_features_in_, type(self).__name__)
        check_rows(self._family(), X)
        return X

    @staticmethod
    def _validate_sample_weight(sample_weight, n_samples: int) -> np.ndarray | None:
        return sample_weight_array(sample_weight, n_samples)

    # ------------------------------------------------------------------ fitting
    def _fit(self, X, sample_weight, *, algorithm, checkpoint, n_passes, callbacks):
        check_choice("algorithm", algorithm, ALGORITHMS)
        check_number("n_passes", n_passes, Integral, 1)
        callbacks = as_callbacks(callbacks)
        prior = self._prior()  # a bad prior fails before the data are read
        if prior is not None and algorithm == "online":
            raise ValueError(_ONLINE_PRIOR)
        self._check_prior_with_missing(prior)
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
        family = unwrapped(self._family())
        if algorithm == "hard":
            family = ClassificationEM(family)
        # the executor runs this fit's family (a previous hard fit left its _family() wrapped)
        executor.family = family
        objective = None
        if prior is not None:
            family = self._fit_family(family, executor, n_features)

            def objective(stats, params) -> float:
                # the log posterior per unit weight at the E-step's parameters
                return (stats.loglik_sum + family.log_prior(params)) / stats.weight_sum

        def initialise(restart: int):
            if warm:
                return self._params()
            return family.initial_params(
                plan.init_X, plan.init_sample_weight, n_components=self.n_components,
                init_params=self.init_params, random_state=random_state, restart=restart, **init_arrays,
            )  # fmt: skip

        if self.accelerate is not None and algorithm == "online":
            raise ValueError(
                f"accelerate={self.accelerate!r} speeds up batch EM; algorithm={algorithm!r} takes "
                "stepwise steps instead. Use accelerate=None with algorithm='online'."
            )
        if self.accelerate is not None and algorithm == "hard":
            raise ValueError(
                f"accelerate={self.accelerate!r} extrapolates a smooth EM map; classification EM "
                "(algorithm='hard') moves in jumps between partitions and stops after few iterations. "
                "Use accelerate=None with algorithm='hard'."
            )
        runner = None
        if self.accelerate == "squarem":
            from functools import partial

            from ._accelerate import run_squarem

            runner = partial(run_squarem, family=family)
        passes = PassCounter(executor.accumulate)

        watchers = list(callbacks)
        if hasattr(executor, "on_run_start"):  # the streaming executor's per-pass lines
            watchers.insert(0, executor)
        if self.verbose and algorithm != "online":
            watchers.insert(0, VerboseLines(int(self.verbose), self.verbose_interval))
        online_state = None
        n_init = 1 if warm else self.n_init
        start_lb = self.lower_bound_ if warm else -np.inf
        with thread_limit(self.n_jobs, n_samples), reused_block_partials():
            if checkpoint is not None:
                from . import checkpoint as ckpt

                store = ckpt.Checkpoint(
                    checkpoint, family,
                    data=ckpt.data_fingerprint(executor, sample_weight),
                    config=ckpt.config_fingerprint(
                        self, algorithm=algorithm, n_passes=n_passes, warm=warm,
                        warm_params=ckpt.params_hash(family, self._params()) if warm else None,
                    ),
                    verbose=int(self.verbose),
                )  # fmt: skip
            if algorithm == "online":
                from .online import fit_online

                resume = store.resume_online() if checkpoint is not None else None
                if resume is not None and resume.done:
                    run, online_state = resume.run, resume.state
                else:
                    run, online_state = fit_online(
                        self, family, executor, resume.params if resume else initialise(0), n_passes=n_passes,
                        state=resume.state if resume else None,
                        passes_done=resume.passes_done if resume else 0,
                        lower_bounds=resume.lower_bounds if resume else None,
                        on_pass=store.write_online if checkpoint is not None else None,
                        callbacks=callbacks,
                    )  # fmt: skip
                    if checkpoint is not None:
                        store.write_online(run.n_iter, run.params, online_state, run.lower_bounds,
                                           status="done", converged=run.converged)  # fmt: skip
            else:
                resume = None
                if checkpoint is not None:
                    resume = store.resume_batch(random_state)
                    watchers.append(store.batch_writer(random_state, n_init))
                if resume is not None and resume.first_init >= n_init and resume.best is not None:
                    run = resume.best  # a finished fit: its result at once
                else:
                    run = fit_restarts(
                        passes, family.m_step, initialise, n_init=n_init, tol=self.tol,
                        max_iter=self.max_iter, start_lower_bound=start_lb, callbacks=watchers, resume=resume,
                        objective=objective, runner=runner,
                    )  # fmt: skip
        if algorithm != "online" and not run.converged and self.max_iter > 0:
            why = ""
            if run.collapsed:  # (a run read back from a checkpoint does not record it)
                why = (f" Its EM stopped at iteration {run.n_iter} because components {run.collapsed} "
                       "collapsed; increase reg_covar to avoid this.")  # fmt: skip
            warnings.warn(
                "Best performing initialization did not converge. Try different init "
                "parameters, or increase max_iter, tol, or check for degenerate data." + why,
                convergence_warning(),
                stacklevel=3,
            )
        self._set_fitted(run, plan.n_features, plan.feature_names)
        self.algorithm_ = algorithm
        self._online_state = online_state  # None after a batch fit: partial_fit restarts its statistics
        self.n_steps_ = 0 if online_state is None else online_state.n_steps
        # E-steps over the data made by this call (all initialisations; a resumed checkpoint's
        # earlier passes are not counted); online: passes over the data
        self.n_passes_ = passes.count if algorithm != "online" else len(run.lower_bounds)
        return self

    def _partial_fit(self, X, sample_weight):
        from .online import online_step

        if self._prior() is not None:
            raise ValueError(_ONLINE_PRIOR)
        fitted = hasattr(self, "converged_")
        if fitted:
            check_feature_names(self, X)
        names = feature_names(X) if not fitted else getattr(self, "feature_names_in_", None)
        X = self._validate_X(X, fitting=not fitted)
        sw = self._validate_sample_weight(sample_weight, X.shape[0])
        init_arrays = self._check_parameters(X.shape[1])
        family = unwrapped(self._family())  # stepwise EM is soft, whatever the last fit was
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
                params = family.initial_params(
                    X, sw, n_components=self.n_components, init_params=self.init_params,
                    random_state=check_random_state(self.random_state), **init_arrays,
                )  # fmt: skip
                lower_bounds = []
            if state is not None and not state.fits(family):
                state = None
            params, state, ll, _ = online_step(
                family, params, X, sw, state,
                learning_offset=self.learning_offset, learning_decay=self.learning_decay,
            )  # fmt: skip
        lower_bounds.append(ll)
        run = EMRun(params, state.n_steps, False, ll, lower_bounds)
        self._set_fitted(run, X.shape[1], names)
        self.algorithm_ = "online"
        self._online_state = state
        self.n_steps_ = state.n_steps
        self.n_passes_ = state.n_steps  # one E-step per mini-batch
        return self

    def _plan_fit(self, X, sample_weight) -> FitPlan:
        """Validate the training data and choose the executor that will run the passes.

        In-memory arrays run on :class:`ArrayExecutor`; data sources and Dask
        collections bring their own executor and a sample of rows for
        initialisation. Bad hyper-parameters are refused before any pass.
        """
        if is_dask_collection(X):
            from .dask import plan_fit as plan_dask_fit

            return plan_dask_fit(X, sample_weight, self._plan_request())
        if is_source(X):
            from ._stream import plan_fit as plan_source_fit

            return plan_source_fit(X, sample_weight, self._plan_request())
        names = feature_names(X)  # before validation turns a DataFrame into an array
        X = self._validate_X(X, fitting=True)
        sw = self._validate_sample_weight(sample_weight, X.shape[0])
        return FitPlan(ArrayExecutor(X, sw, self._family()), X, sw, X.shape[0], X.shape[1], names)

    def _plan_request(self):
        from ._stream import PlanRequest

        return PlanRequest(
            family=self._family(), n_components=self.n_components, random_state=self.random_state,
            verbose=int(self.verbose), n_jobs=self.n_jobs,
            init_sample_size=getattr(self, "init_sample_size", None),
            check_parameters=self._check_parameters,
        )  # fmt: skip

    def _set_fitted(self, run: EMRun, n_features: int, names) -> None:
        """Publish a finished run: every attribute is assigned here, after all work."""
        self._publish(run.params)
        self.converged_ = bool(run.converged)
        self.n_iter_ = int(run.n_iter)
        self.lower_bound_ = float(run.lower_bound)
        self.lower_bounds_ = list(map(float, run.lower_bounds))
        self.n_features_in_ = n_features
        if names is not None:
            self.feature_names_in_ = names
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_

    def fit_predict(self, X, y=None, sample_weight=None) -> np.ndarray:
        """Fit the model and return the most probable component of each sample.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
        """
        return self.fit(X, y, sample_weight=sample_weight).predict(X)

    # ------------------------------------------------------------------ scoring
    def _score(self, X, **wanted) -> dict:
        check_is_fitted(self, self._fitted_marker)
        if is_dask_collection(X):
            from .dask import score as score_dask

            return score_dask(self, X, **wanted)
        if is_source(X):
            from ._stream import score_source

            return score_source(self, X, **wanted)
        check_feature_names(self, X)
        X = self._validate_X(X, fitting=False)
        if wanted.get("out") is not None:  # an array written to .npy like a source's output
            from ._stream import score_source
            from .sources import ArraySource

            return score_source(self, ArraySource(X), **wanted)
        wanted.pop("out", None)
        with thread_limit(self.n_jobs, X.shape[0]):
            return ArrayExecutor(X, None, self._family()).score(self._params(), **wanted)

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
        if is_source(X):  # streamed: O(1) memory
            from ._stream import score_source

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
        """Draw samples from the fitted mixture.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        y : ndarray of shape (n_samples,)
        """
        check_is_fitted(self, self._fitted_marker)
        if not isinstance(n_samples, Integral) or n_samples < 1:
            raise ValueError(
                f"Invalid value for 'n_samples': {n_samples!r}. The sampling requires at least one sample."
            )
        rng = check_random_state(self.random_state)
        counts = rng.multinomial(n_samples, self.weights_)
        X = self._family().sample(self._params(), counts, rng)
        y = np.concatenate([np.full(n, k, dtype=int) for k, n in enumerate(counts)])
        return X, y

    def _n_parameters(self) -> int:
        return self._family().n_parameters(self._params())

    def _mean_and_count(self, X) -> tuple[float, int]:
        if is_source(X):
            from ._stream import score_source

            res = score_source(self, X, mean=True)
            return float(res["mean"]), int(res["n_samples"])
        return self.score(X), np.shape(X)[0]

    def bic(self, X) -> float:
        """Bayesian information criterion on ``X`` (lower is better).

        -2 log-likelihood + n_parameters log n at the fitted parameters: with a
        ``prior``, the MAP estimate (as R mclust, whose BIC has the opposite sign).
        """
        mean, n = self._mean_and_count(X)
        return -2 * mean * n + self._n_parameters() * np.log(n)

    def aic(self, X) -> float:
        """Akaike information criterion on ``X`` (lower is better); at the MAP estimate with a ``prior``."""
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


class MissingValuesMixin:
    """The ``missing`` parameter and :meth:`impute`: for the families that can marginalise NaN.

    GaussianMixture, PoissonMixture and BernoulliMixture mix this in before
    :class:`BaseMixture`; their families take ``missing="error"`` (NaN refused
    with its row and column named) or ``missing="marginalize"`` (NaN marks a
    missing entry; inf and rows with no observed entry are still refused).
    """

    def _missing(self) -> str:
        """The validated ``missing`` parameter (ValueError naming the allowed values)."""
        check_missing(self.missing)
        return self.missing

    def _missing_kwargs(self) -> dict:
        """The family constructor's ``missing=`` (families default to 'error', which is then left out)."""
        missing = self._missing()
        return {} if missing == "error" else {"missing": missing}

    def _read_algorithm(self, header: dict) -> None:
        """Also check the model file's ``missing`` (absent in files written before it existed: 'error')."""
        super()._read_algorithm(header)
        check_missing(self.missing)
        if header.get("missing", "error") != self.missing:
            raise ValueError(
                f"inconsistent: the header says missing={header.get('missing', 'error')!r} but the "
                f"hyper-parameters say missing={self.missing!r}."
            )

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = getattr(self, "missing", "error") == "marginalize"
        return tags

    def _imputing_family(self):
        """The fitted model's family, letting NaN through whatever ``missing`` says (imputing is its job)."""
        from dataclasses import replace

        return replace(unwrapped(self._family()), missing="marginalize")

    def impute(self, X, *, out: str | os.PathLike | None = None) -> np.ndarray:
        """Fill each missing entry (NaN) of ``X`` with its conditional mean under the fitted mixture.

        Entry d of row i becomes E[x_d | x_O] = sum_k p(k | x_O) E[x_d | x_O, k],
        the responsibility-weighted mix of the components' conditional means
        given the row's observed entries x_O (for a Gaussian component
        mu_M + Sigma_MO Sigma_OO^-1 (x_O - mu_O); for Poisson and Bernoulli
        components, whose features are independent, the component's rate or
        probability). Observed entries are returned unchanged.

        Works for any fitted model, whatever its ``missing`` setting. NaN marks
        a missing entry; infinity and rows with every entry missing are refused
        with the row named.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or a data source
            Rows with NaN where entries are missing. A data source (see
            :mod:`fastem.sources`) is read chunk by chunk. For a Dask array use
            ``X.map_blocks(model.impute)``.
        out : str or PathLike, default=None
            Write the completed rows to this ``.npy`` file (atomically, with
            memory bounded by one chunk) and return them as a read-only memory map.

        Returns
        -------
        X_imputed : ndarray of shape (n_samples, n_features)
            A new array (``X`` is not modified), of ``X``'s float dtype.
        """
        from ._base import check_is_fitted

        check_is_fitted(self, self._fitted_marker)
        family = self._imputing_family()
        if is_dask_collection(X):
            raise TypeError(
                "impute takes arrays and fastem.sources sources; for a Dask array use "
                "X.map_blocks(model.impute), which imputes each block in its worker."
            )
        if not is_source(X):
            check_feature_names(self, X)
            X = self._as_array(X, fitting=False)
            check_n_features(X.shape[1], self.n_features_in_, type(self).__name__)
            check_rows(family, X)
        if is_source(X) or out is not None:
            from ._stream import impute_source
            from .sources import ArraySource

            return impute_source(self, family, X if is_source(X) else ArraySource(X), out=out)
        with thread_limit(self.n_jobs, X.shape[0]):
            filled = family.impute(X, self._params())
        return filled if filled is not X else filled.copy()
