"""Flush-to-zero for float32 steps: no float32 kernel computes on a subnormal number.

On many x86 cores (Intel's, by ~100 cycles per operand) every operation with a subnormal
input or result takes a slow microcode path, and a vanishing forward signal passes through
float32's subnormal range (below 2**-126) layer after layer. ``flush_subnormals`` sets two
bits of the thread's MXCSR register for the duration of a step, as
``torch.set_flush_denormal(True)`` does for the whole process: FTZ (a result below 2**-126
becomes 0) and DAZ (a subnormal input counts as 0). The old value is written back on
return, exception included, so NumPy code outside the step computes as before; MXCSR
belongs to the thread, so other threads (the UI's) are never affected.

Only float32 runs flush: float64 runs keep exact IEEE arithmetic everywhere. On machines
that are not x86 the context does nothing (their float32 kernels keep IEEE subnormals).
"""

from __future__ import annotations

import platform
from collections.abc import Iterator
from contextlib import contextmanager

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from tui_grad.engine import cacheload

cacheload.install()  # before any kernel loads from numba's cache (see cacheload.py)

IS_X86 = platform.machine().lower() in {"x86_64", "amd64", "i386", "i686", "x86"}
FTZ = 1 << 15  # flush-to-zero: results below float32's / float64's normal range become 0
DAZ = 1 << 6  # denormals-are-zero: subnormal operands read as 0
_I32 = ir.IntType(32)
_I8P = ir.IntType(8).as_pointer()


def _mxcsr_call(builder, name, slot):
    function = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(ir.VoidType(), [_I8P]), f"llvm.x86.sse.{name}")
    builder.call(function, [builder.bitcast(slot, _I8P)])


@intrinsic
def _read_mxcsr(typingctx):
    """The thread's MXCSR (x86's SSE control and status register) as an int64."""
    def codegen(context, builder, signature, args):
        slot = cgutils.alloca_once(builder, _I32)
        _mxcsr_call(builder, "stmxcsr", slot)
        return builder.zext(builder.load(slot), ir.IntType(64))
    return types.int64(), codegen


@intrinsic
def _write_mxcsr(typingctx, value):
    """Load the low 32 bits of ``value`` into MXCSR. LLVM treats the call as touching
    memory, so no load or store of the arrays moves across it."""
    def codegen(context, builder, signature, args):
        slot = cgutils.alloca_once(builder, _I32)
        builder.store(builder.trunc(args[0], _I32), slot)
        _mxcsr_call(builder, "ldmxcsr", slot)
        return context.get_dummy_value()
    return types.void(types.int64), codegen


@njit(cache=True, nogil=True)
def mxcsr() -> int:
    """The calling thread's MXCSR (x86 only)."""
    return _read_mxcsr()


@njit(cache=True, nogil=True)
def set_mxcsr(value: int) -> int:
    """Write ``value`` into the calling thread's MXCSR; return the value it replaced."""
    old = _read_mxcsr()
    _write_mxcsr(value)
    return old


@contextmanager
def flush_subnormals(enabled: bool) -> Iterator[None]:
    """Within the block, this thread's float arithmetic flushes subnormal inputs and results
    to 0 (when ``enabled`` and on x86); MXCSR is restored on leaving it, however it is left."""
    if not (enabled and IS_X86):
        yield
        return
    saved = mxcsr()
    set_mxcsr(saved | FTZ | DAZ)
    try:
        yield
    finally:
        set_mxcsr(saved)
