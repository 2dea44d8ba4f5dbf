"""What the benchmarks ran on: CPU vendor, model, family/model numbers and vector width.

Numbers from one machine do not transfer to another of the same kind: Intel cores pay
about 100 cycles for an operation on a subnormal number, recent AMD cores almost nothing,
so every benchmark prints this line first and compares against references measured in
the same run.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            break
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def vector_width(flags: set[str]) -> str:
    """The widest SIMD registers the flags announce, with the AVX-512 subsets present."""
    avx512 = sorted(flag for flag in flags if flag.startswith("avx512"))
    if "avx512f" in flags:
        return "512-bit (" + " ".join(avx512) + ")"
    if "avx2" in flags or "avx" in flags:
        return "256-bit (" + " ".join(f for f in ("avx", "avx2", "fma") if f in flags) + ")"
    if "sse2" in flags:
        return "128-bit (sse2)"
    return "unknown"


def describe() -> str:
    """One line naming the CPU, e.g. 'AuthenticAMD AMD EPYC (family 25 model 1), 256-bit
    (avx avx2 fma), 2 logical CPUs'."""
    info = _cpuinfo()
    if not info:
        return f"{platform.machine()} {platform.processor() or 'CPU'} (no /proc/cpuinfo)"
    flags = set(info.get("flags", "").split())
    return (f"{info.get('vendor_id', '?')} {info.get('model name', '?')} "
            f"(family {info.get('cpu family', '?')} model {info.get('model', '?')}), "
            f"{vector_width(flags)}, {os.cpu_count()} logical CPUs")


def subnormal_penalty(repeats: int = 15) -> tuple[float, float]:
    """(time of float32 multiplies on subnormal operands / on normal ones, the same ratio
    inside ``fpenv.flush_subnormals``): what this CPU pays per subnormal operation, and
    what is left of it when a step flushes. Interleaved, medians of ``repeats``."""
    import statistics
    import time

    import numpy as np

    from tui_grad.engine.fpenv import flush_subnormals

    size = 1 << 18
    normal = np.full(size, 1.5, np.float32)
    subnormal = np.full(size, 2.0 ** -130, np.float32)  # x 0.75 stays subnormal
    factor, out = np.float32(0.75), np.empty(size, np.float32)

    def timed(values: np.ndarray, flush: bool) -> float:
        with flush_subnormals(flush):
            start = time.perf_counter()
            for _ in range(20):
                np.multiply(values, factor, out=out)
            return time.perf_counter() - start

    cases = [(values, flush) for flush in (False, True) for values in (normal, subnormal)]
    samples: list[list[float]] = [[] for _ in cases]
    for _ in range(repeats):
        for times, (values, flush) in zip(samples, cases, strict=True):
            times.append(timed(values, flush))
    normal_ieee, subnormal_ieee, normal_flushed, subnormal_flushed = map(statistics.median, samples)
    return subnormal_ieee / normal_ieee, subnormal_flushed / normal_flushed
