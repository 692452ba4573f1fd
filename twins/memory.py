"""Resident memory that follows the data: large freed blocks go back to the system.

glibc's ``malloc`` serves a large request by ``mmap`` (returned to the system when freed)
only above its mmap threshold, and raises that threshold, up to 32 MiB on 64-bit systems,
each time such a block is freed. After the first few frees, blocks of a few MiB (a
decompressed store chunk, a batch, a chunk's slice) come from the heap and the per-thread
arenas instead, which keep them after ``free``: measured on this project's 200 x 200-cell
drought cube, a DDP rank reading its 98 MB shard chunk by chunk (dask's threads) grew by
216 MB, and by 102 MB with the threshold fixed at 1 MiB. Fixing the threshold (what the
``MALLOC_MMAP_THRESHOLD_`` environment variable does at start-up; dask's nanny sets
``MALLOC_TRIM_THRESHOLD_`` on its workers for the same reason) turns the adjustment off.

A process calls it where it starts such work (the drought task once its cube store is
there, before reading it): every later allocation of a MiB or more then costs a fresh
mapping, a few microseconds per page, which a training step's tensors of that size pay too,
and which array work that makes and frees large temporaries at a high rate pays heavily
(the drought cube's threaded build ran 1.36x slower with it): not before such work.
"""

from __future__ import annotations

import ctypes
import logging
import sys

__all__ = ["LARGE_BYTES", "return_large_frees", "trim_freed"]

log = logging.getLogger(__name__)

#: ``mallopt`` parameter number of the mmap threshold (glibc's ``M_MMAP_THRESHOLD``).
M_MMAP_THRESHOLD = -3

#: Allocations of at least this many bytes are mmapped (glibc's default start value is
#: 128 KiB; 1 MiB keeps small and medium allocations on the faster heap).
LARGE_BYTES = 1 << 20


def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc's (Linux), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:  # (by name: ctypes.util.find_library would fork the process to run ldconfig)
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def trim_freed() -> bool:
    """Return the free pages of every glibc arena to the system now (``malloc_trim(0)``).

    For a pass that allocates and frees large blocks from several threads (dask's threaded
    scheduler reading a record chunk by chunk), run at full speed without
    :func:`return_large_frees`: the freed blocks stay in the threads' arenas until this
    call. Measured on the 6-year record of ``benchmarks/drought_outofcore_memory.py``,
    gating it left the process 264 MB larger, 3 MB after the call.

    Returns:
        True where called (Linux with glibc); False elsewhere, where nothing changes.
    """
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim.argtypes = [ctypes.c_size_t]
    libc.malloc_trim.restype = ctypes.c_int
    libc.malloc_trim(0)
    return True


def return_large_frees(threshold: int = LARGE_BYTES) -> bool:
    """Serve allocations of at least ``threshold`` bytes by ``mmap`` from now on, so that
    freeing one returns its memory to the system at once (process-wide, idempotent).

    Args:
        threshold: Size from which allocations are mmapped [bytes].

    Returns:
        True where applied (Linux with glibc); False elsewhere, where nothing changes.
    """
    libc = _glibc()
    if libc is None:  # not Linux, or not glibc (e.g. musl)
        return False
    mallopt = libc.mallopt
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    done = bool(mallopt(M_MMAP_THRESHOLD, int(threshold)))
    log.debug("malloc: blocks of %d bytes and more mmapped: %s", threshold, done)
    return done
