"""Load the BLAS numba calls without importing all of scipy.linalg (a sixth of a warm start).

numba's compiled np.dot calls BLAS through scipy.linalg.cython_blas (and LAPACK through
cython_lapack): it imports them when it first compiles or loads a kernel from its cache, and
importing them runs scipy/linalg/__init__.py first, which imports most of SciPy (array API
layers, numpy.testing, numpy.f2py): 0.2 s of a 1.0 s warm start on the 2-core machine. The two
Cython modules need none of it. ``load()`` imports them under a placeholder package that is
gone again afterwards, so a later ``import scipy.linalg`` (by anyone) runs the real package
and reuses them (``from scipy.linalg import cython_blas`` works; the attribute
``scipy.linalg.cython_blas`` is only set by that import). Where anything differs
(scipy.linalg already imported, another layout) it does nothing and numba imports them its
own way.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import types

PACKAGE = "scipy.linalg"
MODULES = ("scipy.linalg.cython_blas", "scipy.linalg.cython_lapack")


def load() -> None:
    """Import the modules numba takes BLAS and LAPACK from, without scipy.linalg's own
    imports; safe to call more than once."""
    if PACKAGE in sys.modules or all(name in sys.modules for name in MODULES):
        return
    try:
        import scipy
    except ImportError:  # numba says what is missing when a kernel needs BLAS
        return
    placeholder = types.ModuleType(PACKAGE)
    placeholder.__path__ = [os.path.join(os.path.dirname(scipy.__file__), "linalg")]
    sys.modules[PACKAGE] = placeholder
    try:
        for name in MODULES:
            with contextlib.suppress(Exception):  # numba then imports it its own way
                importlib.import_module(name)
    finally:
        if sys.modules.get(PACKAGE) is placeholder:
            del sys.modules[PACKAGE]
