"""Freed memory goes back to the system (twins.memory), measured in a fresh process."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# A process that, from two threads, reads 4-7.5 MiB "chunks" (allocated, copied into a result
# made once, freed) 100 times each, as a rank reading its shard does; prints its RSS
# growth over the result's size in MB.
SCRIPT = """
import sys, threading, numpy as np, psutil
from twins.memory import return_large_frees
applied = return_large_frees() if sys.argv[1] == "on" else None
me = psutil.Process()
result = np.ones((200, 2**20 // 8), np.float64)  # 200 x 1 MiB, every page touched
start = me.memory_info().rss
kept = []
def read(part):
    for i in range(100):
        n = 2**19 + 2**16 * (i % 7)  # 4-7.5 MiB, freed each time
        chunk = np.random.default_rng(i).random(n)
        kept.append(np.ones(1000))  # small live objects between the frees (index, metadata)
        result[part * 100 + i] = chunk[: result.shape[1]]
        del chunk
threads = [threading.Thread(target=read, args=(k,)) for k in (0, 1)]
[t.start() for t in threads]; [t.join() for t in threads]
print(applied, (me.memory_info().rss - start) / 2**20)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_large_frees_are_returned_so_memory_follows_the_data() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, "on"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    applied, growth = proc.stdout.split()
    if applied != "True":
        pytest.skip("not glibc: mallopt is not there")
    # The result's pages are touched beforehand, so only what is allocated afterwards grows
    # RSS: with the chunks mmapped, at most the two threads' live chunks (2 x 7.5 MiB), the
    # 200 small arrays kept (200 x 8000 B = 1.6 MiB) and 2 MiB of interpreter slack: 18.6
    # MiB. Freed chunks kept in the arenas add to that (28 MiB measured without the call).
    assert float(growth) <= 18.6, growth


# Two threads allocate and free 50 blocks of 4-7.5 MiB each with no mmap threshold fixed
# (glibc's default moves it up to 32 MiB after the first frees: later blocks come from the
# threads' arenas), then the RSS growth is printed before and after trim_freed [MiB].
TRIM_SCRIPT = """
import threading, numpy as np, psutil
from twins.memory import trim_freed
me = psutil.Process()
start = me.memory_info().rss
np.ones(2**20).sum()  # an mmapped 8 MiB block, freed: the threshold moves above the blocks
def work(k):
    live = [np.ones(2**19 + 2**16 * (i % 7)) for i in range(50)]  # all live at once
    del live
threads = [threading.Thread(target=work, args=(k,)) for k in (0, 1)]
[t.start() for t in threads]; [t.join() for t in threads]
before = (me.memory_info().rss - start) / 2**20
applied = trim_freed()
print(applied, before, (me.memory_info().rss - start) / 2**20)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_trim_returns_what_threads_freed_into_their_arenas() -> None:
    # glibc's tunables from the environment left out: dask's LocalCluster sets
    # MALLOC_TRIM_THRESHOLD_ in its parent's environment (for its workers) and keeps it
    # there, and with it the freed heap tops are trimmed without the call.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    proc = subprocess.run(
        [sys.executable, "-c", TRIM_SCRIPT], capture_output=True, text=True, timeout=120, env=env
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    applied, before, after = proc.stdout.split()
    if applied != "True":
        pytest.skip("not glibc: malloc_trim is not there")
    # Each thread held 50 blocks of 4-7.5 MiB (about 280 MiB) at once, from its arena
    # (the threshold above them), and freed them: the arenas keep most of the 560 MiB (over
    # 100 MiB: the top of a heap may shrink by itself). The trim returns it: what stays is
    # the interpreter's own slack, bounded by one block per thread (2 x 7.5 MiB) and 2 MiB.
    assert float(before) > 100.0, (before, after)  # (what the arenas kept: the case tested)
    assert float(after) <= 17.0, (before, after)
