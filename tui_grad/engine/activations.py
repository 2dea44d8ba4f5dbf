"""Compiled activation functions and their derivatives, applied to whole (B, W) blocks.

Codes follow ``config.ACTIVATIONS`` order. float32 runs use ``tanh_f32``
and ``exp_f32``, approximations within a few float32 ulps that vectorise (libm's scalar tanh
and expf are ~20x and ~8x slower per element); float64 runs use the exact functions.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, types
from numba.core.registry import CPUDispatcher
from numba.extending import intrinsic, overload

from tui_grad.engine import cacheload

cacheload.install()  # before any kernel loads from numba's cache (see cacheload.py)

LINEAR, SIGMOID, TANH, RELU, LEAKY_RELU, PRELU, ELU, SELU, GELU = range(9)
SELU_SCALE = 1.0507009873554805
SELU_ALPHA = 1.6732632423543772
SATURATED_DERIVATIVE = 0.05  # a unit counts as saturated where phi'(u) is below this
_INV_SQRT2 = 0.7071067811865476
_INV_SQRT_2PI = 0.3989422804014327

KERNEL = {"cache": True, "nogil": True, "error_model": "numpy"}
# Reductions only: a sum that may be reassociated vectorises (~5x faster). The order is still
# fixed by the compiled code, so runs stay bit-reproducible; inf and NaN still propagate.
REASSOC = {**KERNEL, "fastmath": {"reassoc"}}
# for @overload helpers, compiled into (and cached with) the kernel that calls them
OVERLOAD = {key: value for key, value in KERNEL.items() if key != "cache"}
# Kernels only other kernels call: compiled without the entry points numba gives every kernel
# (a CPython wrapper that unboxes each argument, the layout and update tuples up to twelve
# arrays each, and a C one). Every kernel up the call tree links and machine-codes its
# callees' wrappers again: 11-15% of the code a cold start optimises and compiles.
INNER = {**KERNEL, "no_cpython_wrapper": True, "no_cfunc_wrapper": True}


class InnerKernel(CPUDispatcher):
    """A kernel compiled with INNER. Called from Python it raises: it has no entry point
    (numba would call a null pointer)."""

    def __call__(self, *args, **kwargs):
        function = self.py_func
        raise TypeError(f"{function.__module__}.{function.__qualname__} is called only from "
                        "other kernels: it has no entry point from Python")


def inner(function=None, /, **options):
    """``@inner`` or ``@inner(**options)``: ``@njit(**INNER, **options)``, as an InnerKernel."""
    def make(function):
        kernel = njit(**{**INNER, **options})(function)
        kernel.__class__ = InnerKernel  # (same layout: numba's dispatcher, one method more)
        return kernel

    return make if function is None else make(function)


@inner(fastmath={"reassoc"})
def reduce_add(total, value):
    """``total + value``, reassociable: a loop that sums with it vectorises.

    LLVM inlines it with its flag, so only the sum is reassociated and the caller's other
    arithmetic stays exact IEEE.
    """
    return total + value


# phi'(u) is a function of phi(u) for these: the backward pass recomputes it from the layer's
# output instead of storing it (leaky_relu's slope is never negative here)
FROM_OUTPUT = (LINEAR, SIGMOID, TANH, RELU, LEAKY_RELU, ELU)


@njit(**{**KERNEL, "fastmath": {"contract"}})
def tanh_f32(x):
    """Rational approximation of tanh for float32 (Eigen's fast tanh), within a few ulps;
    exactly x where |x| < 2**-12.

    Fused multiply-adds for the polynomials: faster and more accurate (at most 4.4 ulps
    instead of 5.5 over [-12, 12]); the input is clamped, so nothing can overflow. Where
    the exact value rounds to +-1 in float32 the result is exactly +-1; NaN stays NaN.
    """
    clamp = np.float32(7.905311107635498)
    c = min(max(x, -clamp), clamp)
    x2 = c * c
    p = np.float32(-2.76076847742355e-16)
    p = x2 * p + np.float32(2.00018790482477e-13)
    p = x2 * p + np.float32(-8.60467152213735e-11)
    p = x2 * p + np.float32(5.12229709037114e-08)
    p = x2 * p + np.float32(1.48572235717979e-05)
    p = x2 * p + np.float32(6.37261928875436e-04)
    p = x2 * p + np.float32(4.89352455891786e-03)
    p = c * p
    q = np.float32(1.19825839466702e-06)
    q = x2 * q + np.float32(1.18534705686654e-04)
    q = x2 * q + np.float32(2.26843463243900e-03)
    q = x2 * q + np.float32(4.89352518554385e-03)
    # from here on float32's correctly rounded tanh is exactly +-1 (its derivative 1 - y^2
    # exactly 0, as in float32 frameworks); the clamped rational form stops 4 ulps short
    if abs(x) >= np.float32(9.010971):
        return np.float32(1.0) if x > 0 else np.float32(-1.0)
    # below 2**-12, x itself is the correctly rounded tanh (x**3 / 3 < half an ulp); the
    # quotient's numerator c * 4.9e-3 would leave float32's normal range for |x| < 2.4e-36
    # and be flushed to 0 in a float32 step (fpenv.py), although tanh(x) = x is normal
    if abs(x) < np.float32(2.0 ** -12):
        return x
    return p / q


@intrinsic
def float_from_bits(typingctx, bits):
    """The float whose IEEE bit pattern is the integer ``bits``: float32 for a 32-bit
    integer, float64 for a 64-bit one."""
    kind = types.float32 if bits.bitwidth == 32 else types.float64

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(kind))
    return kind(bits), codegen


@njit(**{**KERNEL, "fastmath": {"contract"}})
def exp_f32(x):
    """e**x for float32 in a form that vectorises (libm's expf is a scalar call, ~2 ns),
    within 1 ulp; a result below float32's normal range is within one subnormal step of
    the exact value, overflow is inf, NaN stays NaN (all tested).

    e**x = 2**n * e**r with n = round(x / ln 2) and |r| <= ln(2) / 2 (Cody-Waite: ln 2 in
    two parts, the first exact times any n here); e**r by its Taylor series to r**7 (next
    term < 0.05 ulp); 2**n built from exponent bits as two normal factors, so subnormal
    results are rounded by the last product only.
    """
    c = min(max(x, np.float32(-104.0)), np.float32(89.0))  # e**-104 rounds to 0, e**89 is inf
    n = np.floor(c * np.float32(1.4426950408889634) + np.float32(0.5))
    r = c - n * np.float32(0.693145751953125)
    r = r - n * np.float32(1.4286067653301870e-06)
    p = np.float32(1.0 / 5040.0)
    p = r * p + np.float32(1.0 / 720.0)
    p = r * p + np.float32(1.0 / 120.0)
    p = r * p + np.float32(1.0 / 24.0)
    p = r * p + np.float32(1.0 / 6.0)
    p = r * p + np.float32(0.5)
    p = r * p + np.float32(1.0)
    p = r * p + np.float32(1.0)
    whole = np.int32(n) if x == x else np.int32(0)  # n of NaN has no integer value
    half = whole >> np.int32(1)
    # (np.int32: numba computes these in int64, and they are a float32's bits)
    low = float_from_bits(np.int32((half + np.int32(127)) << np.int32(23)))
    high = float_from_bits(np.int32((whole - half + np.int32(127)) << np.int32(23)))
    return p * low * high


@njit(**KERNEL)
def sigmoid_f32(x):
    """1 / (1 + e**-x) in float32 through exp_f32: a few ulps, vectorises."""
    one = np.float32(1.0)
    return one / (one + exp_f32(-x))


def sigmoid_of(x):
    """The logistic sigmoid in x's own dtype: sigmoid_f32 for float32, the exact form for
    float64. In compiled code the choice is made while typing (see _sigmoid_of)."""
    if isinstance(x, np.float32):
        return sigmoid_f32(x)
    return 1.0 / (1.0 + np.exp(-x))


def tanh_of(x):
    """tanh in x's own dtype: tanh_f32 for float32, np.tanh for float64 (see sigmoid_of)."""
    return tanh_f32(x) if isinstance(x, np.float32) else np.tanh(x)


# A run's dtype picks the function while the kernel is typed. (A flag tested at run time
# compiled both versions into every kernel, the dead half included: about a second of a
# cold start.)
@overload(sigmoid_of, jit_options=OVERLOAD)
def _sigmoid_of(x):
    if x == types.float32:
        return lambda x: sigmoid_f32(x)
    return lambda x: 1.0 / (1.0 + np.exp(-x))


@overload(tanh_of, jit_options=OVERLOAD)
def _tanh_of(x):
    if x == types.float32:
        return lambda x: tanh_f32(x)
    return lambda x: np.tanh(x)


@inner
def activate(code, u, a, deriv, slope):
    """Write phi(u) into ``a`` and phi'(u) into ``deriv``; all three are (B, W) and C-contiguous.
    float32 runs use the float32 approximations of the sigmoid and tanh (see sigmoid_of).

    One loop per activation so each loop is branch-free on the code and vectorises.
    """
    x_flat, a_flat, d_flat = u.ravel(), a.ravel(), deriv.ravel()
    one = x_flat.dtype.type(1.0)
    zero = x_flat.dtype.type(0.0)
    if code == LINEAR:
        for i in range(x_flat.size):
            a_flat[i] = x_flat[i]
            d_flat[i] = one
    elif code == SIGMOID:
        for i in range(x_flat.size):
            y = sigmoid_of(x_flat[i])
            a_flat[i] = y
            d_flat[i] = y * (one - y)
    elif code == TANH:
        for i in range(x_flat.size):
            y = tanh_of(x_flat[i])
            a_flat[i] = y
            d_flat[i] = one - y * y
    elif code == RELU:
        for i in range(x_flat.size):
            x = x_flat[i]
            a_flat[i] = zero if x <= zero else x  # NaN passes through, as in torch
            d_flat[i] = zero if x <= zero else one
    elif code in (LEAKY_RELU, PRELU):
        s = x_flat.dtype.type(slope)
        for i in range(x_flat.size):
            x = x_flat[i]
            a_flat[i] = s * x if x <= zero else x
            d_flat[i] = s if x <= zero else one
    elif code == ELU:
        for i in range(x_flat.size):
            x = x_flat[i]
            y = np.expm1(x if x <= zero else zero)
            a_flat[i] = y if x <= zero else x
            d_flat[i] = y + one if x <= zero else one
    elif code == SELU:
        for i in range(x_flat.size):
            x = x_flat[i]
            negative = x if x <= zero else zero
            a_flat[i] = SELU_SCALE * SELU_ALPHA * np.expm1(negative) if x <= zero else SELU_SCALE * x
            d_flat[i] = SELU_SCALE * SELU_ALPHA * np.exp(negative) if x <= zero else SELU_SCALE
    else:  # GELU, exact erf form as torch.nn.GELU()
        for i in range(x_flat.size):
            x = x_flat[i]
            cdf = 0.5 * (1.0 + math.erf(x * _INV_SQRT2))
            a_flat[i] = x * cdf
            d_flat[i] = cdf + x * _INV_SQRT_2PI * math.exp(-0.5 * x * x)


@inner
def through_activation(code, g, y, gz, slope):
    """gz = g * phi'(u) for a code in FROM_OUTPUT, with phi'(u) recomputed from the output
    y = phi(u): the same bits ``activate`` writes into ``deriv``, NaN included. In the
    arrays' own dtype: the product of two floats is correctly rounded either way.

    Returns the sum of squares of g (float64), read on the way.
    """
    g_flat, y_flat, z_flat = g.ravel(), y.ravel(), gz.ravel()
    one = y_flat.dtype.type(1.0)
    zero = y_flat.dtype.type(0.0)
    total = 0.0
    if code == LINEAR:
        for k in range(z_flat.size):
            v = g_flat[k]
            z_flat[k] = v
            total = reduce_add(total, np.float64(v) * np.float64(v))
    elif code == SIGMOID:
        for k in range(z_flat.size):
            v, out = g_flat[k], y_flat[k]
            z_flat[k] = v * (out * (one - out))
            total = reduce_add(total, np.float64(v) * np.float64(v))
    elif code == TANH:
        for k in range(z_flat.size):
            v, out = g_flat[k], y_flat[k]
            z_flat[k] = v * (one - out * out)
            total = reduce_add(total, np.float64(v) * np.float64(v))
    elif code == RELU:  # output <= 0 exactly where the input was <= 0; NaN passes as slope 1
        for k in range(z_flat.size):
            v = g_flat[k]
            z_flat[k] = v * (zero if y_flat[k] <= zero else one)
            total = reduce_add(total, np.float64(v) * np.float64(v))
    elif code == LEAKY_RELU:
        s = y_flat.dtype.type(slope)
        for k in range(z_flat.size):
            v = g_flat[k]
            z_flat[k] = v * (s if y_flat[k] <= zero else one)
            total = reduce_add(total, np.float64(v) * np.float64(v))
    else:  # ELU: phi = expm1(u) <= 0 for u <= 0, and phi' = phi + 1 there
        for k in range(z_flat.size):
            v, out = g_flat[k], y_flat[k]
            z_flat[k] = v * (out + one if out <= zero else one)
            total = reduce_add(total, np.float64(v) * np.float64(v))
    return total
