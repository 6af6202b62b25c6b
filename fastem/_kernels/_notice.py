"""The stderr notice while fastem kernels compile (first use only).

While fastem kernels compile, one line goes to stderr, e.g.::

    fastem: compiling kernels for full/tied covariances, float64 (first use only; cached in ...)

numba fires its ``"numba:compile"`` event only for a real compilation, not
when it loads a kernel from the cache, and the listener is called only then:
the hot path carries no check at all. Compilations less than
:data:`BURST_GAP` seconds apart share one line (a first fit compiles several
kernels in a row). ``FASTEM_COMPILE_NOTICE=0`` silences it. Every kernel module
imports :mod:`._config`, which installs the listener, so it listens before
anything compiles. Ahead-of-time compilation is :mod:`fastem._compile`.
"""

from __future__ import annotations

import os
import sys
import time

#: Seconds without a fastem compilation after which the next one prints a new line.
BURST_GAP = 2.0

#: Kernel (module.function) -> what it serves, for the notice.
_LABELS = {
    "fastem._kernels.gaussian._blocks_full_tied": "full/tied covariances",
    "fastem._kernels.gaussian._blocks_diag_spherical": "diag/spherical covariances",
    "fastem._kernels.gaussian_missing._missing_blocks": "missing values (Gaussian)",
}
#: kernels whose argument at this index (``means_acc``) has the dtype of the sums
_SUMS_DTYPE_ARG = {
    "fastem._kernels.gaussian._blocks_full_tied": 4,
    "fastem._kernels.gaussian._blocks_diag_spherical": 4,
}


class _Notice:
    """State of the compile notice: one line per burst of compilations."""

    def __init__(self, stream=None):
        self.stream = stream
        self.enabled = os.environ.get("FASTEM_COMPILE_NOTICE", "1") != "0"
        self.depth = 0
        self.last_end = -float("inf")
        self.lines = 0

    def on_start(self, dispatcher, args) -> None:
        name = _kernel_name(dispatcher)
        if name is None:
            return  # not a fastem kernel (numba compiles its own helpers too)
        self.depth += 1
        if self.depth > 1 or time.perf_counter() - self.last_end < BURST_GAP or not self.enabled:
            return
        self.lines += 1
        label = _LABELS.get(name)
        dtype = getattr(args[0], "dtype", None) if args else None
        sums = _SUMS_DTYPE_ARG.get(name, -1)
        if args and 0 <= sums < len(args) and str(getattr(args[sums], "dtype", "")) == "float32":
            dtype = f"{dtype} with float32 sums"  # GaussianMixture(accumulation="float32")
        what = f" for {label}, {dtype}" if label and dtype is not None else ""
        where = getattr(getattr(dispatcher, "_cache", None), "cache_path", None)
        cached = f"cached in {where}" if where else "not cached: numba has no cache directory here"
        stream = self.stream if self.stream is not None else sys.stderr
        print(f"fastem: compiling kernels{what} (first use only; {cached})", file=stream, flush=True)

    def on_end(self, dispatcher) -> None:
        if _kernel_name(dispatcher) is None or self.depth == 0:
            return
        self.depth -= 1
        if self.depth == 0:
            self.last_end = time.perf_counter()


def _kernel_name(dispatcher) -> str | None:
    py_func = getattr(dispatcher, "py_func", None)
    module = getattr(py_func, "__module__", None) or ""
    if not module.startswith("fastem."):
        return None
    return f"{module}.{py_func.__name__}"


notice = _Notice()
_installed = False


def install_notice() -> None:
    """Listen to numba's compile events (idempotent; called when the kernels are imported)."""
    global _installed
    if _installed:
        return
    try:
        from numba.core import event
    except ImportError:  # an API numba may move: then no notice rather than no fastem
        return

    class Listener(event.Listener):
        def on_start(self, ev):
            data = ev.data or {}
            notice.on_start(data.get("dispatcher"), data.get("args"))

        def on_end(self, ev):
            notice.on_end((ev.data or {}).get("dispatcher"))

    event.register("numba:compile", Listener())
    _installed = True
