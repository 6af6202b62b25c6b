"""numba kernels: pure functions of arrays and scalars. Nothing here imports the estimator."""
