"""The estimators: scikit-learn's surface over each mixture family.

Everything the estimators share lives in ``fastem._mixture.BaseMixture``;
each class here names its family, validates its own parameters and publishes
its fitted attributes.
"""

from __future__ import annotations

import os
from numbers import Real

import numpy as np

from ._mixture import INIT_METHODS, BaseMixture, MissingValuesMixin, check_choice, check_number, init_array
from .families.gaussian import (
    ACCUMULATIONS,
    COVARIANCE_TYPES,
    GaussianFamily,
    GaussianParams,
    check_fitted_arrays,
    covariance_shape,
    precisions_from_precisions_cholesky,
)
from .io import check_array_shapes, load_estimator

#: the shape of ``precisions_init`` in words, per covariance type
PRECISION_LAYOUTS = {
    "full": "(n_components, n_features, n_features)",
    "tied": "(n_features, n_features)",
    "diag": "(n_components, n_features)",
    "spherical": "(n_components,)",
}

_FIT_PARAMETERS = """
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
            uniform sample of ``init_sample_size`` rows. A Dask array or
            DataFrame is fitted on its cluster (:mod:`fastem.dask`).
        y : Ignored
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weight of each sample in the M-step and log-likelihood.
            For a source, a 1-D array or ``np.memmap`` read chunk by chunk.
        algorithm : {'batch', 'online', 'hard'}, default='batch'
            'batch': exact EM. 'online': ``n_passes`` passes of stepwise EM in
            mini-batches of ``batch_size`` rows (see :meth:`partial_fit`), one
            initialisation; ``lower_bounds_`` holds one value per pass.
            'hard': classification EM (CEM, Celeux & Govaert 1992): every sample
            is fully assigned to its most responsible component, the M-step
            uses these one-hot responsibilities, and ``lower_bounds_`` holds the
            classification log-likelihood sum_i w_i log(pi_z p(x_i | z)) / sum_i w_i
            (non-decreasing; it converges in finitely many steps). With spherical,
            equal, fixed covariances and equal weights it is Lloyd's k-means.
            Costs one extra sweep per chunk in memory over 'batch' (see
            ``fastem.families.base.ClassificationEM``); not with ``accelerate``.
            ``score``/``predict`` stay those of the mixture.
        checkpoint : str or PathLike, default=None
            File where the state is written atomically after every pass. If it
            exists, the fit resumes after its last complete pass and ends
            bitwise identical to an uninterrupted fit; a checkpoint written for
            other data or another configuration raises ``ValueError``.
        n_passes : int, default=1
            Passes over the data for ``algorithm='online'``.
        callbacks : callable, fastem.Callback, or a list of them, default=None
            Called after every EM iteration (every pass for ``algorithm='online'``)
            with a :class:`fastem.Iteration` (iteration number, lower bound, its
            change, the new parameters); a :class:`fastem.Callback` also hears of
            each run's start and end.

        Returns
        -------
        self : object
            The fitted estimator.
"""

_PARTIAL_FIT_DOC = """One step of online (stepwise) EM on a mini-batch.

        Stepwise EM (Cappe & Moulines 2009; Liang & Klein 2009) keeps running
        sufficient statistics per unit weight and blends in the batch's:
        ``s <- (1 - eta_t) s + eta_t s_batch`` with ``eta_t = (t +
        learning_offset) ** -learning_decay``, then takes the M-step. The first
        call on an unfitted estimator initialises from its batch
        (``init_params``, ``*_init``) and takes the batch's statistics as they
        are; on an estimator fitted by ``fit`` the first call continues from
        the fitted parameters.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The mini-batch (at least ``n_components`` rows on the first call).
        y : Ignored
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self : object
"""


class GaussianMixture(MissingValuesMixin, BaseMixture):
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
        Without it, components can collapse onto single points. An M-step
        that leaves some components with an ill-defined covariance ends its
        run at the parameters its last E-step scored (not converged, with a
        warning); if every component collapses, or the initialisation does,
        that run fails, and ``fit`` raises scikit-learn's ``ValueError`` when
        no other initialisation gave a result.
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
    accelerate : None or 'squarem', default=None
        None: plain EM. 'squarem': SQUAREM (Varadhan & Roland 2008, scheme SqS3)
        extrapolates two EM steps at a time in unconstrained coordinates, with a
        fall-back to the plain EM step whenever the objective would decrease, so
        ``lower_bounds_`` still never decreases. A cycle (two EM steps and the
        extrapolated point) costs three passes over the data: ``n_passes_``
        counts passes, while ``n_iter_`` and ``max_iter`` count E-steps at kept
        points. Batch EM only.
    prior : None, 'mclust' or fastem.priors.GaussianPrior, default=None
        None: maximum-likelihood EM. Otherwise MAP-EM under the conjugate prior
        of Fraley & Raftery (R mclust's ``priorControl()``): 'mclust' is
        ``GaussianPrior()``, mclust's ``defaultPrior`` (shrinkage 0.01, the data
        mean, dof d + 2, a scale from the data covariance), computed from the
        data in the validation pass (so streaming and Dask fits get it too).
        ``lower_bounds_`` then hold the log posterior per unit weight, ``score``
        stays the mean log-likelihood, ``bic``/``aic`` are evaluated at the MAP
        estimate, and ``reg_covar`` is not added (see :mod:`fastem.priors`).
        Batch fits only.
    missing : {'error', 'marginalize'}, default='error'
        What NaN in the data means. 'error': NaN is refused, with its row and
        column named. 'marginalize': NaN marks a missing entry, and EM treats
        the missing coordinates as more latent variables (exact EM; Ghahramani
        & Jordan 1994): a row's log-density is that of its observed
        coordinates, log N(x_O; mu_O, Sigma_OO), and the M-step uses the
        conditional means E[x_M | x_O] = mu_M + Sigma_MO Sigma_OO^-1 (x_O - mu_O)
        and adds the conditional covariances, per component; ``lower_bounds_``
        (the mean observed-data log-likelihood) still never decreases. Infinity
        is an error under both settings, and under 'marginalize' so is a row
        with every entry missing (it carries no information: drop it).
        ``fit``, ``partial_fit``, ``predict``, ``predict_proba``,
        ``score_samples`` and ``score`` then accept NaN in arrays, data sources
        (NaN in a ``.npy``, HDF5 or Zarr file, an empty field or a null marker
        such as ``NA`` or ``nan`` in a CSV file, a Parquet null) and Dask
        collections alike; :meth:`impute` fills the holes. On data without NaN
        both settings give bitwise the same fit. A ``prior`` must then give
        its hyperparameters (not take them from the data).
    accumulation : {'float64', 'float32'}, default='float64'
        Precision of the sums in each pass, for float32 data. 'float64': the
        E-step's quadratic forms run in float32, everything after them, and
        every sum, in float64. 'float32' (float32 data only; float64 data make
        ``fit`` and ``partial_fit`` raise ValueError before any work): the
        exponentials of the log-densities, the responsibilities' products with
        the centred rows and the sums of each tile of 256 rows (S1 and the S2
        outer products; R stays float64) run in float32, in twice the SIMD lanes; each tile's
        sums are added into float64 per-block sums, so the error is bounded by
        a few hundred float32 roundings per tile whatever the number of rows,
        and log-likelihoods stay float64. Measured with 2 threads
        (scripts/compare_peers.py, overlapping data): 1.6x the float64
        throughput for full covariances at D=16 (1e6 rows, K=16) and D=64
        (2e5 rows, K=32), against 1.1-1.2x with 'float64'; diag at D=8, 1.1x.
        Accuracy, against a float64 fit of the same (float32) rows from the
        same start: weights, means and covariances within 1e-6 relative
        (largest entry of each) after 1, 10 and 50 iterations, for all four
        covariance types, with and without sample weights, on 3-D and 16-D
        data, well separated or overlapping (float32 data with float64 sums:
        within 3e-7); 1.2e-6 at D=64 (2e5 rows, K=32, 4 iterations, overlapping
        data); the tests hold it to 1e-5. The E-step centres on the
        means rounded to float32, so data far from the origin relative to
        their spread lose accuracy as float32 data do (1000 sd out: the
        log-likelihood within 2e-6 relative). The default keeps float64 and
        float32 fits bitwise unchanged; ``predict`` and ``score`` take float64
        data either way, and chunks with NaN under ``missing='marginalize'``
        are summed in float64.

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
        Mean log-likelihood (log posterior per unit weight with a ``prior``; the
        classification log-likelihood with ``algorithm='hard'``) at the start of
        the last iteration of the best run.
    lower_bounds_ : list of float
        The same at every iteration of the best run; non-decreasing.
    n_features_in_ : int
    n_steps_ : int
        Online updates made so far (:meth:`partial_fit`, ``algorithm="online"``).
    n_passes_ : int
        Passes over the data (E-steps) made by the last ``fit``, every initialisation
        included (``algorithm="online"``: passes; :meth:`partial_fit`: mini-batch E-steps).
    algorithm_ : {'batch', 'online', 'hard'}
        The algorithm of the last fit (:meth:`partial_fit`: 'online'). Model files
        record a hard fit (``"algorithm": "hard"`` in the header); a model loaded from
        any other file reports 'batch'.

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
        prior=None,
        accelerate: str | None = None,
        missing: str = "error",
        accumulation: str = "float64",
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
        self.prior = prior
        self.accelerate = accelerate
        self.missing = missing
        self.accumulation = accumulation

    _model_arrays = ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_")
    _init_array_params = ("weights_init", "means_init", "precisions_init")

    # ------------------------------------------------------------------ family hooks
    @property
    def _prior_classes(self) -> tuple:
        from .priors import GaussianPrior

        return (GaussianPrior,)

    def _family(self) -> GaussianFamily:
        missing = self._missing_kwargs()
        check_choice("accumulation", self.accumulation, ACCUMULATIONS)
        family = GaussianFamily(self.covariance_type, float(self.reg_covar), self._prior(), **missing,
                                accumulation=self.accumulation)  # fmt: skip
        return self._as_fitted(family)

    def _check_family_hyperparameters(self) -> None:
        check_choice("covariance_type", self.covariance_type, COVARIANCE_TYPES)
        check_number("reg_covar", self.reg_covar, Real, 0.0)
        check_choice("accumulation", self.accumulation, ACCUMULATIONS)

    # accumulation="float32" takes float32 rows only: refused before any pass, and for data
    # sources and Dask arrays before the validation scan
    def _as_array(self, X, *, fitting: bool):
        X = super()._as_array(X, fitting=fitting)
        if fitting:
            self._family().check_accumulation_dtype(X.dtype)
        return X

    def _plan_fit(self, X, sample_weight):
        from ._mixture import is_dask_collection, is_source

        if self.accumulation != "float64" and is_source(X):
            from .sources import as_source

            X = as_source(X)  # opened once here, and used as it is below
            self._family().check_accumulation_dtype(X.dtype)
        elif self.accumulation != "float64" and is_dask_collection(X) and hasattr(X, "dtype"):
            self._family().check_accumulation_dtype(X.dtype)
        return super()._plan_fit(X, sample_weight)

    def _check_family_parameters(self, n_features: int) -> dict:
        """means_init and precisions_init with scikit-learn's checks and wording (plus where and why)."""
        K, D, kind = self.n_components, n_features, self.covariance_type
        prior = self._prior()
        if prior is not None:
            prior.check(kind, D)
        out = {}
        if self.means_init is not None:
            out["means_init"] = init_array(
                "means_init", self.means_init, (K, D), layout="(n_components, n_features)"
            )
        if self.precisions_init is not None:
            p = init_array(
                "precisions_init", self.precisions_init, covariance_shape(kind, K, D),
                label=f"{kind} precision", layout=PRECISION_LAYOUTS[kind],
            )  # fmt: skip
            if kind in ("full", "tied"):
                mats = p if kind == "full" else p[None]
                for k, mat in enumerate(mats):
                    where = f"precisions_init[{k}]" if kind == "full" else "precisions_init"
                    # scikit-learn's tolerance: whatever it accepts as symmetric is accepted here
                    if not np.allclose(mat, mat.T):
                        raise ValueError(
                            f"'{kind} precision' should be symmetric, positive-definite: {where} is not "
                            "symmetric."
                        )
                    smallest = np.linalg.eigvalsh(mat)[0]
                    if not smallest > 0.0:
                        raise ValueError(
                            f"'{kind} precision' should be symmetric, positive-definite: {where} is not "
                            f"positive definite (smallest eigenvalue {smallest:.6g})."
                        )
            elif np.any(p <= 0.0):
                raise ValueError(
                    f"'{kind} precision' should be positive: precisions_init has {int(np.sum(p <= 0.0))} "
                    f"value(s) <= 0 (the smallest is {p.min():g})."
                )
            out["precisions_init"] = p
        return out

    def _publish(self, params: GaussianParams) -> None:
        params = params.filled()
        self.weights_ = params.weights
        self.means_ = params.means
        self.covariances_ = params.covariances
        self.precisions_cholesky_ = params.precisions_cholesky
        self.precisions_ = precisions_from_precisions_cholesky(
            params.precisions_cholesky, self.covariance_type
        )

    def _params(self) -> GaussianParams:
        return GaussianParams(
            self.covariance_type,
            np.asarray(self.weights_, dtype=np.float64),
            np.ascontiguousarray(self.means_, dtype=np.float64),
            np.ascontiguousarray(self.precisions_cholesky_, dtype=np.float64),
            self.covariances_,
        )

    def _check_model_file(self, header: dict, arrays: dict, n_iter: int) -> None:
        self._read_algorithm(header)
        # absent in files written before the setting existed: 'float64'
        check_choice("accumulation", self.accumulation, ACCUMULATIONS)
        if header.get("accumulation", "float64") != self.accumulation:
            raise ValueError(
                f"inconsistent: the header says accumulation={header.get('accumulation', 'float64')!r} but "
                f"the hyper-parameters say accumulation={self.accumulation!r}."
            )
        kind = header.get("covariance_type")
        if kind not in COVARIANCE_TYPES:
            raise ValueError(f"invalid header: unknown covariance_type {kind!r}.")
        if self.covariance_type != kind:
            raise ValueError("inconsistent: hyper-parameters disagree with the arrays.")
        K, D = header["n_components"], header["n_features"]
        cov = covariance_shape(kind, K, D)
        expected = {"weights_": (K,), "means_": (K, D), "covariances_": cov, "precisions_": cov,
                    "precisions_cholesky_": cov, "lower_bounds_": (n_iter,), "weights_init": (K,),
                    "means_init": (K, D), "precisions_init": cov}  # fmt: skip
        check_array_shapes(arrays, expected, f"{K} {kind} components in {D} dimensions")
        check_fitted_arrays(arrays, kind, D)

    # ------------------------------------------------------------------ fitting
    def fit(
        self, X, y=None, sample_weight=None, *, algorithm: str = "batch",
        checkpoint: str | os.PathLike | None = None, n_passes: int = 1, callbacks=None,
    ) -> GaussianMixture:  # fmt: skip
        return self._fit(X, sample_weight, algorithm=algorithm, checkpoint=checkpoint, n_passes=n_passes,
                         callbacks=callbacks)  # fmt: skip

    fit.__doc__ = "Estimate the model parameters with the EM algorithm.\n" + _FIT_PARAMETERS

    def partial_fit(self, X, y=None, sample_weight=None) -> GaussianMixture:
        return self._partial_fit(X, sample_weight)

    partial_fit.__doc__ = _PARTIAL_FIT_DOC


#: every estimator that model files can name
ESTIMATORS = {cls.__name__: cls for cls in (GaussianMixture,)}


def load(path: str | os.PathLike):
    """Load a model written by an estimator's ``save`` and check it.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    estimator : GaussianMixture, PoissonMixture, ...
        Fitted, with every fitted attribute and hyper-parameter restored exactly.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    fastem.io.ModelFileError
        If the file is truncated, corrupted, inconsistent, or written by a newer fastem.
    """
    return load_estimator(path, ESTIMATORS)


# ============================================================================ linear families
_COMMON_PARAMETERS_DOC = """
    n_components : int, default=1
        Number of mixture components.
    tol : float, default=1e-3
        Convergence threshold on the change of the mean log-likelihood.
    max_iter : int, default=100
        Number of EM iterations to perform.
    n_init : int, default=1
        Number of initializations; the best result (highest lower bound) is kept.
    init_params : {'kmeans', 'k-means++', 'random', 'random_from_data'}, default='kmeans'
        Initial responsibilities (k-means on the rows, seeds only, random, or
        random data points), turned into parameters by one M-step.
    weights_init : array-like of shape (n_components,), default=None
        User-provided initial weights.
    random_state : int, RandomState instance or None, default=None
        Seed for initialization and :meth:`sample`.
    warm_start : bool, default=False
        Start the next ``fit`` from the current solution (``n_init`` is ignored).
    verbose : int, default=0
        1 prints each initialization and iteration count, 2 adds timings.
    verbose_interval : int, default=10
        Iterations between progress messages.
    n_jobs : int or None, default=None
        Number of threads for the kernels; None uses all cores, -1 all, -2 all but one.
    init_sample_size : int, default=100_000
        Rows of a data source (or Dask collection) sampled for initialisation.
    batch_size : int, default=65_536
        Rows per mini-batch of ``fit(..., algorithm="online")``.
    learning_decay : float, default=0.6
        kappa in (0.5, 1] of the online step size (t + learning_offset) ** -kappa.
    learning_offset : float, default=2.0
        t0 >= 0 of the online step size.
    accelerate : None or 'squarem', default=None
        None: plain EM. 'squarem': SQUAREM (SqS3) with a monotonicity safeguard,
        as for GaussianMixture; ``n_passes_`` counts the passes over the data.
    prior : fastem.priors object, default=None
        None: maximum-likelihood EM. Otherwise MAP-EM with the prior's
        pseudo-observations (GammaPrior for Poisson, BetaPrior for Bernoulli,
        DirichletPrior for multinomial; see :mod:`fastem.priors`);
        ``lower_bounds_`` then hold the log posterior per unit weight. Batch
        fits only. VonMisesFisherMixture takes no prior.
"""

_MISSING_DOC = """    missing : {'error', 'marginalize'}, default='error'
        What NaN in the data means. 'error': NaN is refused, with its row and
        column named. 'marginalize': NaN marks a missing entry; the features
        being independent given the component, a missing entry simply drops
        out of that feature's likelihood and statistics (exact EM). Infinity
        is an error under both settings, and under 'marginalize' so is a row
        with every entry missing. ``fit``, ``partial_fit``, ``predict``,
        ``predict_proba``, ``score_samples`` and ``score`` then accept NaN in
        arrays, data sources (NaN in a file, an empty field or a null marker in
        a CSV file, a Parquet null) and Dask collections; :meth:`impute` fills
        the holes. On data without NaN both settings give the same fit.
"""

_COMMON_ATTRIBUTES_DOC = """
    weights_ : ndarray of shape (n_components,)
    converged_ : bool
    n_iter_ : int
    lower_bound_ : float
        Mean log-likelihood (log posterior per unit weight with a ``prior``; the
        classification log-likelihood with ``algorithm='hard'``) at the start of
        the last iteration of the best run.
    lower_bounds_ : list of float
        The same at every iteration of the best run; non-decreasing.
    n_features_in_ : int
    n_steps_ : int
        Online updates made so far (:meth:`partial_fit`, ``algorithm="online"``).
    n_passes_ : int
        Passes over the data (E-steps) made by the last ``fit``, every initialisation
        included (``algorithm="online"``: passes; :meth:`partial_fit`: mini-batch E-steps).
    algorithm_ : {'batch', 'online', 'hard'}
        The algorithm of the last fit (:meth:`partial_fit`: 'online'). Model files
        record a hard fit (``"algorithm": "hard"`` in the header); a model loaded from
        any other file reports 'batch'.
"""


class _LinearMixture(BaseMixture):
    """The estimators of the linear families: the parameter arrays are named by the family."""

    _family_class: type
    #: fitted attribute (without the trailing underscore) -> shape code: "KD" or "K"
    _parameter_shapes: dict[str, str]

    def _common_init(self, n_components, tol, max_iter, n_init, init_params, weights_init, random_state,
                     warm_start, verbose, verbose_interval, n_jobs, init_sample_size, batch_size,
                     learning_decay, learning_offset) -> None:  # fmt: skip
        self.n_components = n_components
        self.tol = tol
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.n_jobs = n_jobs
        self.init_sample_size = init_sample_size
        self.batch_size = batch_size
        self.learning_decay = learning_decay
        self.learning_offset = learning_offset

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls._model_arrays = ("weights_",) + tuple(f"{name}_" for name in cls._parameter_shapes)

    def _family(self):
        return self._as_fitted(self._family_class(prior=self._prior()))

    def _shape(self, code: str, n_features: int) -> tuple:
        return (self.n_components, n_features) if code == "KD" else (self.n_components,)

    def _check_family_parameters(self, n_features: int) -> dict:
        out = {}
        for name, code in self._parameter_shapes.items():
            value = getattr(self, f"{name}_init")
            if value is not None:
                layout = "(n_components, n_features)" if code == "KD" else "(n_components,)"
                arr = init_array(f"{name}_init", value, self._shape(code, n_features), layout=layout)
                self._check_values(name, arr, f"Invalid value for '{name}_init'")
                out[f"{name}_init"] = arr
        return out

    def _check_values(self, name: str, arr: np.ndarray, where: str) -> None:
        """Raise ValueError when a parameter array is outside its family's range."""

    def _publish(self, params) -> None:
        self.weights_ = params.weights
        for name in self._parameter_shapes:
            setattr(self, f"{name}_", params.arrays[name])

    def _params(self):
        from .families._linear import LinearParams

        return LinearParams(
            np.asarray(self.weights_, dtype=np.float64),
            {name: np.ascontiguousarray(getattr(self, f"{name}_"), dtype=np.float64)
             for name in self._parameter_shapes},
        )  # fmt: skip

    def _check_model_file(self, header: dict, arrays: dict, n_iter: int) -> None:
        self._read_algorithm(header)
        K, D = header["n_components"], header["n_features"]
        expected = {"weights_": (K,), "lower_bounds_": (n_iter,), "weights_init": (K,)}
        for name, code in self._parameter_shapes.items():
            shape = (K, D) if code == "KD" else (K,)
            expected[f"{name}_"] = expected[f"{name}_init"] = shape
        check_array_shapes(arrays, expected, f"{K} components in {D} dimensions")
        for name in self._parameter_shapes:
            self._check_values(name, arrays[f"{name}_"], f"{name}_")

    def fit(
        self, X, y=None, sample_weight=None, *, algorithm: str = "batch",
        checkpoint: str | os.PathLike | None = None, n_passes: int = 1, callbacks=None,
    ):  # fmt: skip
        return self._fit(X, sample_weight, algorithm=algorithm, checkpoint=checkpoint, n_passes=n_passes,
                         callbacks=callbacks)  # fmt: skip

    fit.__doc__ = "Estimate the model parameters with the EM algorithm.\n" + _FIT_PARAMETERS

    def partial_fit(self, X, y=None, sample_weight=None):
        return self._partial_fit(X, sample_weight)

    partial_fit.__doc__ = _PARTIAL_FIT_DOC


class PoissonMixture(MissingValuesMixin, _LinearMixture):
    __doc__ = (
        """Mixture of independent Poisson counts per feature, fitted by EM with fused numba kernels.

    Component k gives feature d a Poisson(rates_[k, d]) count. Counts must be
    non-negative integers (any float or integer dtype). A rate whose
    responsible counts are all 0 is held at 1e-10 (see
    :mod:`fastem.families.poisson`).

    Parameters
    ----------"""
        + _COMMON_PARAMETERS_DOC
        + """    rates_init : array-like of shape (n_components, n_features), default=None
        User-provided initial rates (> 0).
"""
        + _MISSING_DOC
        + """
    Attributes
    ----------
    rates_ : ndarray of shape (n_components, n_features)"""
        + _COMMON_ATTRIBUTES_DOC
    )

    _parameter_shapes = {"rates": "KD"}
    _init_array_params = ("weights_init", "rates_init")

    def __init__(self, n_components: int = 1, *, tol: float = 1e-3, max_iter: int = 100, n_init: int = 1,
                 init_params: str = "kmeans", weights_init=None, rates_init=None, random_state=None,
                 warm_start: bool = False, verbose: int = 0, verbose_interval: int = 10,
                 n_jobs: int | None = None, init_sample_size: int = 100_000, batch_size: int = 65_536,
                 learning_decay: float = 0.6, learning_offset: float = 2.0, prior=None,
                 accelerate: str | None = None, missing: str = "error"):  # fmt: skip
        self._common_init(n_components, tol, max_iter, n_init, init_params, weights_init, random_state,
                          warm_start, verbose, verbose_interval, n_jobs, init_sample_size, batch_size,
                          learning_decay, learning_offset)  # fmt: skip
        self.prior = prior
        self.accelerate = accelerate
        self.rates_init = rates_init
        self.missing = missing

    def _family(self):
        return self._as_fitted(self._family_class(prior=self._prior(), **self._missing_kwargs()))

    @property
    def _prior_classes(self) -> tuple:
        from .priors import GammaPrior

        return (GammaPrior,)

    @property
    def _family_class(self):
        from .families.poisson import PoissonFamily

        return PoissonFamily

    def _check_values(self, name, arr, where):
        if np.any(arr <= 0):
            raise ValueError(f"{where}: Poisson rates must be > 0, got min {arr.min():g}.")


class BernoulliMixture(MissingValuesMixin, _LinearMixture):
    __doc__ = (
        """Mixture of independent binary features, fitted by EM with fused numba kernels.

    Component k sets feature d to 1 with probability probabilities_[k, d].
    Data must be 0 or 1. Probabilities reaching 0 or 1 are held in
    [1e-10, 1 - 1e-10] (see :mod:`fastem.families.bernoulli`).

    Parameters
    ----------"""
        + _COMMON_PARAMETERS_DOC
        + """    probabilities_init : array-like of shape (n_components, n_features), default=None
        User-provided initial probabilities, in (0, 1).
"""
        + _MISSING_DOC
        + """
    Attributes
    ----------
    probabilities_ : ndarray of shape (n_components, n_features)"""
        + _COMMON_ATTRIBUTES_DOC
    )

    _parameter_shapes = {"probabilities": "KD"}
    _init_array_params = ("weights_init", "probabilities_init")

    def __init__(self, n_components: int = 1, *, tol: float = 1e-3, max_iter: int = 100, n_init: int = 1,
                 init_params: str = "kmeans", weights_init=None, probabilities_init=None, random_state=None,
                 warm_start: bool = False, verbose: int = 0, verbose_interval: int = 10,
                 n_jobs: int | None = None, init_sample_size: int = 100_000, batch_size: int = 65_536,
                 learning_decay: float = 0.6, learning_offset: float = 2.0, prior=None,
                 accelerate: str | None = None, missing: str = "error"):  # fmt: skip
        self._common_init(n_components, tol, max_iter, n_init, init_params, weights_init, random_state,
                          warm_start, verbose, verbose_interval, n_jobs, init_sample_size, batch_size,
                          learning_decay, learning_offset)  # fmt: skip
        self.prior = prior
        self.accelerate = accelerate
        self.probabilities_init = probabilities_init
        self.missing = missing

    def _family(self):
        return self._as_fitted(self._family_class(prior=self._prior(), **self._missing_kwargs()))

    @property
    def _prior_classes(self) -> tuple:
        from .priors import BetaPrior

        return (BetaPrior,)

    @property
    def _family_class(self):
        from .families.bernoulli import BernoulliFamily

        return BernoulliFamily

    def _check_values(self, name, arr, where):
        if np.any(arr <= 0) or np.any(arr >= 1):
            raise ValueError(f"{where}: Bernoulli probabilities must lie in (0, 1), got min {arr.min():g} "
                             f"and max {arr.max():g}.")  # fmt: skip


class MultinomialMixture(_LinearMixture):
    __doc__ = (
        """Mixture of multinomials over count vectors (bag-of-words, categorical one-hots), fitted by EM.

    Component k draws the row's counts from Multinomial(n, probabilities_[k])
    where n is the row's total. Counts must be non-negative integers and every
    row needs at least one count. ``scipy.sparse`` CSR input is used as it is
    (the E-step is a sparse product; nothing is densified except the
    initialisation sample). Probabilities below 1e-10 are raised to 1e-10 (see
    :mod:`fastem.families.multinomial`).

    Parameters
    ----------"""
        + _COMMON_PARAMETERS_DOC
        + """    probabilities_init : array-like of shape (n_components, n_features), default=None
        User-provided initial probabilities: positive rows summing to 1.

    Attributes
    ----------
    probabilities_ : ndarray of shape (n_components, n_features)
        Rows sum to 1."""
        + _COMMON_ATTRIBUTES_DOC
    )

    _parameter_shapes = {"probabilities": "KD"}
    _init_array_params = ("weights_init", "probabilities_init")

    def __init__(self, n_components: int = 1, *, tol: float = 1e-3, max_iter: int = 100, n_init: int = 1,
                 init_params: str = "kmeans", weights_init=None, probabilities_init=None, random_state=None,
                 warm_start: bool = False, verbose: int = 0, verbose_interval: int = 10,
                 n_jobs: int | None = None, init_sample_size: int = 100_000, batch_size: int = 65_536,
                 learning_decay: float = 0.6, learning_offset: float = 2.0, prior=None,
                 accelerate: str | None = None):  # fmt: skip
        self._common_init(n_components, tol, max_iter, n_init, init_params, weights_init, random_state,
                          warm_start, verbose, verbose_interval, n_jobs, init_sample_size, batch_size,
                          learning_decay, learning_offset)  # fmt: skip
        self.prior = prior
        self.accelerate = accelerate
        self.probabilities_init = probabilities_init

    @property
    def _prior_classes(self) -> tuple:
        from .priors import DirichletPrior

        return (DirichletPrior,)

    @property
    def _family_class(self):
        from .families.multinomial import MultinomialFamily

        return MultinomialFamily

    def _check_values(self, name, arr, where):
        if np.any(arr <= 0) or not np.allclose(arr.sum(axis=1), 1.0, rtol=0, atol=1e-6):
            raise ValueError(f"{where}: multinomial probabilities must be positive rows summing to 1. "
                             "Normalise them with p / p.sum(axis=1, keepdims=True).")  # fmt: skip

    def _as_array(self, X, *, fitting: bool):
        from .families._linear import is_csr

        if is_csr(X) or (hasattr(X, "tocsr") and getattr(X, "format", None) in ("csc", "coo")):
            X = X.tocsr() if not is_csr(X) else X
            if not X.has_canonical_format:  # log(n!) - sum log(x!) needs each count whole, not in pieces
                X = X.copy()
                X.sum_duplicates()
            if X.dtype not in (np.float32, np.float64):
                X = X.astype(np.float64)
            if X.ndim != 2 or X.shape[0] < (2 if fitting else 1) or X.shape[1] < 1:
                raise ValueError(f"Expected a 2D sparse matrix with at least 2 rows, got shape {X.shape}.")
            return X
        return super()._as_array(X, fitting=fitting)

    def _plan_fit(self, X, sample_weight):
        from ._base import check_random_state
        from ._executor import ArrayExecutor, FitPlan
        from ._mixture import is_dask_collection, is_source
        from .families._linear import is_csr

        if is_dask_collection(X) or is_source(X) or not (is_csr(X) or hasattr(X, "tocsr")):
            return super()._plan_fit(X, sample_weight)
        X = self._validate_X(X, fitting=True)
        sw = self._validate_sample_weight(sample_weight, X.shape[0])
        # initialisation runs on a dense row sample bounded to 128 MB
        n, d = X.shape
        m = int(min(n, self.init_sample_size, max(1000, 2**27 // (8 * d))))
        rows = np.arange(n)
        if m < n:
            rng = np.random.default_rng(check_random_state(self.random_state).randint(2**31 - 1))
            rows = np.sort(rng.choice(n, m, replace=False))
        init_X = np.ascontiguousarray(X[rows].toarray())
        init_sw = None if sw is None else np.ascontiguousarray(sw[rows])
        return FitPlan(ArrayExecutor(X, sw, self._family()), init_X, init_sw, n, d, None)


class VonMisesFisherMixture(_LinearMixture):
    __doc__ = (
        """Mixture of von Mises-Fisher distributions on the unit sphere, fitted by EM with fused kernels.

    For directions: normalised text or image embeddings, unit vectors in D up
    to a few thousand dimensions. Component k has density
    C_D(kappa_k) exp(kappa_k mu_k . x). float32 input stays float32 in the
    kernel (statistics accumulate in float64). The concentration update
    solves A_D(kappa) = rbar to full precision with stable log-Bessel
    functions (see :mod:`fastem.families.vmf`).

    Parameters
    ----------"""
        + _COMMON_PARAMETERS_DOC
        + """    mean_directions_init : array-like of shape (n_components, n_features), default=None
        User-provided initial mean directions (unit rows).
    concentrations_init : array-like of shape (n_components,), default=None
        User-provided initial concentrations (>= 0).
    normalize : bool, default=False
        False: rows must already have unit norm (within 1e-4) and others are
        refused with the row named. True: fastem divides each row by its norm
        (on a copy of each chunk); all-zero rows are refused.

    Attributes
    ----------
    mean_directions_ : ndarray of shape (n_components, n_features)
    concentrations_ : ndarray of shape (n_components,)"""
        + _COMMON_ATTRIBUTES_DOC
    )

    _parameter_shapes = {"mean_directions": "KD", "concentrations": "K"}
    _init_array_params = ("weights_init", "mean_directions_init", "concentrations_init")

    def __init__(self, n_components: int = 1, *, tol: float = 1e-3, max_iter: int = 100, n_init: int = 1,
                 init_params: str = "kmeans", weights_init=None, mean_directions_init=None,
                 concentrations_init=None, normalize: bool = False, random_state=None,
                 warm_start: bool = False, verbose: int = 0, verbose_interval: int = 10,
                 n_jobs: int | None = None, init_sample_size: int = 100_000, batch_size: int = 65_536,
                 learning_decay: float = 0.6, learning_offset: float = 2.0, prior=None,
                 accelerate: str | None = None):  # fmt: skip
        self._common_init(n_components, tol, max_iter, n_init, init_params, weights_init, random_state,
                          warm_start, verbose, verbose_interval, n_jobs, init_sample_size, batch_size,
                          learning_decay, learning_offset)  # fmt: skip
        self.prior = prior
        self.accelerate = accelerate
        self.mean_directions_init = mean_directions_init
        self.concentrations_init = concentrations_init
        self.normalize = normalize

    @property
    def _family_class(self):
        from .families.vmf import VonMisesFisherFamily

        return VonMisesFisherFamily

    def _family(self):
        self._prior()  # only None is accepted
        return self._as_fitted(self._family_class(normalize=bool(self.normalize)))

    def _prior(self):
        if self.prior is not None:
            raise ValueError(
                f"Invalid value for 'prior': {self.prior!r}. VonMisesFisherMixture takes no prior "
                "(prior=None): the conjugate prior of (mean direction, concentration) has no closed-form "
                "normaliser, and a prior on the directions alone would not keep the concentrations finite."
            )
        return None

    def _check_family_hyperparameters(self) -> None:
        if not isinstance(self.normalize, (bool, np.bool_)):
            raise ValueError(f"Invalid value for 'normalize': {self.normalize!r}. It must be True or False.")

    def _as_array(self, X, *, fitting: bool):
        X = super()._as_array(X, fitting=fitting)
        if fitting and X.shape[1] < 2:  # in scikit-learn's words (its check_fit2d_1feature looks for them)
            raise ValueError(
                f"Found array with {X.shape[1]} feature(s) (shape={X.shape}) while a minimum of 2 is "
                "required by VonMisesFisherMixture: directions live on the unit sphere of R^n_features."
            )
        return X

    def _check_values(self, name, arr, where):
        if name == "concentrations" and np.any(arr < 0):
            raise ValueError(f"{where}: concentrations must be >= 0, got min {arr.min():g}.")
        if name == "mean_directions":
            norms = np.linalg.norm(arr, axis=1)
            if not np.allclose(norms, 1.0, rtol=0, atol=1e-6):
                raise ValueError(f"{where}: mean directions must be unit vectors (norms {norms.min():.6g} to "
                                 f"{norms.max():.6g}). Normalise them with m / np.linalg.norm(m, axis=1, "
                                 "keepdims=True).")  # fmt: skip


ESTIMATORS.update(
    {
        cls.__name__: cls
        for cls in (PoissonMixture, BernoulliMixture, MultinomialMixture, VonMisesFisherMixture)
    }
)


# ============================================================================ Student-t
class StudentTMixture(BaseMixture):
    """Mixture of multivariate Student-t distributions, fitted by ECM with a fused numba kernel.

    Robust clustering (Peel & McLachlan 2000): each component is a t distribution
    with location ``means_[k]``, scale matrix ``covariances_[k]`` and
    ``degrees_of_freedom_[k]``, i.e. a Gaussian whose covariance is divided by a
    latent Gamma(nu/2, nu/2) scale per point. Outlying points get small expected
    scales u = (nu + D) / (nu + delta) and hardly move the means and scale
    matrices. Each iteration is one parallel pass over the data (responsibilities,
    scales and the weighted moments together), then the ECM M-step: closed-form
    weights, means and scale matrices, and the degrees of freedom by Brent's
    root-finder on [1e-3, 1e6] (1e6 being the Gaussian limit; a component held at
    a bound raises a ``fastem.DegenerateParameterWarning``). The log-likelihood
    never decreases. ``covariances_`` is the scale matrix; the covariance of a
    component is ``nu / (nu - 2)`` times it for nu > 2.

    Parameters
    ----------
    n_components : int, default=1
        Number of mixture components.
    covariance_type : {'full', 'diag'}, default='full'
        'full': a general scale matrix per component; 'diag': a diagonal one.
    tol : float, default=1e-3
        Convergence threshold on the change of the mean log-likelihood.
    reg_covar : float, default=1e-6
        Non-negative regularization added to the diagonal of the scale matrices.
    max_iter : int, default=100
        Number of ECM iterations to perform.
    n_init : int, default=1
        Number of initializations; the best result (highest lower bound) is kept.
    init_params : {'trimmed_kmeans', 'kmeans', 'k-means++', 'random', 'random_from_data'}, \
default='trimmed_kmeans'
        Initialization of the weights, means and scale matrices. 'trimmed_kmeans':
        trimmed k-means on a sample, the farthest 10% of the rows left out of every
        centre update, so that gross outliers neither draw a centre nor inflate the
        initial scales (plain k-means gives outliers a component of their own, and
        the fit then merges two clusters); the other values as for GaussianMixture.
    weights_init : array-like of shape (n_components,), default=None
    means_init : array-like of shape (n_components, n_features), default=None
    precisions_init : array-like, default=None
        Inverse scale matrices: (n_components, n_features, n_features) full,
        (n_components, n_features) diag.
    degrees_of_freedom_init : float or array-like of shape (n_components,), default=None
        Initial degrees of freedom (> 0); None starts every component at 10.
    fix_degrees_of_freedom : bool, default=False
        Keep the degrees of freedom at their initial values (no nu update).
    random_state, warm_start, verbose, verbose_interval, n_jobs, init_sample_size, batch_size,
    learning_decay, learning_offset
        As for :class:`GaussianMixture`.
    accelerate : None or 'squarem', default=None
        As for :class:`GaussianMixture`; the degrees of freedom are extrapolated
        on a log scale, held in the nu update's bracket.

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
    means_ : ndarray of shape (n_components, n_features)
    covariances_ : ndarray of shape (n_components, n_features, n_features) or (n_components, n_features)
        Scale matrices Sigma_k.
    precisions_ : ndarray, same shape
    precisions_cholesky_ : ndarray, same shape
        Upper-triangular U with Sigma^-1 = U U^T (full), or 1/sqrt(Sigma) (diag).
    degrees_of_freedom_ : ndarray of shape (n_components,)
    converged_, n_iter_, lower_bound_, lower_bounds_, n_features_in_, n_steps_, n_passes_
        As for :class:`GaussianMixture` (the lower bound is the mean log-likelihood).

    Examples
    --------
    >>> import numpy as np
    >>> from fastem import StudentTMixture
    >>> X = np.array([[1, 2], [1, 4], [1, 0], [10, 2], [10, 4], [10, 0]], dtype=float)
    >>> tm = StudentTMixture(n_components=2, random_state=0).fit(X)
    >>> np.sort(tm.means_[:, 0]).round(6)
    array([ 1., 10.])
    """

    def __init__(
        self, n_components: int = 1, *, covariance_type: str = "full", tol: float = 1e-3,
        reg_covar: float = 1e-6, max_iter: int = 100, n_init: int = 1, init_params: str = "trimmed_kmeans",
        weights_init=None, means_init=None, precisions_init=None, degrees_of_freedom_init=None,
        fix_degrees_of_freedom: bool = False, random_state=None, warm_start: bool = False,
        verbose: int = 0, verbose_interval: int = 10, n_jobs: int | None = None,
        init_sample_size: int = 100_000, batch_size: int = 65_536, learning_decay: float = 0.6,
        learning_offset: float = 2.0, accelerate: str | None = None,
    ):  # fmt: skip
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
        self.degrees_of_freedom_init = degrees_of_freedom_init
        self.fix_degrees_of_freedom = fix_degrees_of_freedom
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.n_jobs = n_jobs
        self.init_sample_size = init_sample_size
        self.batch_size = batch_size
        self.learning_decay = learning_decay
        self.learning_offset = learning_offset
        self.accelerate = accelerate

    _model_arrays = ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_",
                     "degrees_of_freedom_")  # fmt: skip
    _init_array_params = ("weights_init", "means_init", "precisions_init", "degrees_of_freedom_init")
    _init_methods = ("trimmed_kmeans", *INIT_METHODS)

    def _family(self):
        from .families.student_t import StudentTFamily

        return self._as_fitted(
            StudentTFamily(self.covariance_type, float(self.reg_covar), bool(self.fix_degrees_of_freedom))
        )

    def _check_family_hyperparameters(self) -> None:
        from .families.student_t import COVARIANCE_TYPES as T_COVARIANCE_TYPES

        check_choice("covariance_type", self.covariance_type, T_COVARIANCE_TYPES)
        check_number("reg_covar", self.reg_covar, Real, 0.0)
        if not isinstance(self.fix_degrees_of_freedom, (bool, np.bool_)):
            raise ValueError(f"Invalid value for 'fix_degrees_of_freedom': {self.fix_degrees_of_freedom!r}. "
                             "It must be True or False.")  # fmt: skip

    def _check_family_parameters(self, n_features: int) -> dict:
        """means_init and precisions_init as for GaussianMixture; degrees_of_freedom_init > 0."""
        out = GaussianMixture._check_family_parameters(self, n_features)
        if self.degrees_of_freedom_init is not None:
            dof = np.asarray(self.degrees_of_freedom_init, dtype=np.float64)
            if dof.ndim == 0:
                dof = np.full(self.n_components, float(dof))
            dof = init_array("degrees_of_freedom_init", dof, (self.n_components,), layout="(n_components,)")
            if np.any(dof <= 0):
                raise ValueError(f"Invalid value for 'degrees_of_freedom_init': degrees of freedom must be "
                                 f"> 0, got min {dof.min():g}.")  # fmt: skip
            out["degrees_of_freedom_init"] = dof
        return out

    def _prior(self):
        return None

    def _publish(self, params) -> None:
        params = params.filled()
        self.weights_ = params.weights
        self.means_ = params.means
        self.covariances_ = params.covariances
        self.precisions_cholesky_ = params.precisions_cholesky
        self.precisions_ = precisions_from_precisions_cholesky(
            params.precisions_cholesky, self.covariance_type
        )
        self.degrees_of_freedom_ = params.dof

    def _params(self):
        from .families.student_t import StudentTParams

        return StudentTParams(
            self.covariance_type,
            np.asarray(self.weights_, dtype=np.float64),
            np.ascontiguousarray(self.means_, dtype=np.float64),
            np.ascontiguousarray(self.precisions_cholesky_, dtype=np.float64),
            np.asarray(self.degrees_of_freedom_, dtype=np.float64),
            self.covariances_,
        )

    def _check_model_file(self, header: dict, arrays: dict, n_iter: int) -> None:
        self._read_algorithm(header)
        kind = header.get("covariance_type")
        if kind not in ("full", "diag"):
            raise ValueError(f"invalid header: unknown covariance_type {kind!r}.")
        if self.covariance_type != kind:
            raise ValueError("inconsistent: hyper-parameters disagree with the arrays.")
        K, D = header["n_components"], header["n_features"]
        cov = covariance_shape(kind, K, D)
        dof_init = arrays.get("degrees_of_freedom_init")
        dof_init_shape = () if dof_init is not None and dof_init.ndim == 0 else (K,)
        expected = {"weights_": (K,), "means_": (K, D), "covariances_": cov, "precisions_": cov,
                    "precisions_cholesky_": cov, "degrees_of_freedom_": (K,), "lower_bounds_": (n_iter,),
                    "weights_init": (K,), "means_init": (K, D), "precisions_init": cov,
                    "degrees_of_freedom_init": dof_init_shape}  # fmt: skip
        check_array_shapes(arrays, expected, f"{K} {kind} Student-t components in {D} dimensions")
        check_fitted_arrays(arrays, kind, D)
        if np.any(arrays["degrees_of_freedom_"] <= 0):
            raise ValueError("degrees_of_freedom_ must be > 0.")

    def fit(
        self, X, y=None, sample_weight=None, *, algorithm: str = "batch",
        checkpoint: str | os.PathLike | None = None, n_passes: int = 1, callbacks=None,
    ) -> StudentTMixture:  # fmt: skip
        return self._fit(X, sample_weight, algorithm=algorithm, checkpoint=checkpoint, n_passes=n_passes,
                         callbacks=callbacks)  # fmt: skip

    fit.__doc__ = "Estimate the model parameters with the ECM algorithm.\n" + _FIT_PARAMETERS

    def partial_fit(self, X, y=None, sample_weight=None) -> StudentTMixture:
        return self._partial_fit(X, sample_weight)

    partial_fit.__doc__ = _PARTIAL_FIT_DOC


ESTIMATORS[StudentTMixture.__name__] = StudentTMixture
