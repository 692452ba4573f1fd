"""The bounded netCDF chunk cache: in the reading process and on a dask cluster's workers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import netCDF4
import numpy as np
import pytest
from distributed import get_client

from hydrology.cubecache import build_engine, open_lazy
from hydrology.readcache import READ_CACHE_BYTES
from hydrology.synthetic import generate, write_netcdf
from twins.compute.config import ComputeConfig


@pytest.fixture
def default_cache() -> Iterator[tuple[int, int, float]]:
    """netCDF-C's cache setting before the test, restored after it (the setting is global)."""
    before = netCDF4.get_chunk_cache()
    yield before
    netCDF4.set_chunk_cache(*before)


@pytest.fixture(scope="module")
def record(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ds = generate("tiny").drop_vars(["drought_forcing", "drought_mask"])
    return write_netcdf(ds, tmp_path_factory.mktemp("rc") / "t.nc", chunk_space=6)


def _var_cache(path: str) -> int:
    """The chunk cache [bytes] ``tp`` of ``path`` gets when opened now."""
    with netCDF4.Dataset(path) as nc:
        return int(nc["tp"].get_var_chunk_cache()[0])


def test_opening_the_training_files_bounds_the_cache_of_later_opens(
    default_cache: tuple[int, int, float], record: Path
) -> None:
    netCDF4.set_chunk_cache(64 * 2**20, *default_cache[1:])
    assert _var_cache(str(record)) == 64 * 2**20  # netCDF-C's default, as shipped
    ds, *_ = open_lazy([str(record)], 2**20)
    assert _var_cache(str(record)) == READ_CACHE_BYTES
    assert netCDF4.get_chunk_cache()[1:] == default_cache[1:]  # slots, preemption kept
    assert np.isfinite(float(ds["tp"].mean())) and ds["tp"].chunks is not None


@pytest.mark.distributed
def test_a_cluster_s_workers_open_files_with_the_bounded_cache(
    default_cache: tuple[int, int, float], record: Path
) -> None:
    """``build_engine`` on a LocalCluster registers the worker plugin: a file a worker opens
    (as it does to read its blocks) gets the bounded cache, not netCDF-C's default."""
    compute = ComputeConfig(workers=1, min_cluster_bytes=0, dashboard_address=None)
    with build_engine(compute, 1, None) as mode:
        assert mode == "local"
        sizes = get_client().run(  # the client build_engine started
            _var_cache, str(record)
        )
    assert list(sizes.values()) == [READ_CACHE_BYTES]
