"""The C allocator's settings for a long-running metering process (glibc only).

glibc serves a request above ``M_MMAP_THRESHOLD`` with its own mmap, returned to the system
when freed. Out of the box that threshold starts at 128 KiB and rises with every larger block
freed, up to 32 MiB: after the first big answer buffer is freed, the next ones come from the heap,
where the small objects that outlive them (amounts, namespace names) keep the heap from
shrinking. A window at 100,000 namespaces then ends about 15 MiB larger than it needs to be.
Fixing the threshold keeps every big, short-lived buffer (answer chunks, per-series arrays,
sort orders) outside the heap. Measured in docs/benchmarks.md.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_MMAP_THRESHOLD = -3  # glibc's malloc.h
MMAP_THRESHOLD = 128 * 1024


def fix_mmap_threshold() -> bool:
    """Pin glibc's mmap threshold unless the environment already sets one; True if applied.
    Elsewhere (musl, macOS) nothing happens."""
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False  # an operator's own setting wins
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        gnu_libc_version = libc.gnu_get_libc_version  # present in glibc only
    except (OSError, AttributeError):
        return False
    del gnu_libc_version
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
