"""Helpers compiled on their own and inlined by LLVM, not by numba: a first fit compiles faster.

numba inlines an ``inline="always"`` helper by re-translating it at every call
site and copying its IR into the caller's, block by block, each block with a
copy of the helper's whole scope (so the cost grows with the square of the
helper's size); the caller is then typed and lowered as one large function.
The full/tied kernel's loop-tile specialisation (the first fit of any data with
few features) compiled in 9-10 s, of which numba's inlining took 2.1 s, type
inference 1.9 s and lowering 3.9 s; inlining the quadratic form alone took 1.2 s.

A linked helper (:func:`linked_jit`) is typed and lowered once per signature,
and its LLVM code is linked into each kernel that calls it. ``forceinline``
marks it ``alwaysinline``, so LLVM inlines it there: the kernels run the same
loops, without calls (measured 0.94-0.96x the pass time of the numba-inlined
kernels at D=2 to 8, as fast at D=16, with bit-identical results). A helper
also has its own cache entries: a kernel compiled later in another process
links the cached helper instead of compiling it again.

No reference counting (``_nrt=False``): the helpers take the callers' arrays and
allocate nothing, and while they were still called, not inlined, the counts'
atomic operations (some on arrays every thread shares) took 6-12% of a pass at
D=2. No wrappers: only compiled code calls a linked helper.

What stays numba-inlined: a helper's loops are optimised in the helper, before
LLVM inlines it, and a loop does not always compile the same way there as inside
the kernel. Reductions over rows keep their place in the kernel (the per-tile
sums of :func:`.gaussian._finish_tile_into`, whose log-likelihood sum changed
in its last bits in the explicit-vector specialisation; :func:`.gaussian_tiles._outer_upper_tile`),
and :func:`.gaussian_tiles._rows_below` stays inlined into the linked quadratic
form: linked on its own, its float32 products were fused differently (float32
results changed in the last bit).
"""

from __future__ import annotations

from ._config import jit


def linked_jit(**overrides):
    """:func:`._config.jit` for a helper that LLVM inlines into its compiled callers (see above)."""
    # forceinline: LLVM's "alwaysinline"; _nrt is numba's (private) switch for its reference counting
    return jit(_nrt=False, forceinline=True, no_cpython_wrapper=True, no_cfunc_wrapper=True, **overrides)
