"""fastem: fast Expectation-Maximization for mixture models on multicore CPUs."""

from ._em import Callback, Iteration
from ._kernels._config import BLOCK_ROWS
from .families.base import DegenerateComponentWarning, DegenerateParameterWarning
from .mixture import GaussianMixture, load

__version__ = "0.1.0"

__all__ = [
    "BLOCK_ROWS",
    "Callback",
    "DegenerateComponentWarning",
    "DegenerateParameterWarning",
    "GaussianMixture",
    "Iteration",
    "__version__",
    "load",
]
