"""The drought twin: a directory that follows a gridded climate record month by month.

A :class:`DroughtTwin` lives in a :class:`twins.twin.TwinStore` directory (kind
``"hydrology"``). Its products, per committed version (``versions/vNNNNNN/products/``):

* ``indices.nc`` (init only): the fitted index parameters (:meth:`DroughtIndices.save`);
* ``forecaster.<ext>`` (init only, when the forecaster is a trained model file): a copy;
* ``history.nc``: the monthly history an update needs — monthly inputs ``pr``/``wb`` [mm/d],
  ``sm`` [m3 m-3], ``t2m`` [K] where available, the drought indices and the statics
  ``lsm``/``z`` — for the last ``N = max(indices.history_months, forecaster.history_months)
  + HISTORY_MARGIN`` months, dims ``(time, lat, lon)``;
* ``alerts_<YYYY-MM>.nc``: the forecast issued from month ``YYYY-MM`` — per target the forecast
  values (``<target>``, dims ``(lead, lat, lon)``) and the drought category
  (``category_<target>``, int8, CF ``flag_values`` 0/1/2/3 = none / moderate (< -1) / severe
  (< -1.5) / extreme (< -2), -1 = no data).

An update (:meth:`DroughtTwin.update`) checks the new months (:mod:`hydrology.ingest`: files
complete and readable, grid, variables, units, whole months directly after the cursor, the
plausibility gates of :mod:`hydrology.gates` stored at init), converts them to canonical units,
aggregates them to months, transforms the indices with
the stored parameters (new months only; the history fills the accumulation windows), forecasts
the next leads from the last new month and writes the alert maps and the new history — all in
one store transaction: a crash leaves the twin as before or fully updated, the same months
twice are a no-op, and a concurrent update is refused (or waits, ``wait=True``).

:meth:`DroughtTwin.simulate` answers a what-if on a copy of the recent history and never
writes to the twin directory.

Example::

    twin = DroughtTwin.init("twin", daily_ds, PersistenceForecaster(), fitted_indices)
    twin.update("era5land_2021-01.nc")
    twin.simulate(Scenario(precip_scale=0.5, months=3))
    print(twin.status()["text"])
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from hydrology.forecast import Forecaster, PersistenceForecaster
from hydrology.gates import Gates
from hydrology.indices import DroughtIndices
from hydrology.ingest import SOURCE_VARIABLE, prepare_months, read_init
from hydrology.scenario import Region, Scenario, apply_scenario
from twins.errors import DataError, TwinsError
from twins.twin import TwinStore, UpdateRecord, format_status, restore_version

__all__ = [
    "ALERT_MEANINGS",
    "ALERT_THRESHOLDS",
    "KIND",
    "DroughtTwin",
    "Region",
    "Scenario",
    "UpdateResult",
    "alert_categories",
    "load_forecaster",
]

log = logging.getLogger(__name__)

#: Twin kind (domain name) in ``twin.json``.
KIND = "hydrology"
#: Extra months kept in the history beyond what indices and forecaster need (room for
#: scenarios over the last months: their indices are recomputed with full windows).
HISTORY_MARGIN = 12
#: Category thresholds (strictly below): moderate, severe, extreme.
ALERT_THRESHOLDS: tuple[float, float, float] = (-1.0, -1.5, -2.0)
ALERT_MEANINGS = "none moderate severe extreme"

#: Fewest months handed to one xclim transform (it infers the frequency from 3 steps).
MIN_TRANSFORM_MONTHS = 3

_HISTORY = "history.nc"
_INDICES = "indices.nc"
_INPUT_VARS = ("pr", "wb", "sm", "t2m")
_STATICS = ("lsm", "z")


# --------------------------------------------------------------------------------------------
# Forecaster loading


def load_forecaster(path: str | os.PathLike[str] | None, loader: str | None = None) -> Forecaster:
    """Load a forecaster from a model file, or persistence when there is none.

    Args:
        path: Model file (e.g. a trained network saved by ``ModelForecaster.save``), or None.
        loader: ``"module:Class.method"`` to call with the path; default
            ``"hydrology.model_forecaster:ModelForecaster.load"``.

    Returns:
        The forecaster (``PersistenceForecaster()`` for SPI-3 when ``path`` is None).

    Raises:
        TwinsError: The loader cannot be imported or fails on the file.
    """
    if path is None:
        return PersistenceForecaster()
    spec = loader or "hydrology.model_forecaster:ModelForecaster.load"
    module_name, _, attr = spec.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise TwinsError(
            f"cannot load forecaster {path}: loader {spec!r} is unavailable ({exc})",
            hint="install the package that provides it",
        ) from None
    return obj(Path(path))


def _forecaster_spec(forecaster: Forecaster) -> dict[str, Any]:
    return {
        "class": f"{type(forecaster).__module__}:{type(forecaster).__qualname__}",
        "targets": list(forecaster.targets),
        "leads": list(forecaster.leads),
        "history_months": int(forecaster.history_months),
    }


# --------------------------------------------------------------------------------------------
# Alerts


def alert_categories(values: np.ndarray) -> np.ndarray:
    """Drought category of standardised-index values.

    Args:
        values: Index values (any shape, dimensionless); NaN where there is no data.

    Returns:
        int8 array of the same shape: 0 none (>= -1), 1 moderate (< -1), 2 severe (< -1.5),
        3 extreme (< -2), -1 where ``values`` is NaN.
    """
    v = np.asarray(values, dtype=np.float64)
    cat = np.zeros(v.shape, dtype=np.int8)
    for threshold in ALERT_THRESHOLDS:
        cat += (np.nan_to_num(v, nan=np.inf) < threshold).astype(np.int8)
    cat[~np.isfinite(v)] = -1
    return cat


def _alerts_dataset(fc: xr.Dataset, issue: str, model_ref: str | None) -> xr.Dataset:
    """CF alert dataset: forecast values and categories per target, dims (lead, lat, lon)."""
    out = xr.Dataset(coords={k: fc.coords[k] for k in fc.coords})
    for name in fc.data_vars:
        values = fc[name].astype(np.float32)
        values.attrs = {
            "long_name": f"forecast of {name}",
            "units": "1",
            "_FillValue": np.float32(np.nan),
        }
        out[name] = values
        cat = xr.DataArray(alert_categories(fc[name].values), dims=fc[name].dims)
        cat.attrs = {
            "long_name": f"drought alert category of {name}",
            "standard_name": "status_flag",
            "flag_values": np.array([0, 1, 2, 3], dtype=np.int8),
            "flag_meanings": ALERT_MEANINGS,
            "thresholds": np.array(ALERT_THRESHOLDS, dtype=np.float64),
            "threshold_rule": "moderate < -1, severe < -1.5, extreme < -2 (strictly below)",
            "_FillValue": np.int8(-1),
        }
        out[f"category_{name}"] = cat
    out["lat"].attrs.update(standard_name="latitude", units="degrees_north", axis="Y")
    out["lon"].attrs.update(standard_name="longitude", units="degrees_east", axis="X")
    out["lead"].attrs.update(long_name="forecast lead time", units="months")
    out["valid_time"].attrs.update(long_name="month the forecast is valid for")
    out.attrs = {
        "Conventions": "CF-1.10",
        "title": f"drought alerts issued {issue}",
        "source": "hydrology.twin",
        "issue_month": issue,
        "model_ref": model_ref or "",
        "thresholds": "moderate < -1, severe < -1.5, extreme < -2",
    }
    return out


def _alert_counts(alerts: xr.Dataset) -> dict[str, dict[str, dict[str, int]]]:
    """Cells per category, per target and lead: ``{target: {lead: {category: n}}}``."""
    names = ALERT_MEANINGS.split()
    counts: dict[str, dict[str, dict[str, int]]] = {}
    for var in alerts.data_vars:
        if not str(var).startswith("category_"):
            continue
        target = str(var)[len("category_") :]
        counts[target] = {}
        for i, lead in enumerate(alerts["lead"].values):
            cat = alerts[var].values[i]
            counts[target][str(int(lead))] = {
                n: int(np.sum(cat == k)) for k, n in enumerate(names)
            }
    return counts


# --------------------------------------------------------------------------------------------
# Data handling


def _month(t: Any) -> str:
    return pd.Timestamp(t).strftime("%Y-%m")


def _next_month(month: str) -> str:
    return (pd.Timestamp(month + "-01") + pd.DateOffset(months=1)).strftime("%Y-%m")


def _to_index_input(monthly: xr.Dataset) -> xr.Dataset:
    """Monthly inputs -> the canonical variables DroughtIndices reads, as rates.

    ``tp`` = ``pr`` and ``pev`` = ``wb - pr`` in mm/d (fluxes: DroughtIndices takes their
    monthly mean, the identity on monthly data, and P - PET = ``tp + pev`` = ``wb``), ``swvl1``
    = ``sm``.
    """
    out = {}
    if "pr" in monthly:
        out["tp"] = monthly["pr"].assign_attrs(units="mm/d")
        if "wb" in monthly:
            out["pev"] = (monthly["wb"] - monthly["pr"]).assign_attrs(units="mm/d")
    if "sm" in monthly:
        out["swvl1"] = monthly["sm"].assign_attrs(units="m3 m-3")
    return xr.Dataset(out)


def _transform_tail(indices: DroughtIndices, monthly: xr.Dataset, n_tail: int) -> xr.Dataset:
    """Indices of the last ``n_tail`` months of ``monthly`` with the stored parameters.

    The earlier months of ``monthly`` fill the accumulation windows. At least
    ``MIN_TRANSFORM_MONTHS`` months are transformed (xclim infers the frequency of its input,
    which needs three time steps) and the extra ones dropped: with fixed parameters each
    month's value does not depend on which months are transformed together.

    Args:
        indices: Fitted indices.
        monthly: Monthly inputs (``pr``, ``wb``, ``sm``), dims ``(time, lat, lon)``.
        n_tail: Number of final months wanted.

    Returns:
        Indices for the last ``n_tail`` months, dims ``(time, lat, lon)``.
    """
    inputs = _to_index_input(monthly)
    n = inputs.sizes["time"]
    start = max(0, n - max(n_tail, MIN_TRANSFORM_MONTHS))
    out = indices.transform(inputs.isel(time=slice(start, None)), history=inputs)
    return out.isel(time=slice(-n_tail, None))


def _write_nc(ds: xr.Dataset, path: Path) -> None:
    """Write ``ds`` as NetCDF-4, zlib level 1, deterministic (no timestamps in attributes)."""
    enc: dict[str, dict[str, Any]] = {}
    for name, da in ds.data_vars.items():
        if da.ndim:
            enc[str(name)] = {"zlib": True, "complevel": 1}
    for name in ds.coords:
        if ds[name].dtype.kind == "f" and name in ds.dims:
            enc[str(name)] = {"_FillValue": None}
    ds.to_netcdf(path, engine="netcdf4", format="NETCDF4", encoding=enc)


# --------------------------------------------------------------------------------------------
# Twin


@dataclass
class UpdateResult:
    """Outcome of :meth:`DroughtTwin.update`.

    Attributes:
        noop: True when these months were already ingested (nothing written).
        version: The twin version holding the update.
        months: Months ingested, ``"YYYY-MM"``.
        cursor: Cursor after the update.
        issue: Issue month of the forecast.
        alerts_file: Path of the alert NetCDF.
        alerts: Cells per category per target and lead.
        record: The committed store record.
    """

    noop: bool
    version: int
    months: list[str]
    cursor: str | None
    issue: str
    alerts_file: Path
    alerts: dict[str, Any] = field(default_factory=dict)
    record: UpdateRecord | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (without the record)."""
        return {
            "noop": self.noop,
            "version": self.version,
            "months": self.months,
            "cursor": self.cursor,
            "issue": self.issue,
            "alerts_file": str(self.alerts_file),
            "alerts": self.alerts,
        }


class DroughtTwin:
    """Python API of the drought twin (see the module docstring).

    Args:
        store: The opened twin store.
        forecaster: Use this forecaster instead of loading the stored one.
    """

    def __init__(self, store: TwinStore, forecaster: Forecaster | None = None) -> None:
        self.store = store
        self._forecaster = forecaster
        self._indices: DroughtIndices | None = None

    @property
    def path(self) -> Path:
        """The twin directory."""
        return self.store.path

    # -- construction ---------------------------------------------------------------------

    @classmethod
    def open(
        cls, twin_dir: str | os.PathLike[str], forecaster: Forecaster | None = None
    ) -> DroughtTwin:
        """Open an existing drought twin.

        Args:
            twin_dir: The twin directory.
            forecaster: Override the stored forecaster (e.g. an in-memory object).

        Returns:
            The twin.
        """
        return cls(TwinStore.open(twin_dir, kind=KIND), forecaster)

    @classmethod
    def init(
        cls,
        twin_dir: str | os.PathLike[str],
        data: xr.Dataset | str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        forecaster: Forecaster,
        indices: DroughtIndices,
        forecaster_file: str | os.PathLike[str] | None = None,
        model_ref: str | None = None,
        forecaster_loader: str | None = None,
        gates: Gates | Mapping[str, Any] | Sequence[str] | None = None,
    ) -> DroughtTwin:
        """Create a twin from a daily record, fitted indices and a forecaster.

        Args:
            twin_dir: New twin directory (must not hold a twin).
            data: Daily canonical dataset (``tp`` and whatever the indices need; ``pev``,
                ``swvl1``, ``t2m``, statics when present), dims ``(time, lat, lon)``, or NetCDF
                paths. Its last month becomes the cursor; it must cover whole months.
            forecaster: The forecaster (any :class:`Forecaster`).
            indices: Fitted :class:`DroughtIndices` (their parameters are stored).
            forecaster_file: The trained model file behind ``forecaster``; copied into the
                twin so that later processes (CLI, cron) load it with :func:`load_forecaster`.
            model_ref: Model reference to record (e.g. ``"models:/drought/3"``); default: the
                file name and its SHA-256, or ``"persistence"``.
            forecaster_loader: ``"module:Class.method"`` that loads ``forecaster_file``.
            gates: Plausibility bounds of this twin's input (:class:`Gates`, or overrides of
                the defaults such as ``{"tp.max": 2500}``); checked on ``data`` and stored
                in the twin's state for every later update.

        Returns:
            The twin, at version 0, with an initial forecast and alerts from the last month.

        Raises:
            DataError: Bad data or unfitted indices.
            ConfigError: An unknown or invalid gate key.
        """
        if not indices.params:
            raise DataError("DroughtTwin.init needs fitted indices", hint="call indices.fit()")
        bounds = Gates().with_overrides(gates)
        _ds, months, monthly, source = read_init(data, bounds)
        n_keep = max(indices.history_months, int(forecaster.history_months)) + HISTORY_MARGIN
        if monthly.sizes["time"] < n_keep:
            raise DataError(
                f"{source}: {monthly.sizes['time']} months; the twin needs at least {n_keep}"
            )
        idx_ds = indices.transform(_to_index_input(monthly))
        history = _history_dataset(monthly, idx_ds, n_keep)
        issue = months[-1]
        fc = forecaster.forecast(history)
        file_name: str | None = None
        if forecaster_file is not None:
            src = Path(forecaster_file)
            file_name = "forecaster" + "".join(src.suffixes)
            digest = hashlib.sha256(src.read_bytes()).hexdigest()[:16]
            model_ref = model_ref or f"{src.name}@sha256:{digest}"
            loader = forecaster_loader or (
                f"{type(forecaster).__module__}:{type(forecaster).__qualname__}.load"
                if hasattr(type(forecaster), "load")
                else None
            )
        else:
            loader = None
            if not isinstance(forecaster, PersistenceForecaster):
                log.warning(
                    "forecaster %s has no model file: reopen the twin with "
                    "DroughtTwin.open(dir, forecaster=...) (the CLI cannot load it)",
                    type(forecaster).__name__,
                )
            model_ref = model_ref or (
                "persistence"
                if isinstance(forecaster, PersistenceForecaster)
                else type(forecaster).__qualname__
            )
        alerts = _alerts_dataset(fc, issue, model_ref)
        counts = _alert_counts(alerts)
        alerts_name = f"alerts_{issue}.nc"

        def products(d: Path) -> None:
            indices.save(d / _INDICES)
            _write_nc(history, d / _HISTORY)
            _write_nc(alerts, d / alerts_name)
            if forecaster_file is not None and file_name is not None:
                shutil.copyfile(forecaster_file, d / file_name)

        extra = {
            "forecaster": {
                **_forecaster_spec(forecaster),
                "file": file_name,
                "loader": loader,
            },
            "variables": [SOURCE_VARIABLE[v] for v in _INPUT_VARS if v in monthly],
            "gates": bounds.model_dump(mode="json"),
            "history_months": n_keep,
            "indices": indices.names,
            "issue": issue,
            "alerts_file": alerts_name,
            "alerts": counts,
        }
        TwinStore.init(
            twin_dir,
            KIND,
            model_ref=model_ref,
            cursor=issue,
            extra=extra,
            products=products,
            summary={"months": [months[0], months[-1]], "issue": issue, "alerts": counts},
        )
        log.info("drought twin %s: initialised at %s (model %s)", twin_dir, issue, model_ref)
        return cls(TwinStore.open(twin_dir, kind=KIND), forecaster)

    # -- loading --------------------------------------------------------------------------

    @property
    def indices(self) -> DroughtIndices:
        """The stored index parameters."""
        if self._indices is None:
            self._indices = DroughtIndices.load(self.store.product_path(_INDICES))
        return self._indices

    @property
    def forecaster(self) -> Forecaster:
        """The forecaster (loaded from the twin on first use unless given at open)."""
        if self._forecaster is None:
            spec = self.store.state.extra.get("forecaster", {})
            if spec.get("file"):
                path = self.store.product_path(spec["file"])
                self._forecaster = load_forecaster(path, spec.get("loader"))
            elif spec.get("class", "").endswith(":PersistenceForecaster"):
                self._forecaster = PersistenceForecaster(
                    tuple(spec["targets"]), tuple(spec["leads"])
                )
            else:
                raise TwinsError(
                    f"twin {self.path}: its forecaster {spec.get('class')} has no stored model "
                    "file",
                    hint="open it with DroughtTwin.open(dir, forecaster=...)",
                )
        return self._forecaster

    def history(self) -> xr.Dataset:
        """The stored monthly history (inputs, indices, statics), loaded."""
        with xr.open_dataset(self.store.product_path(_HISTORY), engine="netcdf4") as h:
            return h.load()

    def alerts(self) -> xr.Dataset:
        """The latest alert dataset (forecast values and categories)."""
        name = self.store.state.extra["alerts_file"]
        with xr.open_dataset(self.store.product_path(name), engine="netcdf4") as a:
            return a.load()

    @property
    def gates(self) -> Gates:
        """The plausibility bounds stored at init (the defaults for twins made before)."""
        return Gates.model_validate(self.store.state.extra.get("gates", {}))

    # -- update ---------------------------------------------------------------------------

    def update(
        self,
        new_data: xr.Dataset | str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        wait: bool | float = False,
        gates: Gates | Mapping[str, Any] | Sequence[str] | None = None,
    ) -> UpdateResult:
        """Ingest one or more new months and issue a new forecast with alerts.

        Every check (files complete, names, units, time axis, grid, plausibility gates) runs
        before the transaction starts: refused data leave the twin directory untouched.

        Args:
            new_data: Daily canonical dataset or NetCDF file(s) of whole months directly after
                the cursor, on the twin's grid, with the variables the twin was built from.
            wait: False: refuse at once if another update holds the lock; True: wait for it;
                a number: wait up to that many seconds.
            gates: Overrides of the twin's stored gates for this update only, e.g.
                ``{"tp.max": 2500}`` or ``["tp.max=2500"]`` (recorded in the update's
                summary); None uses the stored gates.

        Returns:
            The result; ``noop=True`` when these months (same content) were already ingested.

        Raises:
            DataError: Bad new data (message names the file, variable, value and bound).
            ConfigError: An unknown or invalid gate key.
            TwinsError: The months do not follow the cursor.
            TwinLockedError: Another update holds the lock.
        """
        bounds = self.gates.with_overrides(gates)
        required = list(self.store.state.extra.get("variables", ["tp"]))
        monthly, months, key, source = prepare_months(new_data, self.history(), required, bounds)
        with self.store.transaction(key, wait=wait) as txn:
            if txn.noop:
                assert txn.record is not None
                log.info("twin %s: months %s already ingested (no-op)", self.path, months)
                return self._result(txn.record, True)
            cursor = txn.state.cursor
            expected = _next_month(cursor) if cursor else months[0]
            if months[0] != expected:
                what = "already ingested" if months[0] <= (cursor or "") else "gap"
                raise DataError(
                    f"{source}: first month {months[0]} does not follow the twin's cursor "
                    f"{cursor} ({what}; expected {expected}) (variable 'time')",
                    hint="give the months after the cursor, in order, without gaps",
                )
            history = self.history()
            new_hist = _append(history, monthly, self.indices, txn.state.extra)
            fc = self.forecaster.forecast(new_hist)
            issue = months[-1]
            alerts = _alerts_dataset(fc, issue, txn.state.model_ref)
            counts = _alert_counts(alerts)
            alerts_name = f"alerts_{issue}.nc"
            _write_nc(new_hist, txn.products_dir / _HISTORY)
            _write_nc(alerts, txn.products_dir / alerts_name)
            extra = dict(txn.state.extra)
            extra.update(issue=issue, alerts_file=alerts_name, alerts=counts)
            txn.update_state(cursor=issue, extra=extra)
            txn.summary.update(months=months, issue=issue, alerts=counts, source=source)
            if gates is not None:
                txn.summary["gates"] = bounds.model_dump(mode="json")
        assert txn.record is not None
        log.info("twin %s: ingested %s, forecast issued %s", self.path, months, issue)
        return self._result(txn.record, False)

    def rollback(self, version: int, wait: bool | float = False) -> UpdateRecord:
        """Take the twin back to an earlier version: a bad month that got in is taken out.

        Commits a new version (action ``"restore"``) whose cursor, model, state (gates
        included) and products (history, alerts) are those of ``version``; the months
        ingested after it may then be given again, corrected
        (:func:`twins.twin.restore_version`).

        Args:
            version: An earlier committed version.
            wait: As in :meth:`update`.

        Returns:
            The record of the new version.

        Raises:
            TwinVersionError: ``version`` is not an earlier committed version.
            TwinLockedError: Another update holds the lock.
        """
        record = restore_version(self.store, version, wait=wait)
        log.info("twin %s: rolled back to v%d as v%d", self.path, version, record.version)
        return record

    def _result(self, record: UpdateRecord, noop: bool) -> UpdateResult:
        issue = str(record.summary.get("issue"))
        return UpdateResult(
            noop=noop,
            version=record.version,
            months=list(record.summary.get("months", [])),
            cursor=record.cursor_after,
            issue=issue,
            alerts_file=self.store.version_dir(record.version) / "products" / f"alerts_{issue}.nc",
            alerts=dict(record.summary.get("alerts", {})),
            record=record,
        )

    # -- simulate -------------------------------------------------------------------------

    def simulate(self, scenario: Scenario | dict[str, Any]) -> xr.Dataset:
        """Forecast under a what-if scenario; the twin directory is not changed.

        Args:
            scenario: The scenario (or a dict validated as one).

        Returns:
            Dataset with, per forecast target, ``<target>`` = scenario - baseline forecast,
            and ``baseline_<target>`` / ``scenario_<target>``, dims ``(lead, lat, lon)``
            (index units), plus ``delta_<index>`` = scenario - baseline of every index in the
            issue month, dims ``(lat, lon)``; the scenario as JSON in ``attrs["scenario"]``.
        """
        sc = scenario if isinstance(scenario, Scenario) else Scenario.model_validate(scenario)
        history = self.history()
        modified, first = apply_scenario(history, sc)
        indices = self.indices
        names = [n for n in indices.names if n in history]
        if first is not None:
            new_idx = _transform_tail(indices, modified, modified.sizes["time"] - first)
            for name in names:
                modified[name] = xr.concat(
                    [history[name].isel(time=slice(None, first)), new_idx[name]], dim="time"
                ).assign_attrs(history[name].attrs)
        forecaster = self.forecaster
        base = forecaster.forecast(history)
        scen = forecaster.forecast(modified)
        out = xr.Dataset(coords={k: base.coords[k] for k in base.coords})
        for target in base.data_vars:
            out[target] = (scen[target] - base[target]).assign_attrs(
                long_name=f"scenario - baseline forecast of {target}", units="1"
            )
            out[f"baseline_{target}"] = base[target]
            out[f"scenario_{target}"] = scen[target]
        for name in names:
            out[f"delta_{name}"] = (
                modified[name].isel(time=-1) - history[name].isel(time=-1)
            ).assign_attrs(long_name=f"scenario - baseline {name} in the issue month", units="1")
        out.attrs = {
            "scenario": sc.model_dump_json(),
            "issue_month": _month(history["time"].values[-1]),
            "modified_months": ""
            if first is None
            else f"{_month(history.time.values[first])}..{_month(history.time.values[-1])}",
        }
        return out

    # -- status ---------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Cursor, model, version and the last alerts.

        Returns:
            :meth:`TwinStore.status` plus ``issue``, ``alerts`` (``{target: {lead: {category:
            cells}}}``) and ``text`` (the printable form).
        """
        st = self.store.status()
        extra = st.get("extra", {})
        st["issue"] = extra.get("issue")
        st["alerts"] = extra.get("alerts", {})
        lines = [format_status(st), f"issued      {st['issue']}", "alerts (cells per category):"]
        for target, per_lead in st["alerts"].items():
            for lead, cats in per_lead.items():
                text = "  ".join(f"{k}={v}" for k, v in cats.items())
                lines.append(f"  {target} lead {lead}: {text}")
        st["text"] = "\n".join(lines)
        return st


# --------------------------------------------------------------------------------------------
# History helpers


def _history_dataset(monthly: xr.Dataset, idx: xr.Dataset, n_keep: int) -> xr.Dataset:
    """Last ``n_keep`` months of inputs + indices, with statics."""
    dyn = [v for v in _INPUT_VARS if v in monthly]
    hist = xr.merge([monthly[dyn], idx], combine_attrs="drop").isel(time=slice(-n_keep, None))
    for v in dyn + list(idx.data_vars):
        src = monthly if v in monthly else idx
        hist[v] = hist[v].astype(np.float64).assign_attrs(src[v].attrs)
    for s in _STATICS:
        if s in monthly:
            hist[s] = monthly[s].astype(np.float32)
    hist.attrs = {"Conventions": "CF-1.10", "source": "hydrology.twin monthly history"}
    if "clipping" in idx.attrs:
        hist.attrs["index_clipping"] = idx.attrs["clipping"]
    return hist


def _append(
    history: xr.Dataset, monthly: xr.Dataset, indices: DroughtIndices, extra: dict[str, Any]
) -> xr.Dataset:
    """History + new monthly inputs, indices transformed with the stored parameters."""
    dyn = [v for v in _INPUT_VARS if v in history]
    missing = [v for v in dyn if v not in monthly]
    if missing:
        raise DataError(f"new data lack {[SOURCE_VARIABLE[v] for v in missing]}")
    new = monthly[dyn]
    combined = xr.concat([history[dyn], new], dim="time")
    idx = _transform_tail(indices, combined, new.sizes["time"])
    merged = xr.merge([new, idx], combine_attrs="drop")
    statics = [s for s in _STATICS if s in history]
    body = history.drop_vars(statics)
    both = xr.concat([body, merged[list(body.data_vars)]], dim="time", combine_attrs="override")
    n_keep = int(extra.get("history_months", both.sizes["time"]))
    both = both.isel(time=slice(-n_keep, None))
    for v in both.data_vars:
        both[v] = both[v].astype(np.float64).assign_attrs(history[v].attrs)
    for s in statics:
        both[s] = history[s]
    both.attrs = dict(history.attrs)
    return both
