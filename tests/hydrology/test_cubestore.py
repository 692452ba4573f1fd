"""The drought cube as a cell-chunked Zarr store: layout, grid, the task's build-once store,
a SIGKILL during the real build, and a 4-trial tune study that builds it once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from hydrology.cubecache import cube_store
from hydrology.cubestore import (
    cube_to_dataset,
    dataset_to_cube,
    open_cube,
    tile_order,
    to_grid,
    write_cube,
)
from hydrology.dataset import DEFAULT_SPLITS, DroughtCube, build_cube
from hydrology.synthetic import generate, write_netcdf
from twins.compute.buildonce import Product, is_built
from twins.compute.config import ComputeConfig
from twins.config import load_config
from twins.errors import ConfigError, DataError
from twins.task import build_task
from twins.train.run import train_process
from twins.tune.space import load_study
from twins.tune.study import run_study

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "hydrology" / "configs" / "tiny.yaml"
SPACE = ROOT / "twins" / "tune" / "spaces" / "drought.yaml"
ARRAYS = ("dynamic", "static", "baseline", "target", "obs", "pr")


@pytest.fixture(scope="module")
def tiny() -> xr.Dataset:
    return generate("tiny")


@pytest.fixture(scope="module")
def cube(tiny: xr.Dataset) -> DroughtCube:
    return build_cube(tiny, DEFAULT_SPLITS["tiny"])


def assert_same_cube(a: DroughtCube, b: DroughtCube) -> None:
    """Same cells (any order), every array equal bit for bit cell by cell, same meta (but
    the data's label)."""
    ia, ib = np.argsort(a.cells), np.argsort(b.cells)
    assert np.array_equal(a.cells[ia], b.cells[ib])
    for name in ARRAYS:
        assert np.array_equal(getattr(a, name)[ia], getattr(b, name)[ib], equal_nan=True), name
    assert np.array_equal(a.drought_share, b.drought_share)
    assert np.array_equal(a.scaler.mean[..., ia], b.scaler.mean[..., ib], equal_nan=True)
    assert np.array_equal(a.scaler.std[..., ia], b.scaler.std[..., ib])
    assert (a.scaler.z_mean, a.scaler.z_std, a.scaler.variables) == (
        b.scaler.z_mean,
        b.scaler.z_std,
        b.scaler.variables,
    )
    for t, p in a.spi_params.items():
        assert np.array_equal(
            p["gamma"][..., ia], b.spi_params[t]["gamma"][..., ib], equal_nan=True
        )
        assert np.array_equal(p["p0"][..., ia], b.spi_params[t]["p0"][..., ib], equal_nan=True)
    assert {k: v for k, v in a.meta.items() if k != "source"} == {
        k: v for k, v in b.meta.items() if k != "source"
    }
    assert a.times.equals(b.times)


def test_store_round_trip_in_tile_order_and_its_grid(cube: DroughtCube, tmp_path: Path) -> None:
    write_cube(cube_to_dataset(cube, (5, 7)), tmp_path / "c.zarr", 17)
    ds = open_cube(tmp_path / "c.zarr")
    assert ds["dynamic"].chunks[0] == (17,) * 6 + (6,)  # 108 cells, lazily chunked by cell
    assert ds["dynamic"].dims == ("cell", "time", "feature")
    assert list(ds["output"].values) == cube.outputs
    back = dataset_to_cube(ds)
    assert np.array_equal(back.cells, cube.cells[tile_order(cube.cells, cube.shape, (5, 7))])
    assert_same_cube(cube, back)
    # to_grid replaces DroughtCube.grid: the whole grid, NaN over sea (lazily until loaded)
    grid = to_grid(ds["pr"], ds).transpose("time", "lat", "lon")
    assert np.array_equal(grid.values, cube.grid(cube.pr.T), equal_nan=True)
    # unstack alone gives the served cells' own rows and columns, same values
    served = ds["pr"].unstack("cell")
    rows = np.unique(cube.cells // cube.lon.size)
    assert served.sizes["lat"] == rows.size
    np.testing.assert_array_equal(served["lat"].values, cube.lat[rows])


def test_tile_order_is_blocks_then_rows() -> None:
    cells = np.arange(4 * 5)  # a 4 x 5 grid, all served; 2 x 3 blocks
    order = tile_order(cells, (4, 5), (2, 3))
    assert cells[order].tolist() == [
        0,
        1,
        2,
        5,
        6,
        7,
        3,
        4,
        8,
        9,
        10,
        11,
        12,
        15,
        16,
        17,
        13,
        14,
        18,
        19,
    ]


def test_a_store_of_another_kind_is_refused(tmp_path: Path) -> None:
    xr.Dataset({"x": ("cell", np.arange(3.0))}).to_zarr(tmp_path / "x.zarr", consolidated=False)
    with pytest.raises(
        DataError, match="attribute 'format' is None, expected 'twins.drought-cube/1'"
    ):
        open_cube(tmp_path / "x.zarr")
    with pytest.raises(DataError, match="not a readable cube store"):
        open_cube(tmp_path / "missing.zarr")


@pytest.mark.slow
def test_the_task_builds_the_store_once_and_trains_from_it(
    cube: DroughtCube, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """store: zarr on the tiny preset: the cube equals build_cube's; a second run in the same
    workdir opens it (no second build); training goes through the core."""
    base = [f"workdir={tmp_path}", "tracking.enabled=false", "task.params.store=zarr"]
    first = build_task(load_config(CONFIG, [*base, "name=a"]))
    assert first.store_kind() == "zarr"
    assert_same_cube(cube, first.cube())
    assert first.cube().meta["source"] == "synthetic preset 'tiny'"
    stores = [p for p in (tmp_path / "cubes").iterdir() if not p.name.endswith((".lock", ".json"))]
    assert len(stores) == 1 and is_built(tmp_path / "cubes", stores[0].name)
    marker = json.loads((tmp_path / "cubes" / f"{stores[0].name}.done.json").read_text())
    assert marker["info"]["dask"] == "threads"  # a small input: no cluster started
    caplog.clear()
    second = build_task(load_config(CONFIG, [*base, "name=b"]))
    with caplog.at_level("INFO", logger="twins.compute.buildonce"):
        assert_same_cube(cube, second.cube())
    assert not [r for r in caplog.records if r.getMessage().startswith("building")]
    assert (
        second.fingerprint()
        == build_task(load_config(CONFIG, [f"workdir={tmp_path}"])).fingerprint()
    )
    short = ["train.epochs=1", "train.max_steps_per_epoch=3", "train.val_every=2"]
    summary = train_process(load_config(CONFIG, [*base, "name=c", *short]), progress=False)
    assert np.isfinite(summary["test_loss"])
    assert not (tmp_path / "c" / "data").exists()  # no npz beside the shared store
    # From the store, training reads the training months of its cells and validates and
    # tests chunk by chunk: the same samples in the same batches as the cube in memory,
    # hence the same losses bit for bit. The skill table's forecasts are made chunk by chunk
    # (another batch size in the matrix products: test_sharding.CHUNK_ATOL bounds the
    # forecasts; RMSE is 1-Lipschitz in them and the medians too).
    npz = train_process(
        load_config(CONFIG, [*base, "name=d", "task.params.store=npz", *short]),
        progress=False,
    )
    assert summary["test_loss"] == npz["test_loss"]
    assert summary["best_val_loss"] == npz["best_val_loss"]
    for key, value in npz["test_metrics"].items():
        if key.endswith("_rmse"):
            assert abs(summary["test_metrics"][key] - value) <= 1e-3, key


def test_files_are_read_lazily_gated_and_give_the_in_memory_cube(
    tiny: xr.Dataset, tmp_path: Path
) -> None:
    """The training file, opened lazily in blocks and gated chunk by chunk, gives the cube
    the in-memory path gives; a value outside the gates is the same one-line refusal, and
    no store is published."""
    # storage chunks of 6 x 6 cells by a year; the statics stored contiguously
    statics = {"contiguous": True, "chunksizes": None, "zlib": False, "shuffle": False}
    path = write_netcdf(
        tiny.drop_vars(["drought_forcing", "drought_mask"]),
        tmp_path / "t.nc",
        chunk_space=6,
        encoding={"lsm": statics, "z": statics},
    )
    base = [f"workdir={tmp_path}", "tracking.enabled=false", f"task.params.path={path}"]
    npz = build_task(load_config(CONFIG, [*base, "name=a", "task.params.store=npz"])).cube()
    lazy = build_task(
        load_config(CONFIG, [*base, "name=b", "task.params.store=zarr", "task.params.block_mb=1"])
    )
    assert_same_cube(npz, lazy.cube())
    assert npz.meta["source"] == lazy.cube().meta["source"] == str(path)
    marker = next((tmp_path / "cubes").glob("*.done.json"))
    info = json.loads(marker.read_text())["info"]
    # A year of a cell: 366 days x 5 variables x 4 bytes = 7320 bytes; 1 MiB of them is
    # 143 cells, less than the 12 x 12 grid: the largest block of whole 6 x 6 storage
    # chunks within it is 6 x 12, and 2**20 // (7320 x 72) = 1 year of it is read at once
    assert info["read_tile"] == [6, 12] and info["read_years"] == 1
    bad = tiny.drop_vars(["drought_forcing", "drought_mask"]).copy()
    tp = bad["tp"].values.copy()
    tp[5, bad["lsm"].values > 0.5] = -0.005  # -5 mm/d over land on one day
    bad["tp"] = bad["tp"].copy(data=tp)
    bad_path = write_netcdf(bad, tmp_path / "bad.nc")
    task = build_task(
        load_config(
            CONFIG,
            [
                *base,
                "name=c",
                f"task.params.path={bad_path}",
                "task.params.store=zarr",
                f"task.params.cache_dir={tmp_path / 'other'}",
            ],
        )
    )
    with pytest.raises(DataError) as info:
        task.cube()
    assert str(info.value).startswith(f"{bad_path}: variable 'tp' has the value -5 mm/day")
    assert not list((tmp_path / "other").glob("cube-*.done.json"))


_KILL_SCRIPT = """
import sys
from hydrology.cubecache import cube_store
from hydrology.dataset import DEFAULT_SPLITS
from hydrology.synthetic import generate, write_netcdf
from twins.compute.config import ComputeConfig
kwargs = {"splits": DEFAULT_SPLITS["tiny"], "cells_per_chunk": 9, "tile": (1, 12)}
cube_store(sys.argv[1], "cube-k", lambda: generate("tiny"), kwargs,
           ComputeConfig(mode="threads", workers=1))
"""


@pytest.mark.slow
def test_sigkill_during_the_real_build_leaves_no_cube_or_a_whole_one(
    cube: DroughtCube, tmp_path: Path
) -> None:
    """The build is killed once the store exists in its temporary directory, in the middle
    of fitting twelve one-row blocks on one thread: nothing looks complete; the next call
    cleans up and builds a store equal to build_cube's."""
    root = tmp_path / "cubes"
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    proc = subprocess.Popen([sys.executable, "-c", _KILL_SCRIPT, str(root)], env=env)
    deadline = time.monotonic() + 120
    try:
        # the store's metadata is written when its second phase starts computing
        while not list(root.glob(".cube-k.tmp-*/zarr.json")):
            assert proc.poll() is None, "the build ended before it could be killed"
            assert time.monotonic() < deadline, "the build did not reach its second phase"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    killed_mid_build = not is_built(root, "cube-k")
    if not killed_mid_build:  # the kill came after the publish: the cube is whole
        assert_same_cube(cube, dataset_to_cube(open_cube(root / "cube-k")))
    else:
        assert not (root / "cube-k").exists() and not (root / "cube-k.done.json").exists()
        assert list(root.glob(".cube-k.tmp-*"))  # what the killed build left behind
    product = cube_store(
        root,
        "cube-k",
        lambda: generate("tiny"),
        {"splits": DEFAULT_SPLITS["tiny"], "cells_per_chunk": 9, "tile": (1, 12)},
        ComputeConfig(mode="threads"),
    )
    assert_same_cube(cube, dataset_to_cube(open_cube(product.path)))
    assert not list(root.glob(".cube-k.tmp-*"))


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    import ray  # (only the Ray tests start Ray)

    os.environ.setdefault("TUNE_FUNCTION_THREAD_TIMEOUT_S", "30")
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        logging_level="ERROR",
        _temp_dir=str(tmp_path_factory.mktemp("ray")),
    )
    yield
    ray.shutdown()


@pytest.mark.ray
@pytest.mark.slow
def test_a_four_trial_tune_study_builds_the_store_once(
    ray_cluster: None, cube: DroughtCube, tmp_path: Path
) -> None:
    """Two trials at a time race for the store of the same data and configuration: one
    builds, the other waits and opens it, the next two find it built."""
    cfg, tune_cfg = load_study(
        SPACE,
        [
            f"workdir={tmp_path}",
            "tracking.enabled=false",
            "task.params.store=zarr",
            "train.epochs=1",
            "train.max_steps_per_epoch=3",
            "tune.num_samples=4",
        ],
    )
    result = run_study(cfg, tune_cfg)
    assert result.trials == 4 and result.errors == 0
    trials = tmp_path / cfg.name / "trials"
    root = trials / "cubes"
    names = sorted(p.name for p in root.iterdir())
    store = [n for n in names if n.startswith("cube-") and "." not in n]
    assert len(store) == 1, names
    assert names == sorted([store[0], f"{store[0]}.done.json", f"{store[0]}.lock"])
    assert_same_cube(cube, dataset_to_cube(open_cube(root / store[0])))
    assert not list(trials.glob("*/data/cube-*.npz"))  # no trial built a cube of its own


def test_a_build_outside_the_main_thread_runs_threaded_or_is_refused(
    cube: DroughtCube, tmp_path: Path
) -> None:
    """A Ray Tune trial builds in a side thread, where dask_jobqueue's import (a signal
    handler) fails: a large input under ``compute.mode: local`` is built on the threaded
    scheduler; ``slurm`` is refused in one line before anything is built."""
    kwargs = {"splits": DEFAULT_SPLITS["tiny"], "cells_per_chunk": 9}
    out: dict[str, object] = {}

    def build(key: str, compute: ComputeConfig) -> None:
        try:
            out[key] = cube_store(tmp_path, key, lambda: generate("tiny"), kwargs, compute)
        except ConfigError as exc:
            out[key] = exc

    for key, mode in (("cube-local", "local"), ("cube-slurm", "slurm")):
        side = threading.Thread(
            target=build, args=(key, ComputeConfig(mode=mode, min_cluster_bytes=0))
        )
        side.start()
        side.join()
    local = out["cube-local"]
    assert isinstance(local, Product) and local.record["info"]["dask"] == "threads"
    assert_same_cube(cube, dataset_to_cube(open_cube(local.path)))
    refused = out["cube-slurm"]
    assert isinstance(refused, ConfigError)
    assert str(refused).startswith("compute.mode 'slurm': the cube's dask cluster cannot")
    assert not (tmp_path / "cube-slurm").exists() and not is_built(tmp_path, "cube-slurm")
