"""The drought task's preprocessing projection: a probe on whole blocks of a file-backed grid
(not the whole cube), its lines in the dry-run report, the same refusals as the real build,
and ``twins preprocess``."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from hydrology.projection import plan_probe
from hydrology.synthetic import PRESETS, generate, write_netcdf
from twins.cli import main
from twins.compute.buildonce import is_built
from twins.config import load_config
from twins.dryrun import dry_run
from twins.errors import DataError
from twins.task import build_task

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "hydrology" / "configs" / "tiny.yaml"
#: 40 x 40 cells x 8 years stored in 10 x 10 chunks; with 1 MiB blocks the build reads
#: 10 x 10 blocks and fits 5 x 5 ones, so the probe (20 x 20: a rectangle of whole blocks on
#: which the build chooses the same blocks, with at least two fit blocks per thread) is a
#: quarter of the grid.
GRID = PRESETS["tiny"].model_copy(update={"nlat": 40, "nlon": 40})


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("grid") / "g40.nc"
    return write_netcdf(generate(GRID), path, chunk_space=10)


def _cfg(path: Path, work: Path, *extra: str):  # noqa: ANN202
    return load_config(
        CONFIG,
        [
            f"workdir={work}",
            "tracking.enabled=false",
            f"task.params.path={path}",
            "task.params.store=zarr",
            "task.params.block_mb=1",
            "compute.mode=threads",
            "compute.workers=2",
            *extra,
        ],
    )


def test_the_probe_is_a_rectangle_of_whole_blocks_like_the_grids() -> None:
    """The window grows until the build would choose the grid's blocks on it and it holds
    a fit block per thread; among windows of that size, the land share nearest the grid's."""
    times = pd.date_range("2000-01-01", "2007-12-31", freq="D")
    land = np.ones((40, 40), bool)
    land[:20, :20] = False  # sea in one quarter: the grid's land share is 3/4
    plan = plan_probe((40, 40), times, 25, 7, 2, land, 2, 2**20, align=(10, 10))
    assert (plan.read_tile, plan.fit_tile) == ((10, 10), (5, 5))
    rows, cols = plan.window
    assert (rows.stop - rows.start, cols.stop - cols.start) == (20, 20)
    assert rows.start % 10 == 0 and cols.start % 10 == 0  # whole read blocks
    # Windows start on every read block: the one straddling the sea has the grid's share.
    assert plan.window == (slice(10, 30), slice(10, 30)) and plan.probe_land == 300
    assert plan.land == 1200 and not plan.whole
    assert not plan.explicit
    # More threads, a larger window of whole blocks.
    wide = plan_probe((40, 40), times, 25, 7, 2, land, 20, 2**20, align=(10, 10))
    assert wide.probe_cells == 30 * 20 and wide.window[0].start % 10 == 0
    # A grid of 2 x 2 read blocks: on anything smaller the build would fit 7 x 7 blocks, so
    # the probe (a quarter) gives it the 5 x 5 ones.
    small = plan_probe((20, 20), times, 25, 7, 2, land[10:30, 10:30], 2, 2**20, (10, 10))
    assert small.explicit and small.fit_tile == (5, 5) and small.probe_cells == 100


def test_the_projection_probes_part_of_the_grid_without_building_the_cube(
    grid: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    task = build_task(_cfg(grid, tmp_path))
    with caplog.at_level(logging.WARNING, logger="hydrology.projection"):
        projection = task.preprocessing_projection()
    assert projection is not None
    assert not caplog.records  # the probe's blocks were the planned ones
    assert "rows 20-39, cols 20-39 of 40 x 40 (400 cells" in projection.probed
    assert "the whole record (2000-01 to 2007-12)" in projection.probed
    assert "read 10 x 10 by 1 year(s), fit 5 x 5, 2 thread(s)" in projection.probed
    assert list(projection.phases) == ["open", "gates", "engine", "months", "fits"]
    assert all(v >= 0 for v in projection.phases.values())
    assert projection.seconds == pytest.approx(sum(projection.phases.values()))
    # The phases that scale were scaled: each is at least the probe's share of them, and
    # the projection is longer than the probe's own build.
    assert projection.seconds > projection.phases["open"] + projection.phases["engine"]
    assert projection.peak_bytes > 0 and projection.cpus == 2
    root, key = task._store_root_key()
    assert not is_built(root, key) and not root.exists()  # nothing of the real cube
    lines = projection.render()
    assert lines[0].startswith("  preprocessing ") and "peak RSS" in lines[0]


@pytest.mark.slow
def test_the_dry_run_reports_the_projection_then_builds_as_before(
    grid: Path, tmp_path: Path
) -> None:
    cfg = _cfg(grid, tmp_path, "train.epochs=1")
    report = dry_run(cfg, steps=2)
    assert report.preprocessing is not None and report.preprocessing.seconds > 0
    text = report.render()
    assert "\n  preprocessing " in text and "\n    probed      " in text
    assert text.index("walltime") < text.index("preprocessing") < text.index("launch:")
    root, key = build_task(cfg)._store_root_key()
    assert is_built(root, key)  # the dry run went on to build the cube to time the steps
    again = dry_run(cfg, steps=2)  # built: nothing to project, nothing probed
    assert again.preprocessing is not None and again.preprocessing.seconds == 0
    assert "is built" in again.preprocessing.probed


def test_a_value_outside_the_gates_fails_as_the_real_build_does(
    grid: Path, tmp_path: Path
) -> None:
    """A bad value inside the probe's window: the probe refuses it with the real build's
    one line; nothing is written."""
    with xr.open_dataset(grid) as ds:
        bad = ds.load()
    bad["tp"][10, 30, 30] = -5e-3  # m/day: -5 mm/day, in the probe's window
    bad_path = write_netcdf(bad, tmp_path / "bad.nc", chunk_space=10)
    cfg = _cfg(bad_path, tmp_path / "w")
    with pytest.raises(DataError) as info:
        dry_run(cfg, steps=2)
    assert str(info.value).startswith(f"{bad_path}: variable 'tp' has the value -5 mm/day")
    assert not (tmp_path / "w").exists()


def test_splits_outside_the_record_fail_as_before(grid: Path, tmp_path: Path) -> None:
    cfg = _cfg(
        grid,
        tmp_path,
        "task.params.splits.train=[1990-01,2004-12]",
        "task.params.splits.val=[2005-01,2005-12]",
        "task.params.splits.test=[2006-01,2007-12]",
    )
    with pytest.raises(DataError, match=rf"^{grid}: .*1990-01"):
        dry_run(cfg, steps=2)


def test_no_projection_for_a_cube_built_in_memory(grid: Path, tmp_path: Path) -> None:
    """A synthetic preset or ``store: npz`` builds the cube in memory: nothing to project."""
    assert (
        build_task(_cfg(grid, tmp_path, "task.params.store=npz")).preprocessing_projection()
        is None
    )
    preset = load_config(CONFIG, [f"workdir={tmp_path}", "tracking.enabled=false"])
    assert build_task(preset).preprocessing_projection() is None


def test_twins_preprocess_builds_the_cube_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_netcdf(generate("tiny"), tmp_path / "tiny.nc")
    args = [
        "preprocess",
        str(CONFIG),
        f"workdir={tmp_path / 'w'}",
        f"task.params.path={path}",
        "task.params.store=zarr",
        "compute.mode=threads",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("preprocessed drought-tiny in ") and "cube store " in out
    store = Path(out.strip().rsplit(" ", 1)[-1])
    assert is_built(store.parent, store.name)
    assert main([*args[:2], f"workdir={tmp_path / 'w'}", "task.params.store=npz"]) == 0
    out = capsys.readouterr().out
    assert out.strip().endswith(".npz") and Path(out.strip().rsplit(" ", 1)[-1]).is_file()


def test_twins_preprocess_of_a_task_without_preprocessing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "toy.yaml"
    cfg.write_text(f"workdir: {tmp_path}\ntask:\n  params:\n    length: 100\n")
    assert main(["preprocess", str(cfg)]) == 0
    assert "nothing to preprocess" in capsys.readouterr().out
