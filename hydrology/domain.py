"""The hydrology domain of ``twins``: the drought demo and the drought twin.

Registered in ``pyproject.toml``::

    [project.entry-points."twins.domains"]
    hydrology = "hydrology.domain:DOMAIN"

The core builds ``twins twin init|update|simulate|status|history|rollback`` from
:class:`hydrology.twin.DroughtTwin`'s models; the domain parses no arguments.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

from hydrology.evaluate import headline
from hydrology.model_forecaster import ModelForecaster
from hydrology.plots import drought_map
from hydrology.scenario import Region, Scenario
from hydrology.synthetic import generate, write_netcdf
from hydrology.twin import DroughtTwin
from twins.config import load_config
from twins.domains import Domain
from twins.task import build_task
from twins.train.run import train_process

__all__ = ["DOMAIN", "HELD_OUT_MONTHS", "demo"]

log = logging.getLogger(__name__)

#: Months held out of the record and fed to the twin as two monthly updates.
HELD_OUT_MONTHS = 2


def _train(workdir: Path, overrides: list[str], preset: str) -> tuple[Path, pd.DataFrame]:
    """Train the forecaster of ``configs/<preset>.yaml`` briefly.

    Returns:
        ``(run directory, headline skill table of the test split)``.
    """
    config = Path(__file__).with_name("configs") / f"{preset}.yaml"
    cfg = load_config(str(config), [f"workdir={workdir}", *overrides])
    tic = time.perf_counter()
    saved = cfg.run_dir / "skill_test.csv"
    saved.unlink(missing_ok=True)  # never report a stale table
    summary = train_process(cfg)
    log.info(
        "trained %s in %.0f s: test loss %.4g, model version %s",
        cfg.name,
        time.perf_counter() - tic,
        summary.get("test_loss", float("nan")),
        summary.get("model_version"),
    )
    if saved.is_file():  # train_process scored the saved model already (task.evaluate)
        return cfg.run_dir, headline(pd.read_csv(saved))
    model = ModelForecaster.from_run(cfg.run_dir).model
    return cfg.run_dir, headline(build_task(cfg).skill_table(model, "test"))


def demo(workdir: Path, overrides: list[str]) -> int:
    """Drought twin end to end: data, training, twin from the run, two updates, a what-if,
    maps.

    Args:
        workdir: Output directory (run, twin, incoming files, maps).
        overrides: Config overrides for training (``section.key=value``); a
            ``task.params.preset=NAME`` override also picks the synthetic grid.

    Returns:
        0 on success.
    """
    tic = time.perf_counter()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    preset = "demo"
    for item in overrides:
        if item.startswith("task.params.preset="):
            preset = item.split("=", 1)[1]
    ds = generate(preset).drop_vars(["drought_forcing", "drought_mask"])
    months = pd.DatetimeIndex(ds.indexes["time"]).to_period("M").unique()
    cut = np.datetime64(months[-HELD_OUT_MONTHS].to_timestamp())
    record, held = ds.sel(time=ds.time < cut), ds.sel(time=ds.time >= cut)

    run_dir, table = _train(workdir, overrides, preset)
    print("skill (test split, median over cells) against the baselines:")
    print(table.to_string(float_format=lambda x: f"{x:.3f}"))

    twin_dir = workdir / "drought-twin"
    if twin_dir.exists():
        shutil.rmtree(twin_dir)
    twin = DroughtTwin.from_run(twin_dir, run_dir, record)
    incoming = workdir / "incoming"
    for month in months[-HELD_OUT_MONTHS:]:
        sel = held.sel(time=held.time.dt.strftime("%Y-%m") == str(month))
        result = twin.update(write_netcdf(sel, incoming / f"era5land_{month}.nc"))
        log.info("update %s: alerts %s", month, result.alerts)
    lat, lon = ds["lat"].values, ds["lon"].values
    region = Region(
        lat_min=float(np.quantile(lat, 0.25)),
        lat_max=float(np.quantile(lat, 0.75)),
        lon_min=float(np.quantile(lon, 0.25)),
        lon_max=float(np.quantile(lon, 0.75)),
    )
    what_if = twin.simulate(Scenario(precip_scale=0.6, temp_shift=2.0, region=region, months=3))
    target = twin.forecaster.targets[0]
    log.info(
        "scenario %s: mean change of %s forecast per lead %s",
        what_if.scenario,
        target,
        what_if.variables[target].mean_per_lead,
    )
    maps = workdir / "maps"
    maps.mkdir(exist_ok=True)
    for png in twin.status().maps:  # the twin drew its alert maps (one per target)
        shutil.copyfile(png, maps / png.name)
    issue = twin.alerts().attrs["issue_month"]
    fig = drought_map(
        what_if.dataset[f"scenario_{target}"].isel(lead=0),
        title=f"{target} lead 1 under the scenario (P x0.6, +2 K, box)",
    )
    fig.savefig(maps / f"scenario_{issue}_{target}_lead1.png", dpi=80)
    print(twin.status().text)
    print(f"maps: {maps}")
    log.info("drought demo done in %.0f s", time.perf_counter() - tic)
    return 0


DOMAIN = Domain(
    name="hydrology",
    description="drought twin: climate grids -> SPI/SSMI -> forecast -> monthly alerts",
    demo=demo,
    twin=DroughtTwin,
)
