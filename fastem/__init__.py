"""fastem: fast Expectation-Maximization for mixture models on multicore CPUs."""

from . import priors
from ._compile import compile_kernels
from ._em import Callback, Iteration
from ._kernels._config import BLOCK_ROWS
from .families.base import DegenerateComponentWarning, DegenerateParameterWarning
from .mixture import (
    BernoulliMixture,
    GaussianMixture,
    MultinomialMixture,
    PoissonMixture,
    StudentTMixture,
    VonMisesFisherMixture,
    load,
)

__version__ = "0.1.0"

__all__ = [
    "BLOCK_ROWS",
    "BernoulliMixture",
    "Callback",
    "DegenerateComponentWarning",
    "DegenerateParameterWarning",
    "GaussianMixture",
    "Iteration",
    "MultinomialMixture",
    "PoissonMixture",
    "StudentTMixture",
    "VonMisesFisherMixture",
    "__version__",
    "compile_kernels",
    "load",
    "priors",
]
