"""Register-tile matrix kernels written in LLVM IR, for the loops numba cannot vectorise well.

A matrix product runs fastest when a tile of the output stays in vector registers while
the shared dimension streams past: per step, one row of ``b`` is loaded, one value of each
of the tile's rows of ``a`` is broadcast, and every register gets one fused multiply-add.
Written as numba loops, the tile lives in memory (LLVM cannot prove the output does not
alias the inputs), so every step also loads and stores it; that ran at about half the
machine's multiply-add rate. Here the tile is explicit: ``rows`` x ``vectors`` SIMD
registers of 64 bytes (16 float32 or 8 float64 lanes), the shape BLAS micro-kernels use.

The kernels are numba intrinsics, inlined into their numba callers and cached with them.
The arithmetic is ``llvm.fma`` on IEEE values: no fast-math assumption, so inf and NaN
propagate as in any BLAS.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

VECTOR_BYTES = 64  # one AVX-512 register; LLVM splits it on narrower machines
_I8P = ir.IntType(8).as_pointer()
_I32 = ir.IntType(32)


def lanes_of(dtype) -> int:
    """Values per vector register for a numba float dtype."""
    return VECTOR_BYTES * 8 // dtype.bitwidth


def _offset(builder, base, offset):
    return builder.gep(base, [offset], inbounds=True)


def _splat(builder, vector_type, scalar):
    undef = ir.Constant(vector_type, ir.Undefined)
    single = builder.insert_element(undef, scalar, _I32(0))
    return builder.shuffle_vector(single, undef, ir.Constant(
        ir.VectorType(_I32, vector_type.count), [0] * vector_type.count))


class _Vectors:
    """Loads and stores of whole or lane-masked vectors at byte offsets."""

    def __init__(self, builder, vector_type, itemsize, mask):
        self.builder, self.type, self.itemsize, self.mask = builder, vector_type, itemsize, mask
        pointer = vector_type.as_pointer()
        name = f"v{vector_type.count}{'f32' if itemsize == 4 else 'f64'}"
        mask_type = ir.VectorType(ir.IntType(1), vector_type.count)
        module = builder.module
        self._masked_load = cgutils.get_or_insert_function(module, ir.FunctionType(
            vector_type, [pointer, _I32, mask_type, vector_type]), f"llvm.masked.load.{name}.p0")
        self._masked_store = cgutils.get_or_insert_function(module, ir.FunctionType(
            ir.VoidType(), [vector_type, pointer, _I32, mask_type]), f"llvm.masked.store.{name}.p0")
        self.fma = cgutils.get_or_insert_function(
            module, ir.FunctionType(vector_type, [vector_type] * 3), f"llvm.fma.{name}")

    def _pointer(self, base, offset):
        return self.builder.bitcast(_offset(self.builder, base, offset), self.type.as_pointer())

    def load(self, base, offset, masked):
        pointer = self._pointer(base, offset)
        if masked:
            return self.builder.call(self._masked_load, [
                pointer, _I32(self.itemsize), self.mask, ir.Constant(self.type, None)])
        return self.builder.load(pointer, align=self.itemsize)

    def store(self, value, base, offset, masked):
        pointer = self._pointer(base, offset)
        if masked:
            self.builder.call(self._masked_store, [value, pointer, _I32(self.itemsize), self.mask])
        else:
            self.builder.store(value, pointer, align=self.itemsize)


def _lane_mask(builder, lanes, count):
    """<lanes x i1>: lane < count."""
    index_type = ir.VectorType(_I32, lanes)
    counts = _splat(builder, index_type, builder.trunc(count, _I32))
    return builder.icmp_signed("<", ir.Constant(index_type, list(range(lanes))), counts)


FROM_ZERO, FROM_BIAS, FROM_OUT = 0, 1, 2  # what a tile's sums start from


def make_tile(rows: int, vectors: int, *, masked: bool):
    """An intrinsic ``tile(a, b, bias, start, out, i, j, cols, k0, k1)``: for r < rows and
    the columns c = j .. j + vectors * lanes - 1 (only the first ``cols`` of the last vector
    when ``masked``), out[i + r, c] = s + sum over k0 <= k < k1 of a[i + r, k] * b[k, c], the
    sum in increasing k from s = 0, bias[c] or out[i + r, c] itself (``start`` = FROM_ZERO,
    FROM_BIAS, FROM_OUT). (A block of k by index, not by slicing a and b: a slice is
    another array layout, and every layout compiles its own copy of the callers.)

    ``a`` (M, K) may have any strides (a transposed view is fine); ``b`` (K, N), ``bias``
    and ``out`` (M, N) must be contiguous along their last axis. Nothing is checked: the
    caller keeps every index in range.
    """
    @intrinsic
    def tile(typingctx, a, b, bias, start, out, i, j, cols, k0, k1):
        def codegen(context, builder, signature, args):
            a_type, b_type, bias_type, start_type, out_type = signature.args[:5]
            itemsize = a_type.dtype.bitwidth // 8
            lanes = lanes_of(a_type.dtype)
            element = context.get_data_type(a_type.dtype)
            vector_type = ir.VectorType(element, lanes)
            intp = context.get_value_type(types.intp)
            a_arr, b_arr, bias_arr, out_arr = (
                context.make_array(t)(context, builder, v)
                for t, v in ((a_type, args[0]), (b_type, args[1]), (bias_type, args[2]),
                             (out_type, args[4])))
            i_, j_, cols_, k0_, k1_ = (context.cast(builder, v, t, types.intp)
                                       for v, t in zip(args[5:], signature.args[5:], strict=True))
            start_ = context.cast(builder, args[3], start_type, types.intp)
            a_row_stride, a_k_stride = cgutils.unpack_tuple(builder, a_arr.strides, 2)
            b_row_stride = cgutils.unpack_tuple(builder, b_arr.strides, 2)[0]
            out_row_stride = cgutils.unpack_tuple(builder, out_arr.strides, 2)[0]
            mask = _lane_mask(builder, lanes, cols_) if masked else None
            vec = _Vectors(builder, vector_type, itemsize, mask)
            last = vectors - 1

            def is_masked(v):
                return masked and v == last

            column = builder.mul(j_, ir.Constant(intp, itemsize))
            shifts = [builder.add(column, ir.Constant(intp, v * lanes * itemsize))
                      for v in range(vectors)]
            tiles = [[cgutils.alloca_once_value(builder, ir.Constant(vector_type, None))
                      for _ in range(vectors)] for _ in range(rows)]
            out_base = builder.bitcast(out_arr.data, _I8P)
            out_rows = [builder.mul(builder.add(i_, ir.Constant(intp, r)), out_row_stride)
                        for r in range(rows)]
            with builder.if_then(builder.icmp_signed("==", start_, ir.Constant(intp, FROM_BIAS))):
                bias_base = builder.bitcast(bias_arr.data, _I8P)
                for v in range(vectors):
                    value = vec.load(bias_base, shifts[v], is_masked(v))
                    for r in range(rows):
                        builder.store(value, tiles[r][v])
            with builder.if_then(builder.icmp_signed("==", start_, ir.Constant(intp, FROM_OUT))):
                for r in range(rows):
                    for v in range(vectors):
                        builder.store(vec.load(out_base, builder.add(out_rows[r], shifts[v]),
                                               is_masked(v)), tiles[r][v])
            a_base = builder.bitcast(a_arr.data, _I8P)
            a_rows = [_offset(builder, a_base, builder.mul(
                builder.add(i_, ir.Constant(intp, r)), a_row_stride)) for r in range(rows)]
            b_base = builder.bitcast(b_arr.data, _I8P)
            with cgutils.for_range(builder, builder.sub(k1_, k0_)) as loop:
                k = builder.add(loop.index, k0_)
                b_row_offset = builder.mul(k, b_row_stride)
                b_values = [vec.load(b_base, builder.add(b_row_offset, shifts[v]), is_masked(v))
                            for v in range(vectors)]
                a_offset = builder.mul(k, a_k_stride)
                for r in range(rows):
                    scalar = builder.load(builder.bitcast(
                        _offset(builder, a_rows[r], a_offset), element.as_pointer()))
                    broadcast = _splat(builder, vector_type, scalar)
                    for v in range(vectors):
                        total = builder.call(vec.fma, [broadcast, b_values[v],
                                                       builder.load(tiles[r][v])])
                        builder.store(total, tiles[r][v])
            for r in range(rows):
                for v in range(vectors):
                    vec.store(builder.load(tiles[r][v]), out_base,
                              builder.add(out_rows[r], shifts[v]), is_masked(v))
            return context.get_dummy_value()
        return types.void(a, b, bias, start, out, i, j, cols, k0, k1), codegen
    return tile


def _transpose_stage_masks(lanes: int, half: int) -> tuple[list[int], list[int]]:
    """Shuffle masks pairing rows r and r + half: within each segment of 2 * half lanes, the
    low row takes the first halves of both rows, the high row their second halves."""
    both = list(range(half)) + list(range(lanes, lanes + half))
    low = [start + q for start in range(0, lanes, 2 * half) for q in both]
    return low, [index + half for index in low]


@intrinsic
def transpose_tile(typingctx, src, dst, r, c):
    """dst[c + q, r + p] = src[r + p, c + q] for p, q < lanes: one square block of lanes x
    lanes values through registers. Rows r and r + half exchange half-rows, for half =
    lanes / 2 down to 1 (each stage transposes every 2 x 2 arrangement of half x half
    blocks). Both arrays contiguous along their last axis; indices unchecked."""
    def codegen(context, builder, signature, args):
        src_type, dst_type = signature.args[:2]
        itemsize = src_type.dtype.bitwidth // 8
        lanes = lanes_of(src_type.dtype)
        vector_type = ir.VectorType(context.get_data_type(src_type.dtype), lanes)
        intp = context.get_value_type(types.intp)
        src_arr = context.make_array(src_type)(context, builder, args[0])
        dst_arr = context.make_array(dst_type)(context, builder, args[1])
        r_, c_ = (context.cast(builder, v, t, types.intp)
                  for v, t in zip(args[2:], signature.args[2:], strict=True))
        src_stride = cgutils.unpack_tuple(builder, src_arr.strides, 2)[0]
        dst_stride = cgutils.unpack_tuple(builder, dst_arr.strides, 2)[0]
        size = ir.Constant(intp, itemsize)

        def row_pointer(array, stride, row, p, column):
            offset = builder.add(builder.mul(builder.add(row, ir.Constant(intp, p)), stride),
                                 builder.mul(column, size))
            return builder.bitcast(_offset(builder, builder.bitcast(array.data, _I8P), offset),
                                   vector_type.as_pointer())

        rows = [builder.load(row_pointer(src_arr, src_stride, r_, p, c_), align=itemsize)
                for p in range(lanes)]
        half = lanes // 2
        while half >= 1:
            low_mask, high_mask = (ir.Constant(ir.VectorType(_I32, lanes), m)
                                   for m in _transpose_stage_masks(lanes, half))
            new = list(rows)
            for p in range(lanes):
                if (p // half) % 2 == 0:
                    new[p] = builder.shuffle_vector(rows[p], rows[p + half], low_mask)
                    new[p + half] = builder.shuffle_vector(rows[p], rows[p + half], high_mask)
            rows = new
            half //= 2
        for q in range(lanes):
            builder.store(rows[q], row_pointer(dst_arr, dst_stride, c_, q, r_), align=itemsize)
        return context.get_dummy_value()
    return types.void(src, dst, r, c), codegen
