"""Conjugate priors for MAP-EM: ``prior=`` on the estimators.

With a prior, EM maximises the log posterior ``log p(X | theta) + log p(theta)``
instead of the log-likelihood: the E-step is unchanged and the M-step adds the
prior's pseudo-observations to the sufficient statistics. The objective that
``lower_bounds_`` records (and that convergence is tested on) is then the log
posterior per unit of sample weight, ``(sum_i w_i log p(x_i) + log p(theta)) /
sum_i w_i``, which never decreases from one iteration to the next. ``score``
stays the mean log-likelihood, and ``bic``/``aic`` are evaluated at the MAP
estimate (as R mclust does).

Priors
------
:class:`GaussianPrior` (``GaussianMixture``)
    Fraley & Raftery's conjugate prior (technical report 486, revised 2007),
    the prior of R mclust's ``priorControl()``. Means: mu_k | Sigma_k ~
    N(mean, Sigma_k / shrinkage). Covariances: full, tied: Sigma ~
    inverse-Wishart(dof, scale) (density proportional to |Sigma|^-(dof+d+1)/2
    exp(-tr(scale Sigma^-1) / 2)); diag: every variance sigma_kj^2 ~
    inverse-gamma(dof/2, scale_j/2); spherical: sigma_k^2 ~ inverse-gamma(dof/2,
    scale/2). Unset hyperparameters take mclust's ``defaultPrior`` values from
    the data: shrinkage 0.01, mean the data mean, dof d + 2, scale (1/K)^(2/d)
    times the data covariance (full, tied) or the mean of the per-feature
    variances (diag, spherical), with n - 1 denominators. ``prior="mclust"`` is
    ``GaussianPrior()``. The MAP M-step (n_k = R_k, xbar_k the component mean,
    W_k its scatter matrix, b_k = shrinkage n_k / (n_k + shrinkage), e_k = xbar_k - mean):

    - mu_k = (n_k xbar_k + shrinkage mean) / (n_k + shrinkage)
    - full: Sigma_k = (scale + W_k + b_k e_k e_k^T) / (dof + n_k + d + 2)
    - tied: Sigma = (scale + sum_k [W_k + b_k e_k e_k^T]) / (dof + n + d + K + 1)
    - diag: sigma_kj^2 = (scale_j + W_kjj + b_k e_kj^2) / (dof + n_k + 3)
    - spherical: sigma_k^2 = (scale + tr W_k + b_k ||e_k||^2) / (dof + (n_k + 1) d + 2)

    With ``shrinkage=0`` the prior on the means is flat (improper) and the terms
    it adds to the denominators (1 full, K tied, 1 diag, d spherical) drop out,
    as in mclust. ``reg_covar`` is not added to MAP covariances (the prior keeps them positive
    definite); it still regularises nothing else.
:class:`GammaPrior` (``PoissonMixture``)
    rates_kd = (S1_kd + pseudocount) / (R_k + exposure): a Gamma(pseudocount + 1,
    exposure) prior on every rate.
:class:`BetaPrior` (``BernoulliMixture``)
    p_kd = (S1_kd + successes) / (R_k + successes + failures): Beta(successes + 1,
    failures + 1) on every probability.
:class:`DirichletPrior` (``MultinomialMixture``)
    p_kd = (S1_kd + pseudocount) / (sum_e S1_ke + D pseudocount): Dirichlet(pseudocount + 1)
    on every component's probabilities (additive smoothing).

Every prior also takes ``weight_pseudocount`` c >= 0, a Dirichlet(c + 1) prior on
the mixture weights: pi_k = (R_k + c) / (sum_j R_j + K c); 0 (the default) gives
maximum-likelihood weights, as mclust.

``VonMisesFisherMixture`` takes no prior: the conjugate prior of (mu, kappa)
(Nunez-Antonio & Gutierrez-Pena 2005) has no closed-form normaliser, and a prior
on the directions alone would not keep kappa from diverging, so it is refused
rather than offered half-done.

A prior object is a value: it is also a ``str`` whose text is its canonical JSON
specification, so ``get_params``, model files and checkpoints store it as it is
and :func:`fastem.load` gives back an equal prior (the JSON text, which every
estimator accepts in place of the object).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

__all__ = ["BetaPrior", "DirichletPrior", "GammaPrior", "GaussianPrior", "as_prior"]


gammaln = math.lgamma


def multigammaln(a: float, d: int) -> float:
    """log of the multivariate gamma function Gamma_d(a)."""
    return d * (d - 1) / 4 * math.log(math.pi) + sum(math.lgamma(a + (1 - j) / 2) for j in range(1, d + 1))


def _log_dirichlet_weights(c: float, weights: np.ndarray) -> float:
    """log Dirichlet(weights; c + 1, ..., c + 1)."""
    K = weights.shape[0]
    out = gammaln(K * (c + 1.0)) - K * gammaln(c + 1.0)
    if c > 0:
        with np.errstate(divide="ignore"):
            out += c * float(np.sum(np.log(weights)))
    return float(out)


def _real(name: str, value, *, low: float, strict: bool = False, what: str = "") -> float:
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    v = float(value) if ok else math.nan
    ok = ok and math.isfinite(v) and (v > low if strict else v >= low)
    if not ok:
        sign = ">" if strict else ">="
        raise ValueError(f"Invalid prior hyperparameter '{name}': {value!r}. It must be a finite real number "
                         f"{sign} {low:g}{what}.")  # fmt: skip
    return v


def _array_or_none(name: str, value):
    if value is None:
        return None
    try:
        a = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            f"Invalid prior hyperparameter '{name}': it must be a number or an array of numbers."
        ) from None
    if a.ndim > 2 or not np.all(np.isfinite(a)):
        raise ValueError(
            f"Invalid prior hyperparameter '{name}': it must be finite, with at most 2 dimensions."
        )
    return a


def _plain(value):
    """JSON form of a hyperparameter: None, a float, or nested lists of floats (exact: repr round trips)."""
    if value is None:
        return None
    if isinstance(value, np.ndarray):
        return value.tolist() if value.ndim else float(value)
    return float(value)


class Prior(str):
    """Base of the prior objects: a ``str`` holding the canonical JSON specification."""

    kind: str = ""
    _fields: tuple[str, ...] = ()

    def __new__(cls, **values):
        values = cls._validate(**values)
        spec = {"prior": cls.kind, **{k: _plain(values[k]) for k in cls._fields}}
        self = super().__new__(cls, json.dumps(spec, separators=(",", ":")))
        self._values = values
        return self

    @classmethod
    def _validate(cls, **values) -> dict:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def __getattr__(self, name):
        values = self.__dict__.get("_values", {})
        if name in values:
            value = values[name]
            return value.copy() if isinstance(value, np.ndarray) else value
        raise AttributeError(name)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={_plain(self._values[k])!r}" for k in self._fields)
        return f"{type(self).__name__}({args})"

    def __reduce__(self):
        return (_from_json, (str(self),))

    def __deepcopy__(self, memo):
        return self

    @property
    def weight_pseudocount(self) -> float:
        return float(self._values["weight_pseudocount"])

    def weights(self, R: np.ndarray) -> np.ndarray:
        """MAP mixture weights from the component masses (unnormalised; zero mass stays zero if c = 0)."""
        return R + self.weight_pseudocount

    def log_weight_prior(self, weights: np.ndarray) -> float:
        """log Dirichlet(weights; c + 1, ..., c + 1)."""
        return _log_dirichlet_weights(self.weight_pseudocount, np.asarray(weights))


class GaussianPrior(Prior):
    """Conjugate (normal-inverse-Wishart / inverse-gamma) prior of a Gaussian mixture, as in R mclust.

    Parameters
    ----------
    shrinkage : float, default=0.01
        kappa >= 0: the prior mean counts as ``shrinkage`` observations.
    mean : array-like of shape (n_features,), default=None
        Prior mean of the component means; None: the data mean.
    dof : float, default=None
        Degrees of freedom nu (> d - 1 for full/tied, > 0 for diag/spherical);
        None: d + 2.
    scale : float or array-like, default=None
        Lambda: (d, d) symmetric positive definite or a positive number (times
        the identity) for full/tied; a positive number or (d,) positive values
        for diag; a positive number for spherical. None: mclust's default
        from the data (see :mod:`fastem.priors`).
    weight_pseudocount : float, default=0.0
        c >= 0 of the Dirichlet(c + 1) prior on the weights (0: maximum-likelihood weights).
    """

    kind = "gaussian"
    _fields = ("shrinkage", "mean", "dof", "scale", "weight_pseudocount")

    def __new__(cls, shrinkage: float = 0.01, mean=None, dof: float | None = None, scale=None,
                weight_pseudocount: float = 0.0):  # fmt: skip
        return super().__new__(cls, shrinkage=shrinkage, mean=mean, dof=dof, scale=scale,
                               weight_pseudocount=weight_pseudocount)  # fmt: skip

    @classmethod
    def _validate(cls, *, shrinkage, mean, dof, scale, weight_pseudocount) -> dict:
        out = {
            "shrinkage": _real("shrinkage", shrinkage, low=0.0),
            "mean": _array_or_none("mean", mean),
            "dof": None if dof is None else _real("dof", dof, low=0.0, strict=True),
            "scale": _array_or_none("scale", scale),
            "weight_pseudocount": _real("weight_pseudocount", weight_pseudocount, low=0.0),
        }
        if out["mean"] is not None and out["mean"].ndim != 1:
            raise ValueError("Invalid prior hyperparameter 'mean': it must be a vector of n_features values.")
        scale = out["scale"]
        if scale is not None:
            if scale.ndim < 2 and np.any(scale <= 0):
                raise ValueError(f"Invalid prior hyperparameter 'scale': it must be positive, got min "
                                 f"{scale.min():g}.")  # fmt: skip
            if scale.ndim == 2:
                _check_spd(scale)
        return out

    def resolve(self, covariance_type: str, n_components: int, n_features: int,
                moments: DataMoments | None) -> ResolvedGaussianPrior:  # fmt: skip
        """Hyperparameters for a fit: unset ones from the data moments (mclust's ``defaultPrior``)."""
        self.check(covariance_type, n_features)
        d = n_features
        mean, dof, scale = self.mean, self.dof, self.scale
        if (mean is None or scale is None) and moments is None:
            raise ValueError("this prior needs the data mean and covariance, which were not computed.")
        if mean is None:
            mean = moments.mean.copy()
        if dof is None:
            dof = d + 2.0
        if scale is None:
            fac = (1.0 / n_components) ** (2.0 / d)
            cov = moments.covariance()
            if covariance_type in ("full", "tied"):
                scale = fac * cov
                _check_spd(scale, "the data covariance (times (1/K)^(2/d)) used as 'scale'",
                           "Pass a scale, or remove constant or collinear features.")  # fmt: skip
            else:
                scale = np.asarray(fac * float(np.mean(np.diag(cov))))
                if not scale > 0:
                    raise ValueError("the data have zero variance, so mclust's default prior scale is 0: "
                                     "pass a positive scale.")  # fmt: skip
        scale = np.asarray(scale, dtype=np.float64)
        if covariance_type in ("full", "tied"):
            scale = float(scale) * np.eye(d) if scale.ndim < 2 else scale
        elif covariance_type == "diag":
            scale = np.broadcast_to(scale, (d,)).astype(np.float64)
        else:
            scale = np.asarray(float(scale))
        return ResolvedGaussianPrior(covariance_type, float(self.shrinkage), np.asarray(mean, np.float64),
                                     float(dof), scale, self.weight_pseudocount)  # fmt: skip

    def needs_data(self) -> bool:
        return self._values["mean"] is None or self._values["scale"] is None

    def check(self, covariance_type: str, n_features: int) -> None:
        """The dimension-dependent checks (raise ValueError)."""
        d = n_features
        mean, dof, scale = self._values["mean"], self._values["dof"], self._values["scale"]
        if mean is not None and mean.shape != (d,):
            raise ValueError(f"Invalid prior hyperparameter 'mean': shape {mean.shape}, expected ({d},) for "
                             f"{d} features.")  # fmt: skip
        if dof is not None and covariance_type in ("full", "tied") and not dof > d - 1:
            raise ValueError(
                f"Invalid prior hyperparameter 'dof': {dof:g}. An inverse-Wishart prior in {d} dimensions "
                f"needs dof > {d - 1} (mclust's default is d + 2 = {d + 2})."
            )
        if scale is not None:
            allowed = {"full": ((), (d, d)), "tied": ((), (d, d)), "diag": ((), (d,)), "spherical": ((),)}
            if scale.shape not in allowed[covariance_type]:
                raise ValueError(f"Invalid prior hyperparameter 'scale': shape {scale.shape} does not fit "
                                 f"covariance_type={covariance_type!r} with {d} features (allowed: "
                                 f"{', '.join(map(str, allowed[covariance_type]))}).")  # fmt: skip


def _check_spd(scale: np.ndarray, what: str = "'scale'", fix: str = "") -> None:
    if scale.shape[0] != scale.shape[1] or not np.allclose(scale, scale.T, rtol=1e-12, atol=0):
        raise ValueError(f"Invalid prior hyperparameter {what}: it must be a symmetric square matrix. {fix}")
    eig = np.linalg.eigvalsh(scale)
    smallest = eig[0]
    # a data covariance is judged relative to its largest eigenvalue (rounding leaves singular ones at ~1e-17)
    if not smallest > (1e-12 * eig[-1] if fix else 0.0):
        raise ValueError(f"Invalid prior hyperparameter {what}: it is not positive definite (smallest "
                         f"eigenvalue {smallest:.6g}). {fix}".rstrip())  # fmt: skip


@dataclass(frozen=True, eq=False)
class ResolvedGaussianPrior:
    """A Gaussian prior's hyperparameters for one fit (arrays shaped for the covariance type)."""

    covariance_type: str
    shrinkage: float
    mean: np.ndarray
    dof: float
    scale: np.ndarray  #: (d, d) full/tied, (d,) diag, () spherical
    weight_pseudocount: float

    def log_prior(self, weights, means, covariances) -> float:
        """log p(theta): Dirichlet weights, normal means, inverse-Wishart/gamma covariances (normalised)."""
        kind, kappa, nu, m0, lam = self.covariance_type, self.shrinkage, self.dof, self.mean, self.scale
        K, d = means.shape
        e = means - m0
        out = _log_dirichlet_weights(self.weight_pseudocount, np.asarray(weights))
        # shrinkage 0: a flat (improper) prior on the means, which leaves the covariances alone (as mclust)
        m = 1.0 if kappa > 0 else 0.0
        mean_const = (-0.5 * d * math.log(2 * math.pi) + 0.5 * d * math.log(kappa)) if kappa > 0 else 0.0
        if kind in ("full", "tied"):
            covs = covariances if kind == "full" else covariances[None]
            logdets = np.linalg.slogdet(covs)[1]
            invs = np.linalg.inv(covs)
            ld = logdets if kind == "full" else np.repeat(logdets, K)
            iv = invs if kind == "full" else np.repeat(invs, K, axis=0)
            q = np.einsum("ki,kij,kj->k", e, iv, e)
            out += float(np.sum(mean_const - 0.5 * m * ld - 0.5 * kappa * q))
            lam_logdet = np.linalg.slogdet(lam)[1]
            iw_const = 0.5 * nu * lam_logdet - 0.5 * nu * d * math.log(2.0) - float(multigammaln(0.5 * nu, d))
            traces = np.einsum("ij,kji->k", lam, invs)
            out += float(np.sum(iw_const - 0.5 * (nu + d + 1) * logdets - 0.5 * traces))
        elif kind == "diag":
            var = covariances
            out += float(
                np.sum(
                    mean_const - 0.5 * m * np.log(var).sum(axis=1) - 0.5 * kappa * (e**2 / var).sum(axis=1)
                )
            )
            a, b = 0.5 * nu, 0.5 * lam[None, :]
            out += float(np.sum(a * np.log(b) - math.lgamma(a) - (a + 1) * np.log(var) - b / var))
        else:
            var = covariances
            out += float(
                np.sum(mean_const - 0.5 * m * d * np.log(var) - 0.5 * kappa * (e**2).sum(axis=1) / var)
            )
            a, b = 0.5 * nu, 0.5 * float(lam)
            out += float(np.sum(a * math.log(b) - math.lgamma(a) - (a + 1) * np.log(var) - b / var))
        return out


class _PseudocountPrior(Prior):
    """A prior whose MAP M-step adds pseudo-observations to (R, S1)."""

    def pseudo_moments(self, R: np.ndarray, S1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError


class GammaPrior(_PseudocountPrior):
    """Gamma(pseudocount + 1, exposure) prior on every Poisson rate.

    MAP rates: (S1_kd + pseudocount) / (R_k + exposure), i.e. ``exposure``
    pseudo-observations with ``pseudocount`` counts in total.

    Parameters
    ----------
    pseudocount : float, default=1.0
        >= 0.
    exposure : float, default=1.0
        >= 0 (0: an improper flat-in-rate prior, the normaliser is left out of the objective).
    weight_pseudocount : float, default=0.0
        >= 0, Dirichlet(c + 1) on the weights.
    """

    kind = "gamma"
    _fields = ("pseudocount", "exposure", "weight_pseudocount")

    def __new__(cls, pseudocount: float = 1.0, exposure: float = 1.0, weight_pseudocount: float = 0.0):
        return super().__new__(cls, pseudocount=pseudocount, exposure=exposure,
                               weight_pseudocount=weight_pseudocount)  # fmt: skip

    @classmethod
    def _validate(cls, *, pseudocount, exposure, weight_pseudocount) -> dict:
        return {"pseudocount": _real("pseudocount", pseudocount, low=0.0),
                "exposure": _real("exposure", exposure, low=0.0),
                "weight_pseudocount": _real("weight_pseudocount", weight_pseudocount, low=0.0)}  # fmt: skip

    def pseudo_moments(self, R, S1):
        return R + self.exposure, S1 + self.pseudocount

    def log_prior(self, params) -> float:
        a, b = self.pseudocount + 1.0, self.exposure
        lam = params.arrays["rates"]
        out = self.log_weight_prior(params.weights)
        out += float(np.sum((a - 1.0) * np.log(lam) - b * lam))
        if b > 0:
            out += lam.size * float(a * math.log(b) - gammaln(a))
        return out


class BetaPrior(_PseudocountPrior):
    """Beta(successes + 1, failures + 1) prior on every Bernoulli probability.

    MAP probabilities: (S1_kd + successes) / (R_k + successes + failures).

    Parameters
    ----------
    successes, failures : float, default=1.0
        Pseudo-observations of ones and zeros per feature, >= 0 (1, 1: Laplace smoothing).
    weight_pseudocount : float, default=0.0
        >= 0, Dirichlet(c + 1) on the weights.
    """

    kind = "beta"
    _fields = ("successes", "failures", "weight_pseudocount")

    def __new__(cls, successes: float = 1.0, failures: float = 1.0, weight_pseudocount: float = 0.0):
        return super().__new__(cls, successes=successes, failures=failures,
                               weight_pseudocount=weight_pseudocount)  # fmt: skip

    @classmethod
    def _validate(cls, *, successes, failures, weight_pseudocount) -> dict:
        return {"successes": _real("successes", successes, low=0.0),
                "failures": _real("failures", failures, low=0.0),
                "weight_pseudocount": _real("weight_pseudocount", weight_pseudocount, low=0.0)}  # fmt: skip

    def pseudo_moments(self, R, S1):
        return R + self.successes + self.failures, S1 + self.successes

    def log_prior(self, params) -> float:
        a, b = self.successes + 1.0, self.failures + 1.0
        p = params.arrays["probabilities"]
        out = self.log_weight_prior(params.weights)
        out += float(np.sum((a - 1.0) * np.log(p) + (b - 1.0) * np.log1p(-p)))
        out += p.size * float(gammaln(a + b) - gammaln(a) - gammaln(b))
        return out


class DirichletPrior(_PseudocountPrior):
    """Dirichlet(pseudocount + 1, ...) prior on every multinomial component (additive smoothing).

    MAP probabilities: (S1_kd + pseudocount) / (sum_e S1_ke + D pseudocount).

    Parameters
    ----------
    pseudocount : float, default=1.0
        >= 0 (1: Laplace smoothing).
    weight_pseudocount : float, default=0.0
        >= 0, Dirichlet(c + 1) on the weights.
    """

    kind = "dirichlet"
    _fields = ("pseudocount", "weight_pseudocount")

    def __new__(cls, pseudocount: float = 1.0, weight_pseudocount: float = 0.0):
        return super().__new__(cls, pseudocount=pseudocount, weight_pseudocount=weight_pseudocount)

    @classmethod
    def _validate(cls, *, pseudocount, weight_pseudocount) -> dict:
        return {"pseudocount": _real("pseudocount", pseudocount, low=0.0),
                "weight_pseudocount": _real("weight_pseudocount", weight_pseudocount, low=0.0)}  # fmt: skip

    def pseudo_moments(self, R, S1):
        return R, S1 + self.pseudocount

    def log_prior(self, params) -> float:
        a = self.pseudocount + 1.0
        p = params.arrays["probabilities"]
        K, D = p.shape
        out = self.log_weight_prior(params.weights)
        out += float(np.sum((a - 1.0) * np.log(p)))
        out += K * float(gammaln(D * a) - D * gammaln(a))
        return out


_KINDS = {cls.kind: cls for cls in (GaussianPrior, GammaPrior, BetaPrior, DirichletPrior)}


def _from_json(text: str) -> Prior:
    try:
        spec = json.loads(text)
    except json.JSONDecodeError:
        spec = None
    if not isinstance(spec, dict) or spec.get("prior") not in _KINDS:
        raise ValueError(f"Invalid value for 'prior': {text!r}. Use None, 'mclust' (GaussianMixture), a "
                         "fastem.priors object, or the JSON text of one.")  # fmt: skip
    cls = _KINDS[spec.pop("prior")]
    unknown = set(spec) - set(cls._fields)
    if unknown:
        raise ValueError(
            f"Invalid value for 'prior': unknown {cls.__name__} hyperparameters {sorted(unknown)}."
        )
    return cls(**spec)


def as_prior(value, allowed: tuple[type, ...], estimator: str) -> Prior | None:
    """The prior object for an estimator's ``prior=`` value (None, 'mclust', an object, or its JSON text)."""
    if value is None:
        return None
    if isinstance(value, str) and not isinstance(value, Prior):
        if value == "mclust":
            if GaussianPrior not in allowed:
                raise ValueError(f"Invalid value for 'prior': 'mclust' is the Gaussian prior of R mclust; "
                                 f"{estimator} takes {_names(allowed)}.")  # fmt: skip
            return GaussianPrior()
        value = _from_json(value)
    if not isinstance(value, Prior):
        raise ValueError(
            f"Invalid value for 'prior': {value!r}. {estimator} takes None or {_names(allowed)}."
        )
    if not isinstance(value, allowed):
        raise ValueError(f"Invalid value for 'prior': {estimator} takes {_names(allowed)}, not a "
                         f"{type(value).__name__}.")  # fmt: skip
    return value


def _names(allowed) -> str:
    if not allowed:
        return "no prior (prior=None)"
    names = [f"a fastem.priors.{c.__name__}" for c in allowed]
    if GaussianPrior in allowed:
        names.append("'mclust'")
    return " or ".join(names)


# ---------------------------------------------------------------- data moments
@dataclass
class DataMoments:
    """Weighted count, mean and centred scatter of the data (Chan et al.'s parallel merge).

    ``n_rows`` rows of total weight ``weight``; ``scatter = sum_i w_i (x_i - mean)(x_i - mean)^T``.
    """

    n_rows: int
    weight: float
    mean: np.ndarray
    scatter: np.ndarray

    @classmethod
    def of(cls, X: np.ndarray, sample_weight: np.ndarray | None = None) -> DataMoments:
        """Moments of one block of rows (two passes over it)."""
        X = np.asarray(X, dtype=np.float64)
        n, d = X.shape
        w = np.ones(n) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        W = float(w.sum())
        if not W > 0:
            return cls(n, 0.0, np.zeros(d), np.zeros((d, d)))
        mean = w @ X / W
        Xc = X - mean
        return cls(n, W, mean, (Xc * w[:, None]).T @ Xc)

    @classmethod
    def of_rows(cls, X: np.ndarray, sample_weight: np.ndarray | None = None,
                block: int = 65_536) -> DataMoments:  # fmt: skip
        """Moments of an array, a block of rows at a time (memory bounded by one block in float64)."""
        out = None
        for start in range(0, X.shape[0], block):
            sw = None if sample_weight is None else sample_weight[start : start + block]
            part = cls.of(X[start : start + block], sw)
            out = part if out is None else out.merge(part)
        return out

    def merge(self, other: DataMoments) -> DataMoments:
        """The moments of both blocks (a new object)."""
        W = self.weight + other.weight
        if not other.weight > 0:
            return DataMoments(self.n_rows + other.n_rows, self.weight, self.mean, self.scatter)
        if not self.weight > 0:
            return DataMoments(self.n_rows + other.n_rows, other.weight, other.mean, other.scatter)
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.weight / W)
        scatter = self.scatter + other.scatter + np.outer(delta, delta) * (self.weight * other.weight / W)
        return DataMoments(self.n_rows + other.n_rows, W, mean, scatter)

    def covariance(self) -> np.ndarray:
        """R's ``var(data)``: the n - 1 denominator (weighted: scatter / weight * n / (n - 1))."""
        n = self.n_rows
        return self.scatter / self.weight * (n / max(n - 1, 1))
