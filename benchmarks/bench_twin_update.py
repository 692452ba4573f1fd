"""Monthly drought-twin update on the demo grid: compute time beyond imports, with a baseline.

Run: ``OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_twin_update.py [--repeats 3]
[--model FORECASTER_FILE] [--preset demo]``

Setup (not timed): the demo synthetic grid (50 x 50 cells, 1991-2020) minus its last month,
indices SPI-1/3/6 and SSMI-1 fitted over the record, a twin initialised on it with persistence
(or the trained forecaster in ``--model``, a file written by ``ModelForecaster.save``), and
the last month written as a daily NetCDF file like an ERA5-Land download.

Timed, on a fresh copy of the twin each repeat: ``DroughtTwin.update(file)`` — open and
validate the new month, aggregate it, transform the indices with the stored parameters,
forecast every lead over the full grid, write the alert maps and the new history, commit.
Baseline measured in the same run: the bare ``forecaster.forecast(history)`` call on the
same history. Prints medians; the goal is an update of at most 2 s.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from hydrology.forecast import PersistenceForecaster
from hydrology.indices import DroughtIndices
from hydrology.synthetic import generate, write_netcdf
from hydrology.twin import DroughtTwin, load_forecaster

GOAL_S = 2.0


def main() -> int:
    """Run the benchmark and print the medians."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--preset", default="demo")
    ap.add_argument("--model", type=Path, default=None, help="trained forecaster file")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    ds = generate(args.preset).drop_vars(["drought_forcing", "drought_mask"])
    last = pd.Timestamp(ds.time.values[-1]).to_period("M").to_timestamp()
    record = ds.sel(time=ds.time < np.datetime64(last))
    new = ds.sel(time=ds.time >= np.datetime64(last))
    years = pd.DatetimeIndex(record.indexes["time"]).year
    cal = (f"{years[0]}-01-01", f"{years[-1] - 1}-12-31")
    forecaster = (
        load_forecaster(args.model) if args.model else PersistenceForecaster(("spi_3", "ssmi_1"))
    )
    names = ["spi_1", "spi_3", "spi_6", "ssmi_1"]
    names += [t for t in forecaster.targets if t not in names]
    indices = DroughtIndices(names, *cal).fit(record)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        template = root / "template"
        DroughtTwin.init(template, record, forecaster, indices, forecaster_file=args.model)
        month_file = write_netcdf(new, root / f"era5land_{last:%Y-%m}.nc")
        update_s, forecast_s = [], []
        for i in range(args.repeats):
            copy = root / f"twin{i}"
            shutil.copytree(template, copy)
            twin = DroughtTwin.open(copy, forecaster=forecaster)
            history = twin.monthly_history()
            tic = time.perf_counter()
            forecaster.forecast(history)
            forecast_s.append(time.perf_counter() - tic)
            twin = DroughtTwin.open(copy)  # cold: loads parameters and forecaster itself
            tic = time.perf_counter()
            result = twin.update(month_file)
            update_s.append(time.perf_counter() - tic)
            assert not result.noop and result.cursor == f"{last:%Y-%m}"
    grid = f"{ds.sizes['lat']}x{ds.sizes['lon']}"
    up, fc = statistics.median(update_s), statistics.median(forecast_s)
    print(f"grid {grid}, forecaster {type(forecaster).__name__}, {args.repeats} repeats")
    print(f"baseline: bare forecaster.forecast(history)   median {fc:.3f} s")
    print(f"twin update (validate..commit, cold open)     median {up:.3f} s")
    print(f"update - forecast                             {up - fc:.3f} s")
    print(f"goal <= {GOAL_S:.1f} s: {'met' if up <= GOAL_S else 'NOT met'}")
    return 0 if up <= GOAL_S else 1


if __name__ == "__main__":
    raise SystemExit(main())
