"""Load numba's cached kernels without first readying its compiler (a fifth of a warm start).

Before numba loads a kernel from its cache it refreshes its typing and target contexts
(``Cache.load_overload`` calls ``target_context.refresh()``): it imports every module that
registers a typing or lowering rule (numba.cpython, numba.np, numba.typed, numba.experimental,
numba's random generators...) and installs their hundreds of templates. That is what a compile
needs, and 0.17 s of a 0.8 s load of the default scenario's kernels on the 2-core machine
(median of 6 A/B runs). A kernel loaded from the cache is machine code: what it needs of
that is numba's runtime (NRT: the allocator and reference counting its code calls, whose
symbols must exist before the code is linked), and the symbols of any module it calls into.

``install()`` makes the load of tui-grad's own kernels initialise only NRT; other code's
kernels load as numba loads them. The engine's kernels call nothing else that registers
symbols at import: they hash no strings (numba.cpython.hashing registers its hash secret
when imported; importing it takes 0.1 s). A kernel that did would fail to link on a warm
start, in every test that loads it from the cache (the suite does, in its workers). A cache
miss compiles through numba's Compiler, which refreshes both contexts itself
(``CompilerBase.__init__``), and lowering refreshes on its first unknown function
(``BaseContext.get_function``). Where numba's cache does not look as expected (another
version's internals) it does nothing.
"""

from __future__ import annotations

_installed = False


def install() -> None:
    """Make numba's cache loads skip the compiler's registries; safe to call more than once."""
    global _installed
    if _installed:
        return
    _installed = True
    try:
        from numba.core import caching
        from numba.core.runtime import rtsys
    except ImportError:
        return
    cache = caching.Cache
    original = getattr(cache, "load_overload", None)
    # numba's: refresh the context, then load (numba 0.68.1 has it so)
    if getattr(getattr(original, "__code__", None), "co_names", ()) != (
            "refresh", "_guard_against_spurious_io_errors", "_load_overload"):
        return
    if not hasattr(rtsys, "initialize"):
        return

    def load_overload(self, sig, target_context):
        if not getattr(getattr(self, "_py_func", None), "__module__", "").startswith("tui_grad."):
            return original(self, sig, target_context)
        rtsys.initialize(target_context)  # (what the refresh did that loaded code needs)
        with self._guard_against_spurious_io_errors():
            return self._load_overload(sig, target_context)
        # None returned if the `with` block swallows an exception (as numba's own)

    load_overload.__doc__ = original.__doc__
    load_overload.numba_original = original
    cache.load_overload = load_overload
