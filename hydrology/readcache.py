"""A bounded HDF5 chunk cache for the netCDF files the drought build reads.

netCDF-C gives every variable of every open netCDF-4 file a chunk cache of 64 MiB (HDF5's own
default is 1 MiB). The out-of-core build reads each storage chunk once (its blocks are
aligned with the files' chunks: :func:`hydrology.blocks.read_blocks`), so the cache only
holds memory: measured on the 6-year 200 x 200-cell record of
``benchmarks/drought_outofcore_memory.py`` (four daily variables, chunks of a year by 50 x 50
cells, 3.7 MB), gating the record left the reading process 285 MB larger with the 64 MiB
default and 20 MB larger with 1 MiB, in the same time (13.6 s against 13.8 s), and every
dask worker that reads the record holds the same. :func:`bound_read_cache` sets the cache of
the files a process opens from then on; :class:`BoundedReadCache` does it on each dask
worker of a cluster (those running now and those that join later).
"""

from __future__ import annotations

import logging

import netCDF4
from distributed import WorkerPlugin

__all__ = ["READ_CACHE_BYTES", "BoundedReadCache", "bound_read_cache"]

log = logging.getLogger(__name__)

#: Chunk cache per variable of each netCDF-4 file opened [bytes]: HDF5's own default.
READ_CACHE_BYTES = 1 << 20


def bound_read_cache(nbytes: int = READ_CACHE_BYTES) -> None:
    """Give each variable of the netCDF-4 files this process opens from now on a chunk cache
    of ``nbytes`` (process-wide; files already open keep theirs).

    Args:
        nbytes: Cache size per variable [bytes].
    """
    _, slots, preemption = netCDF4.get_chunk_cache()
    netCDF4.set_chunk_cache(int(nbytes), slots, preemption)
    log.debug("netCDF-4 chunk cache: %d bytes per variable", nbytes)


class BoundedReadCache(WorkerPlugin):
    """:func:`bound_read_cache` on every worker of a dask cluster
    (``client.register_plugin(BoundedReadCache())``).

    Args:
        nbytes: Cache size per variable [bytes].
    """

    name = "hydrology-read-cache"

    def __init__(self, nbytes: int = READ_CACHE_BYTES) -> None:
        self.nbytes = int(nbytes)

    def setup(self, worker: object) -> None:
        """Runs on the worker when it registers (or when the plugin is registered)."""
        bound_read_cache(self.nbytes)
