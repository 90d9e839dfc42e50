"""Process settings for training on a CPU: torch's threads, and how glibc's allocator treats freed memory."""
from __future__ import annotations

import ctypes
import logging
import os
import platform
import sys

import torch

log = logging.getLogger("polymodal")

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (glibc's malloc.h)
KEEP_BYTES = 1 << 30  # freed memory kept in the process before any is returned to the OS
HEAP_UP_TO = 32 << 20  # allocations up to this size come from the heap, not a fresh mapping (glibc's maximum)
_kept: bool | None = None


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity: taskset, a container's cpuset), else all of them."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def set_threads(threads: int | None) -> None:
    torch.set_num_threads(threads or available_cores())


def keep_freed_memory() -> bool:
    """On Linux with glibc: serve allocations of up to 32 MiB from the heap and keep up to 1 GiB of freed memory in
    the process. Left to its defaults, glibc returns the memory of each step's large tensors to the OS and maps fresh
    pages for the next step, and every fresh page is a page fault (tens of thousands per easy-VQA epoch, 0 with this).
    Process-wide and lasting: the process keeps memory at its training peak. Returns whether it applied."""
    global _kept
    if _kept is None:
        _kept = False
        if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
            try:
                mallopt = ctypes.CDLL(None).mallopt
            except (OSError, AttributeError):
                return False
            mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
            _kept = mallopt(_M_MMAP_THRESHOLD, HEAP_UP_TO) == 1 and mallopt(_M_TRIM_THRESHOLD, KEEP_BYTES) == 1
            log.debug("malloc keeps freed memory: %s", _kept)
    return _kept


def configure_process(threads: int | None, keep_memory: bool) -> None:
    """The settings a training run makes to its process (torch threads; glibc keeping freed memory)."""
    set_threads(threads)
    if keep_memory:
        keep_freed_memory()
