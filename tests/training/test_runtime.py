import os
import platform
import resource
import sys

import pytest
import torch

from polymodal.training.runtime import available_cores, keep_freed_memory, set_threads

glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


def _faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


@pytest.mark.skipif(not glibc, reason="glibc's mallopt")
def test_freed_memory_is_reused_without_page_faults():
    assert keep_freed_memory() and keep_freed_memory()  # applies once, then reports it
    for _ in range(2):  # warm: the heap grows to hold one 16 MiB tensor
        torch.ones(4 << 20).sum()
    rounds = []
    for _ in range(3):  # best of three: another thread of the process may fault pages in meanwhile
        before = _faults()
        for _ in range(5):  # each allocation reuses the freed block: no fresh pages (4,096 faults each otherwise)
            torch.ones(4 << 20).sum()
        rounds.append(_faults() - before)
    assert min(rounds) < 1000, rounds


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="CPU affinity")
def test_default_threads_follow_the_cores_the_process_may_use(monkeypatch):
    """`training.threads` unset: torch gets one thread per core in the process's CPU affinity (taskset, a cpuset,
    a pinned test worker), not one per core of the machine."""
    before = torch.get_num_threads()
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    try:
        assert available_cores() == 1
        set_threads(None)
        assert torch.get_num_threads() == 1
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2})
        set_threads(None)
        assert torch.get_num_threads() == 3
        set_threads(2)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
