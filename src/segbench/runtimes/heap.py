"""A steady process heap for CPU timing: freed tensors stay in the heap, not returned to the OS.

glibc's malloc serves large blocks with fresh ``mmap`` pages (threshold 128 KiB,
raised adaptively up to 32 MiB) and trims the top of the heap back to the OS, so
eager PyTorch on the CPU, which frees and re-allocates every activation on each
forward pass, pays a page fault for every page of every activation on every
call. ONNX Runtime (its arena) and PyTorch on CUDA (its caching allocator) keep
their memory, and tuned CPU deployments do the same with jemalloc or tcmalloc
(PyTorch's CPU performance guide). Timing eager PyTorch on the default heap
against them measures the allocator, not the network: on the development VM
(2 cores, torch 2.14.1, batch 1, 360x480) eager U-Net / MobileNetV2 takes about
100 ms on glibc's default heap and 65 ms on a steady one (``bench/heap.py``).

:func:`steady_heap` raises glibc's thresholds once per process before CPU timing;
``SEGBENCH_HEAP=default`` leaves the heap as it is (the figures then say so).
"""

import ctypes
import logging
import os
import platform

log = logging.getLogger(__name__)

#: glibc ``mallopt`` parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: Blocks up to this size come from the heap; free memory above it is kept, not trimmed.
KEEP_BYTES = 1 << 30

_state: str | None = None


def steady_heap() -> str:
    """Keeps freed memory in this process's heap (once per process); says what the heap is.

    Returns:
        ``steady (glibc mallopt ...)``, ``<allocator> (LD_PRELOAD)`` when jemalloc or
        tcmalloc is preloaded (already steady), ``default (SEGBENCH_HEAP=default)``,
        or ``default (<libc>: not glibc)``.
    """
    global _state
    if _state is None:
        _state = _configure()
        log.debug("heap for CPU timing: %s", _state)
    return _state


def _configure() -> str:
    preload = os.environ.get("LD_PRELOAD", "")
    for allocator in ("jemalloc", "tcmalloc", "mimalloc"):
        if allocator in preload:
            return f"{allocator} (LD_PRELOAD)"
    if os.environ.get("SEGBENCH_HEAP", "steady") == "default":
        return "default (SEGBENCH_HEAP=default)"
    libc, _ = platform.libc_ver()
    if libc != "glibc":
        return f"default ({libc or 'unknown libc'}: not glibc)"
    mallopt = ctypes.CDLL(None).mallopt
    # The mmap threshold first: setting either one fixes both (no adaptive thresholds).
    mmap = KEEP_BYTES if mallopt(_M_MMAP_THRESHOLD, KEEP_BYTES) else None
    if mmap is None and mallopt(_M_MMAP_THRESHOLD, 32 << 20):  # older glibc's ceiling
        mmap = 32 << 20
    if mmap is None or not mallopt(_M_TRIM_THRESHOLD, KEEP_BYTES):
        return "default (glibc refused mallopt)"
    return f"steady (glibc mallopt: mmap threshold {mmap >> 20} MiB, trim threshold 1 GiB)"
