"""The per-function 512-bit vector request: present exactly when the CPU has AVX-512F."""

from __future__ import annotations

import numba
import pytest
from numba.core import config

from fastem._kernels import _vector_width
from fastem._kernels._vector_width import _ATTRIBUTE, prefer_wide_vectors, wide_vectors_enabled


@pytest.fixture
def fresh_decision():
    """Forget the cached decision before and after a test that changes its inputs."""
    wide_vectors_enabled.cache_clear()
    yield
    wide_vectors_enabled.cache_clear()


def test_attribute_reaches_the_compiled_function_only_when_enabled():
    @numba.njit(cache=False)
    def add_one(x):
        prefer_wide_vectors()
        return x + 1

    assert add_one(1) == 2
    llvm_ir = "\n".join(add_one.inspect_llvm().values())
    assert (_ATTRIBUTE in llvm_ir) == wide_vectors_enabled()


def test_functions_without_the_call_keep_the_default():
    @numba.njit(cache=False)
    def add_two(x):
        return x + 2

    assert add_two(1) == 3
    assert _ATTRIBUTE not in "\n".join(add_two.inspect_llvm().values())


@pytest.mark.parametrize(
    ("features", "expected"),
    [("+avx2,+fma,-avx512f", False), ("+avx2,+avx512f,+avx512vl", True)],
)
def test_decision_follows_numba_cpu_features(monkeypatch, fresh_decision, features, expected):
    monkeypatch.setattr(config, "CPU_FEATURES", features)
    assert _vector_width._target_has_avx512() is expected
    assert wide_vectors_enabled() is (expected and _vector_width._attribute_survives_parsing())


def test_a_failing_probe_keeps_the_default_width(monkeypatch, fresh_decision):
    import llvmlite.binding as llvm

    def refuse(_text):
        raise RuntimeError("parser refuses string attributes")

    monkeypatch.setattr(config, "CPU_FEATURES", "+avx2,+avx512f")
    monkeypatch.setattr(llvm, "parse_assembly", refuse)
    assert _vector_width._attribute_survives_parsing() is False
    assert wide_vectors_enabled() is False
