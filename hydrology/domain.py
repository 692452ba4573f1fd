"""The hydrology domain of ``twins``: the drought demo and the drought twin's CLI commands.

Registered in ``pyproject.toml``::

    [project.entry-points."twins.domains"]
    hydrology = "hydrology.domain:DOMAIN"

Imports are lazy: loading this module (``twins --help``) imports neither xarray nor torch.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from twins.domains import Domain

__all__ = ["DOMAIN", "demo", "twin_command"]

log = logging.getLogger(__name__)

#: Indices the demo twin keeps (SPEI is left out: its ML fit takes minutes on the demo grid).
DEMO_INDICES = ("spi_1", "spi_3", "spi_6", "ssmi_1")
#: Months held out of the record and fed to the twin as two monthly updates.
HELD_OUT_MONTHS = 2


def _jsonable(ds: Any) -> dict[str, Any]:
    """Summary of a scenario result: per variable the mean over land and the extremes."""
    import numpy as np

    out: dict[str, Any] = {"attrs": dict(ds.attrs), "variables": {}}
    for name in ds.data_vars:
        v = np.asarray(ds[name].values, dtype=np.float64)
        fin = v[np.isfinite(v)]
        if "lead" in ds[name].dims:
            per_lead = {
                str(int(k)): float(np.nanmean(v[i])) if np.isfinite(v[i]).any() else None
                for i, k in enumerate(ds["lead"].values)
            }
        else:
            per_lead = None
        out["variables"][str(name)] = {
            "mean": float(fin.mean()) if fin.size else None,
            "min": float(fin.min()) if fin.size else None,
            "max": float(fin.max()) if fin.size else None,
            "mean_per_lead": per_lead,
        }
    return out


def twin_command(cmd: str, twin_dir: Path, args: list[str]) -> int:
    """``twins twin update|simulate|status DIR ...`` for a drought twin.

    * ``update DIR --data FILE [FILE ...] [--wait]``: ingest new-month NetCDF files;
    * ``simulate DIR [--precip-scale F] [--temp-shift K] [--region LAT0 LAT1 LON0 LON1]
      [--months N | --period START END]``: what-if against the baseline forecast;
    * ``status DIR``: cursor, model and last alerts.

    Prints the result as JSON (``status`` prints text) and returns 0 on success; errors are
    :class:`twins.errors.TwinsError` subclasses the CLI reports on one line.
    """
    from hydrology.twin import DroughtTwin, Region, Scenario

    ap = argparse.ArgumentParser(prog=f"twins twin {cmd} {twin_dir}")
    if cmd == "update":
        ap.add_argument("--data", nargs="+", required=True, help="new-month NetCDF files")
        ap.add_argument("--wait", action="store_true", help="wait for a running update")
    elif cmd == "simulate":
        ap.add_argument("--precip-scale", type=float, default=1.0)
        ap.add_argument("--temp-shift", type=float, default=0.0, help="[K]")
        ap.add_argument("--region", type=float, nargs=4, metavar=("LAT0", "LAT1", "LON0", "LON1"))
        ap.add_argument("--months", type=int, default=None, help="last N months")
        ap.add_argument("--period", nargs=2, metavar=("START", "END"), help="YYYY-MM YYYY-MM")
    elif cmd != "status":
        ap.error(f"unknown twin command {cmd!r}")
    ns = ap.parse_args(args)
    twin = DroughtTwin.open(twin_dir)
    if cmd == "update":
        result = twin.update([Path(p) for p in ns.data], wait=ns.wait)
        print(json.dumps(result.to_dict()))
        if result.noop:
            from twins.twin import EXIT_NOTHING_NEW

            return EXIT_NOTHING_NEW
    elif cmd == "simulate":
        region = None
        if ns.region is not None:
            lat0, lat1, lon0, lon1 = ns.region
            region = Region(
                lat_min=min(lat0, lat1),
                lat_max=max(lat0, lat1),
                lon_min=min(lon0, lon1),
                lon_max=max(lon0, lon1),
            )
        sc = Scenario(
            precip_scale=ns.precip_scale,
            temp_shift=ns.temp_shift,
            region=region,
            months=ns.months,
            start=ns.period[0] if ns.period else None,
            end=ns.period[1] if ns.period else None,
        )
        print(json.dumps(_jsonable(twin.simulate(sc))))
    else:
        print(twin.status()["text"])
    return 0


def _train(workdir: Path, overrides: list[str], preset: str) -> tuple[Any, Path | None, Any]:
    """Train the forecaster briefly; fall back to persistence when the task is unavailable.

    Returns:
        ``(forecaster, model file or None, skill table or None)``.
    """
    from hydrology.forecast import PersistenceForecaster

    config = Path(__file__).with_name("configs") / f"{preset}.yaml"
    try:
        import hydrology.model_forecaster as mf
        import hydrology.task  # noqa: F401  (registers nothing; checks the task imports)
        from twins.config import load_config
        from twins.train.run import train_process
    except ImportError as exc:
        log.warning("FALLBACK: training unavailable (%s); the twin uses persistence", exc)
        return PersistenceForecaster(("spi_3", "ssmi_1")), None, None
    if not config.is_file():
        log.warning("FALLBACK: no config %s; the twin uses persistence", config)
        return PersistenceForecaster(("spi_3", "ssmi_1")), None, None
    cfg = load_config(str(config), [f"workdir={workdir}", *overrides])
    tic = time.perf_counter()
    (cfg.run_dir / "skill_test.csv").unlink(missing_ok=True)  # never report a stale table
    summary = train_process(cfg)
    log.info(
        "trained %s in %.0f s: test loss %.4g, model version %s",
        cfg.name,
        time.perf_counter() - tic,
        summary.get("test_loss", float("nan")),
        summary.get("model_version"),
    )
    forecaster = mf.ModelForecaster.from_run(cfg.run_dir)
    model_file = forecaster.save(workdir / "forecaster.pt")
    version = summary.get("model_version")
    register = getattr(cfg.tracking, "register_model", None)
    forecaster.model_ref = f"models:/{register}/{version}" if register and version else None
    table = None
    try:
        from hydrology.evaluate import headline

        saved = cfg.run_dir / "skill_test.csv"
        if saved.is_file():  # train_process scored the saved model already (task.evaluate)
            import pandas as pd

            table = headline(pd.read_csv(saved))
        else:
            from twins.task import build_task

            task: Any = build_task(cfg)
            table = headline(task.skill_table(forecaster.model, "test"))
    except Exception as exc:  # the skill table is a report, not a requirement
        log.warning("skill table unavailable: %s", exc)
    return forecaster, model_file, table


def demo(workdir: Path, overrides: list[str]) -> int:
    """Drought twin end to end: data, SPI, training, twin init, two updates, a scenario, maps.

    Args:
        workdir: Output directory (data, run, twin, maps).
        overrides: Config overrides for training (``section.key=value``); a
            ``task.params.preset=NAME`` override also picks the synthetic grid.

    Returns:
        0 on success.
    """
    import numpy as np
    import pandas as pd

    from hydrology.indices import DroughtIndices
    from hydrology.plots import drought_map
    from hydrology.synthetic import generate, write_netcdf
    from hydrology.twin import DroughtTwin, Region, Scenario

    tic = time.perf_counter()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    preset = "demo"
    for item in overrides:
        if item.startswith("task.params.preset="):
            preset = item.split("=", 1)[1]
    ds = generate(preset)
    months = pd.DatetimeIndex(ds.indexes["time"]).to_period("M").unique()
    cut = months[-HELD_OUT_MONTHS].to_timestamp()
    record = ds.sel(time=ds.time < np.datetime64(cut))
    held = ds.sel(time=ds.time >= np.datetime64(cut))
    years = pd.DatetimeIndex(record.indexes["time"]).year
    cal = (f"{years[0]}-01-01", f"{years[-1] - 1}-12-31")
    indices = DroughtIndices(DEMO_INDICES, *cal).fit(record)
    log.info("fitted %s over %s..%s", ", ".join(indices.names), *cal)

    forecaster, model_file, table = _train(workdir, overrides, preset)
    if table is not None:
        print("skill (test split, median over cells) against the baselines:")
        print(table.to_string(float_format=lambda x: f"{x:.3f}"))
    extra_targets = [t for t in forecaster.targets if t not in indices.names]
    if extra_targets:
        indices = DroughtIndices([*indices.names, *extra_targets], *cal).fit(record)

    twin_dir = workdir / "drought-twin"
    if twin_dir.exists():
        shutil.rmtree(twin_dir)
    twin = DroughtTwin.init(
        twin_dir,
        record,
        forecaster,
        indices,
        forecaster_file=model_file,
        model_ref=getattr(forecaster, "model_ref", None),
    )
    incoming = workdir / "incoming"
    for month in months[-HELD_OUT_MONTHS:]:
        sel = held.sel(time=held.time.dt.strftime("%Y-%m") == str(month))
        path = write_netcdf(
            sel.drop_vars(["drought_forcing", "drought_mask"]), incoming / f"era5land_{month}.nc"
        )
        result = twin.update(path)
        log.info("update %s: alerts %s", month, json.dumps(result.alerts))
    lat, lon = ds["lat"].values, ds["lon"].values
    region = Region(
        lat_min=float(np.quantile(lat, 0.25)),
        lat_max=float(np.quantile(lat, 0.75)),
        lon_min=float(np.quantile(lon, 0.25)),
        lon_max=float(np.quantile(lon, 0.75)),
    )
    scenario = Scenario(precip_scale=0.6, temp_shift=2.0, region=region, months=3)
    diff = twin.simulate(scenario)
    target = forecaster.targets[0]
    log.info(
        "scenario %s: mean change of %s forecast per lead %s",
        scenario.model_dump_json(),
        target,
        _jsonable(diff[[target]])["variables"][target]["mean_per_lead"],
    )
    maps = workdir / "maps"
    maps.mkdir(exist_ok=True)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    alerts = twin.alerts()
    issue = alerts.attrs["issue_month"]
    for name in forecaster.targets:
        for lead in alerts["lead"].values:
            fig = drought_map(
                alerts[name].sel(lead=lead),
                title=f"{name} forecast issued {issue}, lead {int(lead)} month(s)",
            )
            fig.savefig(maps / f"alerts_{issue}_{name}_lead{int(lead)}.png", dpi=80)
            plt.close(fig)
    fig = drought_map(
        diff[f"scenario_{target}"].isel(lead=0),
        title=f"{target} lead 1 under the scenario (P x0.6, +2 K, box)",
    )
    fig.savefig(maps / f"scenario_{issue}_{target}_lead1.png", dpi=80)
    plt.close(fig)
    print(twin.status()["text"])
    print(f"maps: {maps}")
    log.info("drought demo done in %.0f s", time.perf_counter() - tic)
    return 0


DOMAIN = Domain(
    name="hydrology",
    description="drought twin: climate grids -> SPI/SSMI -> forecast -> monthly alerts",
    demo=demo,
    twin_command=twin_command,
)
