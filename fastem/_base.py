"""A light scikit-learn-compatible estimator base, so that ``import fastem`` stays fast.

Importing scikit-learn takes 1-2 s (it pulls in SciPy and, when installed,
pandas). fastem only needs scikit-learn's conventions, so the hot path
(in-memory float arrays) is handled here, and scikit-learn is imported lazily
where its exact behaviour matters: unusual inputs (lists, DataFrames, sparse
or object arrays, which go through ``sklearn.utils.check_array``), feature
names, estimator tags, and the exception/warning classes users catch.

``EstimatorBase`` becomes a subclass of ``sklearn.base.BaseEstimator`` as soon
as scikit-learn is imported (whoever imports it): its base class is swapped
when an estimator is created or asked for its tags, or at ``import fastem`` if
scikit-learn is already loaded. ``check_estimator`` (which tests
``isinstance(estimator, BaseEstimator)``), ``clone``, metadata routing and
the HTML repr then see an ordinary scikit-learn estimator, while a program
that never imports scikit-learn never pays for it (``import sklearn.base``
costs 1-2 s: it imports SciPy and pandas). fastem's own ``get_params``,
``set_params`` and ``__repr__`` come first in the MRO either way.
"""

from __future__ import annotations

import inspect
import sys
import threading
from numbers import Integral

import numpy as np


class _BaseEstimatorSlot:
    """Stand-in base of :class:`EstimatorBase`, replaced by ``sklearn.base.BaseEstimator``.

    (CPython refuses to reassign ``__bases__`` when the only base is ``object``.)
    """


_adopt_lock = threading.Lock()


def _loaded_base_estimator():
    """``sklearn.base.BaseEstimator`` if scikit-learn is already imported, else None (imports nothing)."""
    return getattr(sys.modules.get("sklearn.base"), "BaseEstimator", None)


def inherit_base_estimator(base_estimator=None) -> None:
    """Make :class:`EstimatorBase` (so every fastem estimator) a ``BaseEstimator`` subclass.

    Idempotent and thread-safe. Classes defined before the swap then get what
    ``BaseEstimator.__init_subclass__`` gives every subclass (the
    ``set_fit_request``-style methods of metadata routing).
    """
    if base_estimator is None:
        from sklearn.base import BaseEstimator as base_estimator
    with _adopt_lock:
        if issubclass(EstimatorBase, base_estimator):
            return
        try:
            EstimatorBase.__bases__ = (base_estimator,)
        except TypeError:  # an incompatible future BaseEstimator (e.g. __slots__): stay as we are
            return
        todo = list(EstimatorBase.__subclasses__())
        while todo:  # parents before children
            cls = todo.pop(0)
            super(EstimatorBase, cls).__init_subclass__()
            todo.extend(cls.__subclasses__())


class EstimatorBase(_BaseEstimatorSlot):
    """get_params / set_params / repr / tags as ``sklearn.base.BaseEstimator`` defines them.

    A ``BaseEstimator`` subclass once scikit-learn is imported (see the module docstring).
    """

    def __new__(cls, *args, **kwargs):
        if EstimatorBase.__bases__ == (_BaseEstimatorSlot,):  # not adopted yet: one tuple compare
            base = _loaded_base_estimator()
            if base is not None:
                inherit_base_estimator(base)
        return super().__new__(cls)

    @classmethod
    def _get_param_names(cls) -> list[str]:
        signature = inspect.signature(cls.__init__)
        return sorted(
            p.name
            for p in signature.parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        )

    def get_params(self, deep: bool = True) -> dict:
        """Parameters of this estimator (scikit-learn convention).

        Parameters
        ----------
        deep : bool, default=True
            Also return the parameters of contained estimators (there are none).

        Returns
        -------
        params : dict
        """
        return {name: getattr(self, name) for name in self._get_param_names()}

    def set_params(self, **params):
        """Set parameters (scikit-learn convention); returns ``self``."""
        valid = self._get_param_names()
        for key, value in params.items():
            if key not in valid:
                raise ValueError(
                    f"Invalid parameter {key!r} for estimator {type(self).__name__}. "
                    f"Valid parameters are: {valid!r}."
                )
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        defaults = {name: p.default for name, p in inspect.signature(type(self).__init__).parameters.items()}
        changed = []
        for name in self._get_param_names():
            value = getattr(self, name)
            default = defaults.get(name, inspect.Parameter.empty)
            same = value is default or (
                type(value) is type(default) and not isinstance(value, np.ndarray) and value == default
            )
            if not same:
                changed.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(changed)})"

    def __sklearn_tags__(self):
        # only scikit-learn calls this, so scikit-learn is already imported; check_estimator
        # asks for the tags before it tests isinstance(estimator, BaseEstimator)
        from sklearn.base import BaseEstimator

        inherit_base_estimator(BaseEstimator)
        tags = BaseEstimator.__sklearn_tags__(self)
        tags.estimator_type = "DensityEstimator"
        return tags


if _loaded_base_estimator() is not None:  # scikit-learn came first: inherit at once
    inherit_base_estimator(_loaded_base_estimator())


def as_float_array(X, *, ensure_min_samples: int, estimator) -> np.ndarray:
    """2-D C-contiguous float32/float64 array; float32 and C-contiguous float64 are not copied.

    Plain numeric ndarrays take a fast path; anything else goes through
    scikit-learn's ``check_array`` for its exact conversions and messages.
    """
    if (
        isinstance(X, np.ndarray)
        and type(X) is np.ndarray
        and X.ndim == 2
        and X.dtype.kind in "fiub"
        and X.shape[0] >= ensure_min_samples
        and X.shape[1] >= 1
    ):
        if X.dtype not in (np.float32, np.float64):
            X = X.astype(np.float64)
        return np.ascontiguousarray(X)
    from sklearn.utils import check_array

    return check_array(
        X,
        dtype=[np.float64, np.float32],
        order="C",
        ensure_all_finite=False,
        ensure_min_samples=ensure_min_samples,
        estimator=estimator,
    )


def feature_names(X):
    """Column names of a DataFrame-like ``X`` (as scikit-learn records them), else None."""
    if not hasattr(X, "columns"):
        return None
    from sklearn.utils.validation import _get_feature_names

    return _get_feature_names(X)


def check_feature_names(estimator, X) -> None:
    """scikit-learn's warnings/errors when predict-time column names disagree with fit's."""
    if hasattr(X, "columns") or hasattr(estimator, "feature_names_in_"):
        from sklearn.utils.validation import _check_feature_names

        _check_feature_names(estimator, X, reset=False)


def check_random_state(seed) -> np.random.RandomState:
    """None -> the global RandomState, int -> a new seeded one, RandomState -> itself."""
    if seed is None or seed is np.random:
        return np.random.mtrand._rand
    if isinstance(seed, Integral) and not isinstance(seed, bool):
        return np.random.RandomState(seed)
    if isinstance(seed, np.random.RandomState):
        return seed
    raise ValueError(
        f"Invalid value for 'random_state': {seed!r}. Use None, an int, or a numpy.random.RandomState."
    )


def check_is_fitted(estimator, attribute: str = "means_") -> None:
    """Raise scikit-learn's ``NotFittedError`` (a ValueError and AttributeError) before fit."""
    if not hasattr(estimator, attribute):
        from sklearn.exceptions import NotFittedError

        raise NotFittedError(
            f"This {type(estimator).__name__} instance is not fitted yet. Call 'fit' with "
            "appropriate arguments before using this estimator."
        )


def convergence_warning() -> type[Warning]:
    """scikit-learn's ``ConvergenceWarning`` class (imported only when a warning is due)."""
    from sklearn.exceptions import ConvergenceWarning

    return ConvergenceWarning
