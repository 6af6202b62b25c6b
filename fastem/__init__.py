"""fastem: fast Expectation-Maximization for mixture models on multicore CPUs."""

from ._em import DegenerateComponentWarning
from ._kernels._config import BLOCK_ROWS
from .io import load
from .mixture import GaussianMixture

__version__ = "0.1.0"

__all__ = ["BLOCK_ROWS", "DegenerateComponentWarning", "GaussianMixture", "__version__", "load"]
