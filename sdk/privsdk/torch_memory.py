"""Ask torch's CPU allocator for transparent huge pages before torch is imported.

Why: torch allocates every CPU tensor of 2 MB or more with a fresh ``mmap`` and frees it with ``munmap``
(glibc's threshold tops out at 32 MB, and one batch of the evaluation's CNN attacker holds 33 MB of
activations), so each training step faults its buffers back in 4 KB at a time. On the 2-core CPU box that
was about half of the CPU time of ``privsdk eval`` and ``privsdk train`` (system time as large as user
time). torch's ``THP_MEM_ALLOC_ENABLE=1`` aligns such tensors to 2 MB and ``madvise``\\ s them as huge
pages: one fault per 2 MB instead of 512. ``privsdk bench attacker`` measures it on the machine at hand
(``bench/RESULTS.md``). torch reads the variable once, at its first CPU allocation, so it must be set
before torch is imported; this module imports nothing heavy. A value the user has set is left as it is.

Example::

    import os
    from privsdk.torch_memory import prefer_huge_pages
    prefer_huge_pages()          # before `import torch`
    assert os.environ["THP_MEM_ALLOC_ENABLE"] in ("0", "1")
"""
from __future__ import annotations

import os
import sys
from typing import MutableMapping, Optional

#: torch's environment switch (c10's CPU allocator) for 2 MB-aligned, madvise(MADV_HUGEPAGE) tensors
HUGE_PAGES_VARIABLE = "THP_MEM_ALLOC_ENABLE"


def prefer_huge_pages(environ: Optional[MutableMapping[str, str]] = None) -> bool:
    """Set ``THP_MEM_ALLOC_ENABLE=1`` in ``environ`` (default: this process's) unless it is set already.

    Returns whether huge pages will be used by this process's torch: the variable is ``1`` and torch is
    not imported yet (torch reads it once, at its first CPU allocation).
    """
    env = os.environ if environ is None else environ
    env.setdefault(HUGE_PAGES_VARIABLE, "1")
    return env[HUGE_PAGES_VARIABLE] == "1" and "torch" not in sys.modules
