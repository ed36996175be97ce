"""Process settings that inference speed depends on.

glibc serves an allocation of 32 MB or more (one 256x256 feature map of 64 channels at batch 4 is 67 MB)
with a fresh mmap, and the kernel zeroes every page of it on first touch: allocating and filling such a
tensor took 5x as long as filling one already mapped. ``keep_freed_memory()`` makes freed memory stay
in the process for the next allocation; the process keeps its high-water mark, which is flat in the
video's length since every batch needs the same tensors.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_done = False


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds (1 GiB / 2 GiB) for this process; True when applied
    (False off glibc, e.g. on macOS or musl, where nothing changes)."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        _done = bool(libc.mallopt(_M_MMAP_THRESHOLD, 1 << 30)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 1 << 31))
    except (OSError, AttributeError):
        return False
    return _done
