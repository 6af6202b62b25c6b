"""Explicit 512-bit vectors inside numba kernels: a vector type and the few intrinsics the tiles need.

numba's loop vectoriser only vectorises innermost loops, so a register-blocked
micro-kernel written as plain loops (several accumulators updated over a loop
of rows) comes out either scalar or with a horizontal reduction per
accumulator. Here a value of type :class:`Vec` is one LLVM vector
(``<8 x double>`` or ``<16 x float>``, 64 bytes): a kernel keeps a block of
them in local variables, which LLVM keeps in registers, and spells each
load, broadcast and fused multiply-add out, as a C programmer would with
intrinsics. The code is plain LLVM IR, valid on every target: on CPUs without
AVX-512, LLVM splits each vector in two (correct, but a block sized for 32
vector registers then spills; see ``gaussian_simd.SIMD_TILES``).

Loads and stores take an array and the index of the first element; they do no
bounds checks (callers keep ``c + lanes`` within the row) and assume nothing
about alignment beyond the element's.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

#: bytes per vector (AVX-512 register width)
VECTOR_BYTES = 64


class Vec(types.Type):
    """An LLVM vector of ``lanes`` elements of ``dtype`` (by default 64 bytes of them)."""

    def __init__(self, dtype, lanes: int | None = None):
        self.dtype = dtype
        self.lanes = lanes or VECTOR_BYTES // (dtype.bitwidth // 8)
        super().__init__(name=f"Vec({dtype}x{self.lanes})")


@register_model(Vec)
class _VecModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        be_type = ir.VectorType(dmm.lookup(fe_type.dtype).get_value_type(), fe_type.lanes)
        super().__init__(dmm, fe_type, be_type)


def _element_pointer(context, builder, aryty, ary, index_types, indices):
    arr = context.make_array(aryty)(context, builder, ary)
    inds = [context.cast(builder, v, t, types.intp) for t, v in zip(index_types, indices, strict=True)]
    return cgutils.get_item_pointer2(
        context, builder, data=arr.data, shape=cgutils.unpack_tuple(builder, arr.shape),
        strides=cgutils.unpack_tuple(builder, arr.strides), layout=aryty.layout, inds=inds,
        wraparound=False, boundscheck=False,
    )  # fmt: skip


def _vector_pointer(context, builder, sig, args, vector_type):
    ptr = _element_pointer(context, builder, sig.args[0], args[0], sig.args[1:3], args[1:3])
    return builder.bitcast(ptr, context.get_value_type(vector_type).as_pointer())


def _splat(context, builder, vector_type, scalar):
    lt = context.get_value_type(vector_type)
    v = builder.insert_element(ir.Constant(lt, ir.Undefined), scalar, ir.Constant(ir.IntType(32), 0))
    mask = ir.Constant(ir.VectorType(ir.IntType(32), vector_type.lanes), [0] * vector_type.lanes)
    return builder.shuffle_vector(v, v, mask)


def _fma(builder, a, b, c):
    vt = a.type
    bits = 64 if isinstance(vt.element, ir.DoubleType) else 32
    fn = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(vt, [vt, vt, vt]), f"llvm.fma.v{vt.count}f{bits}"
    )
    return builder.call(fn, [a, b, c])


@intrinsic
def vlanes(typingctx, ary):
    """Lanes of a vector of ``ary``'s element type (a compile-time constant)."""
    n = Vec(ary.dtype).lanes

    def codegen(context, builder, sig, args):
        return context.get_constant(types.intp, n)

    return types.intp(ary), codegen


@intrinsic
def vzero(typingctx, ary):
    """A zero vector of ``ary``'s element type."""
    vt = Vec(ary.dtype)

    def codegen(context, builder, sig, args):
        return ir.Constant(context.get_value_type(vt), [0.0] * vt.lanes)

    return vt(ary), codegen


@intrinsic
def vzero_wide(typingctx, ary):
    """A zero float64 vector with as many lanes as a vector of ``ary``'s element type."""
    vt = Vec(types.float64, Vec(ary.dtype).lanes)

    def codegen(context, builder, sig, args):
        return ir.Constant(context.get_value_type(vt), [0.0] * vt.lanes)

    return vt(ary), codegen


@intrinsic
def vload(typingctx, ary, r, c):
    """``ary[r, c : c + lanes]`` (a 2-D array with unit stride along rows)."""
    vt = Vec(ary.dtype)

    def codegen(context, builder, sig, args):
        return builder.load(_vector_pointer(context, builder, sig, args, vt), align=ary.dtype.bitwidth // 8)

    return vt(ary, r, c), codegen


@intrinsic
def vstore(typingctx, ary, r, c, v):
    """``ary[r, c : c + lanes] = v``."""

    def codegen(context, builder, sig, args):
        builder.store(args[3], _vector_pointer(context, builder, sig, args, v), align=ary.dtype.bitwidth // 8)
        return context.get_dummy_value()

    return types.void(ary, r, c, v), codegen


@intrinsic
def vadd_to(typingctx, ary, r, c, v):
    """``ary[r, c : c + lanes] += v``."""

    def codegen(context, builder, sig, args):
        ptr = _vector_pointer(context, builder, sig, args, v)
        align = ary.dtype.bitwidth // 8
        builder.store(builder.fadd(builder.load(ptr, align=align), args[3]), ptr, align=align)
        return context.get_dummy_value()

    return types.void(ary, r, c, v), codegen


@intrinsic
def vstore_flat(typingctx, ary, i, v):
    """``ary[i : i + lanes] = v`` for a 1-D array."""

    def codegen(context, builder, sig, args):
        ptr = _element_pointer(context, builder, ary, args[0], [i], [args[1]])
        vptr = builder.bitcast(ptr, context.get_value_type(v).as_pointer())
        builder.store(args[2], vptr, align=ary.dtype.bitwidth // 8)
        return context.get_dummy_value()

    return types.void(ary, i, v), codegen


@intrinsic
def vbroadcast(typingctx, ary, r, c):
    """``ary[r, c]`` in every lane."""
    vt = Vec(ary.dtype)

    def codegen(context, builder, sig, args):
        ptr = _element_pointer(context, builder, ary, args[0], sig.args[1:3], args[1:3])
        return _splat(context, builder, vt, builder.load(ptr))

    return vt(ary, r, c), codegen


@intrinsic
def vsplat(typingctx, ary, x):
    """``x``, converted to ``ary``'s element type, in every lane."""
    vt = Vec(ary.dtype)

    def codegen(context, builder, sig, args):
        return _splat(context, builder, vt, context.cast(builder, args[1], x, ary.dtype))

    return vt(ary, x), codegen


@intrinsic
def vfma(typingctx, a, b, c):
    """``a * b + c``, fused (one rounding)."""

    def codegen(context, builder, sig, args):
        return _fma(builder, *args)

    return a(a, b, c), codegen


@intrinsic
def vsquare_add(typingctx, y, q):
    """``q + y * y`` in float64 (``y`` widened first if narrower; ``q`` has as many lanes)."""

    def codegen(context, builder, sig, args):
        yv, qv = args
        if yv.type != qv.type:
            yv = builder.fpext(yv, qv.type)
        return _fma(builder, yv, yv, qv)

    return q(y, q), codegen


@intrinsic
def vadd(typingctx, a, b):
    """``a + b``."""

    def codegen(context, builder, sig, args):
        return builder.fadd(*args)

    return a(a, b), codegen


@intrinsic
def vsub(typingctx, a, b):
    """``a - b``."""

    def codegen(context, builder, sig, args):
        return builder.fsub(*args)

    return a(a, b), codegen


@intrinsic
def vmul(typingctx, a, b):
    """``a * b``."""

    def codegen(context, builder, sig, args):
        return builder.fmul(*args)

    return a(a, b), codegen


@intrinsic
def vadd_widened(typingctx, q, s):
    """``q + s`` with ``s`` (float32 lanes) widened to ``q``'s float64 lanes first."""

    def codegen(context, builder, sig, args):
        return builder.fadd(args[0], builder.fpext(args[1], args[0].type))

    return q(q, s), codegen


@intrinsic
def vadd_to_widened(typingctx, ary, r, c, v):
    """``ary[r, c : c + lanes] += v`` with ``v`` (float32 lanes) widened to ``ary``'s float64 first."""
    wide = Vec(types.float64, v.lanes)

    def codegen(context, builder, sig, args):
        ptr = _element_pointer(context, builder, sig.args[0], args[0], sig.args[1:3], args[1:3])
        vptr = builder.bitcast(ptr, context.get_value_type(wide).as_pointer())
        widened = builder.fpext(args[3], context.get_value_type(wide))
        builder.store(builder.fadd(builder.load(vptr, align=8), widened), vptr, align=8)
        return context.get_dummy_value()

    return types.void(ary, r, c, v), codegen
