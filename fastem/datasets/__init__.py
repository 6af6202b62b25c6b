"""Small data sets bundled with fastem."""

from __future__ import annotations

from importlib import resources

import numpy as np

__all__ = ["load_old_faithful"]


def load_old_faithful() -> np.ndarray:
    """The Old Faithful geyser data (272 eruptions), as in R's ``datasets::faithful``.

    Returns
    -------
    X : ndarray of shape (272, 2), float64
        Columns: eruption duration (minutes), waiting time to the next eruption (minutes).

    References
    ----------
    Haerdle, W. (1991). Smoothing Techniques with Implementation in S. Springer.
    """
    with resources.files(__package__).joinpath("old_faithful.csv").open("r") as f:
        return np.loadtxt(f, delimiter=",", skiprows=1, dtype=np.float64)
