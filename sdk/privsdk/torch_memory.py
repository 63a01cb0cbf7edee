"""Keep torch's CPU memory mapped between training steps: huge pages, and freed memory kept in the heap.

Why: torch allocates CPU tensors with glibc's ``malloc``; big ones get a fresh ``mmap`` and go back with
``munmap``, and the heap's top is trimmed back to the system, so every training step faults its
activations in again 4 KB at a time (one batch of the evaluation's CNN attacker holds up to 33 MB). On the
2-core CPU box the kernel's share was as large as the arithmetic's for ``privsdk eval`` and ``privsdk
train``. Two settings, both made before torch allocates anything:

* ``THP_MEM_ALLOC_ENABLE=1``: torch's own switch (read once, at its first CPU allocation, so it must be in
  the environment before torch is imported) to ``madvise`` tensors of 2 MB or more as huge pages.
* glibc's ``mallopt``: the mmap threshold at its maximum (32 MB), no trimming of the heap and 256 MB of top
  padding, so freed activations are reused instead of unmapped and faulted in again. The process keeps
  its peak memory, which is why only the training-side commands use it, never the runtime.

``privsdk bench attacker`` measures both on the machine at hand (``bench/RESULTS.md``). A value the user
has set for ``THP_MEM_ALLOC_ENABLE`` is left as it is.

Example::

    from privsdk.torch_memory import prepare_torch_cpu_memory
    prepare_torch_cpu_memory()   # before `import torch`
    import torch
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import sys
from typing import MutableMapping, Optional

#: torch's environment switch (c10's CPU allocator) for madvise(MADV_HUGEPAGE) on tensors of 2 MB or more
HUGE_PAGES_VARIABLE = "THP_MEM_ALLOC_ENABLE"

# glibc's mallopt parameters (malloc.h) and the values used
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_MMAP_THRESHOLD = 32 << 20      # glibc's maximum on 64-bit: anything smaller comes from the heap
_TOP_PAD = 256 << 20
_TRIM_THRESHOLD = 2**31 - 1     # mallopt takes an int: 2 GB of free top, never reached here


def prefer_huge_pages(environ: Optional[MutableMapping[str, str]] = None) -> bool:
    """Set ``THP_MEM_ALLOC_ENABLE=1`` in ``environ`` (default: this process's) unless it is set already.

    Returns whether this process's torch will use huge pages: the variable is ``1`` and torch is not
    imported yet.
    """
    env = os.environ if environ is None else environ
    env.setdefault(HUGE_PAGES_VARIABLE, "1")
    return env[HUGE_PAGES_VARIABLE] == "1" and "torch" not in sys.modules


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to keep freed memory mapped (see the module docstring); False where not glibc."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return all(mallopt(param, value) == 1 for param, value in
               ((_M_MMAP_THRESHOLD, _MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, _TRIM_THRESHOLD), (_M_TOP_PAD, _TOP_PAD)))


def prepare_torch_cpu_memory() -> bool:
    """Both settings, for a process about to train with torch on the CPU; True when both took effect."""
    huge = prefer_huge_pages()
    return keep_freed_memory() and huge
