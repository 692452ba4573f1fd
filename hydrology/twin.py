"""The drought twin: a directory that follows a gridded climate record month by month.

:class:`DroughtTwin` implements the twin contract (:class:`twins.twin.Twin`): ``create`` (from
a finished training run: ``twins twin init DIR --kind hydrology --run RUN_DIR``), ``open``,
``update``, ``simulate``, ``status``, and the core's ``history`` and ``rollback``. It lives in a
:class:`twins.twin.TwinStore` directory (kind ``"hydrology"``). Its products, per committed
version (``versions/vNNNNNN/products/``):

* ``indices.nc`` (init only): the fitted index parameters (:meth:`DroughtIndices.save`);
* ``forecaster.<ext>`` (init only, when the forecaster is a trained model file): a copy;
* ``history.nc``: the monthly history an update needs (:mod:`hydrology.twin_history`):
  inputs ``pr``/``wb`` [mm/d], ``sm`` [m3 m-3], ``t2m`` [K], the drought indices and the
  statics ``lsm``/``z``, dims ``(time, lat, lon)``;
* ``alerts_<YYYY-MM>.nc``: the forecast issued from month ``YYYY-MM`` with the drought
  category of every cell (:mod:`hydrology.alerts`);
* ``alerts_<YYYY-MM>_<target>.png`` (twins made with ``maps``, the default of
  :meth:`DroughtTwin.create`): the alert map of each target, one panel per lead
  (:func:`hydrology.plots.alert_map`).

An update (:meth:`DroughtTwin.update`) checks the new months (:mod:`hydrology.ingest`: files
complete and readable, grid, variables, units, whole months directly after the cursor, the
plausibility gates of :mod:`hydrology.gates` stored at init), converts them to canonical units,
aggregates them to months, transforms the indices with the stored parameters (new months only;
the history fills the accumulation windows), forecasts the next leads from the last new month
and writes the alert maps and the new history, all in one store transaction: a crash leaves
the twin as before or fully updated, the same months twice are a no-op, and a concurrent
update is refused (or waits, ``wait=True``).

:meth:`DroughtTwin.simulate` answers a what-if on a copy of the recent history and never
writes to the twin directory.

Example::

    twin = DroughtTwin.create("twin", DroughtInit(run="runs/drought-demo"))
    twin.update("era5land_2021-01.nc").alerts["spi_3"]["1"]
    twin.simulate(Scenario(precip_scale=0.5, months=3)).dataset["spi_3"]
    print(twin.status().text)
    twin.rollback(0)
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Self, TypeVar

import xarray as xr
from pydantic import BaseModel

from hydrology.alerts import (
    ALERT_MEANINGS,
    ALERT_THRESHOLDS,
    alert_categories,
    alert_counts,
    alerts_dataset,
)
from hydrology.forecast import Forecaster, PersistenceForecaster
from hydrology.gates import Gates
from hydrology.indices import DroughtIndices
from hydrology.ingest import SOURCE_VARIABLE, DataInput, prepare_months, read_init
from hydrology.pet import PetMethod, pet_variables
from hydrology.plots import alert_map_file, save_alert_maps
from hydrology.scenario import Region, Scenario, apply_scenario
from hydrology.timeaxis import month_label
from hydrology.twin_history import (
    HISTORY_MARGIN,
    INPUT_VARS,
    append_months,
    history_dataset,
    next_month,
    to_index_input,
    transform_tail,
    write_nc,
)
from hydrology.twin_models import (
    TWIN_INDICES,
    DroughtInit,
    DroughtSimulation,
    DroughtStatus,
    DroughtUpdate,
    DroughtUpdateOptions,
    summarise,
)
from hydrology.twin_run import load_run, run_record, twin_indices
from twins.config import config_hash
from twins.errors import DataError, TwinsError
from twins.twin import Twin, TwinStatus, TwinStore, UpdateRecord, UpdateResult

__all__ = [
    "ALERT_MEANINGS",
    "ALERT_THRESHOLDS",
    "KIND",
    "DroughtInit",
    "DroughtSimulation",
    "DroughtStatus",
    "DroughtTwin",
    "DroughtUpdate",
    "DroughtUpdateOptions",
    "Region",
    "Scenario",
    "alert_categories",
    "load_forecaster",
]

log = logging.getLogger(__name__)

#: Twin kind (domain name) in ``twin.json``.
KIND = "hydrology"

_HISTORY = "history.nc"
_INDICES = "indices.nc"

_M = TypeVar("_M", bound=BaseModel)


def _options(model: type[_M], value: BaseModel | Mapping[str, Any] | None) -> _M:
    """``value`` as a ``model``: None gives the defaults; another model or a mapping is
    validated (a bad value raises pydantic's ``ValidationError``, a ``ValueError``)."""
    if value is None:
        return model()
    if isinstance(value, model):
        return value
    if isinstance(value, BaseModel):
        return model.model_validate(value.model_dump())
    return model.model_validate(dict(value))


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


def _pet(forecaster: Forecaster) -> PetMethod:
    """Where the forecaster's water balance came from in training (a
    :class:`~hydrology.model_forecaster.ModelForecaster`'s ``pet``); ``pev`` otherwise."""
    return getattr(forecaster, "pet", None) or "pev"


def _variables(monthly: xr.Dataset) -> list[str]:
    """The record variables behind the monthly inputs: what every new month must hold
    (the water balance's: ``pev``, or the temperatures its PET is derived from)."""
    out: list[str] = []
    for v in INPUT_VARS:
        if v == "wb" and v in monthly:
            out += pet_variables(monthly, monthly[v].attrs.get("pet_method", "pev"))
        elif v in monthly:
            out.append(SOURCE_VARIABLE[v])
    return list(dict.fromkeys(out))


def _forecaster_spec(forecaster: Forecaster) -> dict[str, Any]:
    return {
        "class": f"{type(forecaster).__module__}:{type(forecaster).__qualname__}",
        "targets": list(forecaster.targets),
        "leads": list(forecaster.leads),
        "history_months": int(forecaster.history_months),
    }


# --------------------------------------------------------------------------------------------
# Twin


class DroughtTwin(Twin):
    """The drought twin (see the module docstring).

    Args:
        store: The opened twin store.
        forecaster: Use this forecaster instead of loading the stored one.
    """

    kind = KIND
    InitOptions = DroughtInit
    UpdateOptions = DroughtUpdateOptions
    Scenario = Scenario

    def __init__(self, store: TwinStore, forecaster: Forecaster | None = None) -> None:
        super().__init__(store)
        self._forecaster = forecaster
        self._indices: DroughtIndices | None = None

    # -- construction ---------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike[str], forecaster: Forecaster | None = None) -> Self:
        """Open an existing drought twin.

        Args:
            path: The twin directory.
            forecaster: Override the stored forecaster (e.g. an in-memory object).

        Raises:
            TwinNotFoundError: No twin there.
            TwinKindError: The twin belongs to another domain.
        """
        return cls(TwinStore.open(path, kind=KIND), forecaster)

    @classmethod
    def create(
        cls, path: str | os.PathLike[str], options: BaseModel | Mapping[str, Any]
    ) -> DroughtTwin:
        """A twin from a finished training run: ``twins twin init DIR --kind hydrology
        --run RUN_DIR [--data FILE ...] [--gates KEY=VALUE ...] [--indices NAME ...]``.

        The twin forecasts with the run's model (copied into the twin), keeps
        ``options.indices`` (default: those of :data:`TWIN_INDICES` the record can give) and
        the model's targets, calibrated over the run's training period as in training, and
        starts from ``options.data`` (default: the data the run trained on), whose last month
        becomes the cursor. With ``options.maps`` (default) every version's alert maps are
        drawn as PNG.

        Args:
            path: New twin directory (absent or empty).
            options: A :class:`DroughtInit` (or a mapping validated as one).

        Returns:
            The twin at version 0, with the forecast and alerts issued from the last month.

        Raises:
            TwinExistsError: ``path`` is taken (checked before any work).
            ConfigError: Not a finished drought-task run, a bad gate key, or an index whose
                variable the record lacks.
            DataError: Bad data: unreadable, implausible, too short, not covering the
                calibration period, lacking a variable of the model's targets, or on another
                grid than the model's (names the file).
        """
        opts = _options(DroughtInit, options)
        return cls.from_run(
            path, opts.run, opts.data, gates=opts.gates, indices=opts.indices, maps=opts.maps
        )

    @classmethod
    def from_run(
        cls,
        path: str | os.PathLike[str],
        run_dir: str | os.PathLike[str],
        data: DataInput | None = None,
        *,
        gates: Gates | Mapping[str, Any] | Sequence[str] | None = None,
        indices: Sequence[str] | None = None,
        maps: bool = True,
    ) -> DroughtTwin:
        """:meth:`create` with the record also given in memory (a daily dataset).

        Args:
            path: New twin directory (absent or empty).
            run_dir: Finished ``twins train`` run of ``hydrology.task:DroughtForecast``.
            data: Daily canonical dataset or NetCDF file(s), whole months, on the run's grid;
                None: the data the run trained on.
            gates: Plausibility bounds of the twin (overrides of the defaults).
            indices: Indices kept besides the forecaster's targets; None: those of
                :data:`TWIN_INDICES` the record can give.
            maps: Draw every version's alert maps as PNG in its products.

        Returns:
            The twin at version 0.

        Raises:
            As :meth:`create`.
        """
        target = Path(path)
        TwinStore.check_free(target)
        run = load_run(run_dir)
        bounds = Gates().with_overrides(gates)
        pet = _pet(run.forecaster)
        daily, months, monthly, source = read_init(
            run_record(run) if data is None else data, bounds, pet
        )
        first, last = run.calibration
        if not months[0] <= first[:7] <= last[:7] <= months[-1]:
            raise DataError(
                f"{source}: record {months[0]}..{months[-1]} does not cover the run's index "
                f"calibration period {first[:7]}..{last[:7]} (its training split; variable "
                "'time')",
                hint="give a record that includes the training period of the run",
            )
        names = twin_indices(indices, TWIN_INDICES, run.forecaster.targets, daily, source, pet)
        # fitted on the monthly inputs the twin transforms (its water balance, given or
        # derived as the model's was)
        fitted = DroughtIndices(names, first, last).fit(to_index_input(monthly))
        with tempfile.TemporaryDirectory(prefix="drought-twin-") as tmp:
            model_file = run.forecaster.save(Path(tmp) / "forecaster.pt")
            twin = cls._build(
                target,
                (months, monthly, source),
                run.forecaster,
                fitted,
                bounds,
                forecaster_file=model_file,
                model_ref=run.model_ref,
                config=config_hash(run.config),
                maps=maps,
            )
        log.info("drought twin %s: from run %s", target, run.run_dir)
        return twin

    @classmethod
    def init(
        cls,
        twin_dir: str | os.PathLike[str],
        data: DataInput,
        forecaster: Forecaster,
        indices: DroughtIndices,
        forecaster_file: str | os.PathLike[str] | None = None,
        model_ref: str | None = None,
        forecaster_loader: str | None = None,
        gates: Gates | Mapping[str, Any] | Sequence[str] | None = None,
        maps: bool = False,
    ) -> DroughtTwin:
        """Create a twin from in-memory parts: a daily record, fitted indices, a forecaster.

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
            maps: Draw every version's alert maps as PNG in its products (off by default
                here, the programmatic path; :meth:`create` draws them by default).

        Returns:
            The twin, at version 0, with an initial forecast and alerts from the last month.

        Raises:
            DataError: Bad data or unfitted indices.
            ConfigError: An unknown or invalid gate key.
        """
        if not indices.params:
            raise DataError("DroughtTwin.init needs fitted indices", hint="call indices.fit()")
        bounds = Gates().with_overrides(gates)
        _daily, months, monthly, source = read_init(data, bounds, _pet(forecaster))
        return cls._build(
            Path(twin_dir),
            (months, monthly, source),
            forecaster,
            indices,
            bounds,
            forecaster_file=forecaster_file,
            model_ref=model_ref,
            loader=forecaster_loader,
            maps=maps,
        )

    @classmethod
    def _build(
        cls,
        twin_dir: Path,
        record: tuple[list[str], xr.Dataset, str],
        forecaster: Forecaster,
        indices: DroughtIndices,
        bounds: Gates,
        *,
        forecaster_file: str | os.PathLike[str] | None = None,
        model_ref: str | None = None,
        loader: str | None = None,
        config: str | None = None,
        maps: bool = False,
    ) -> DroughtTwin:
        """Version 0 from a checked record ``(months, monthly inputs, source)`` (see
        :meth:`init`)."""
        months, monthly, source = record
        n_keep = max(indices.history_months, int(forecaster.history_months)) + HISTORY_MARGIN
        if monthly.sizes["time"] < n_keep:
            raise DataError(
                f"{source}: {monthly.sizes['time']} months; the twin needs at least {n_keep}"
            )
        idx_ds = indices.transform(to_index_input(monthly))
        history = history_dataset(monthly, idx_ds, n_keep)
        issue = months[-1]
        try:
            fc = forecaster.forecast(history)
        except DataError as exc:  # e.g. another grid than the model's: name the data
            raise DataError(f"{source}: {exc}", hint=exc.hint) from None
        file_name: str | None = None
        if forecaster_file is not None:
            src = Path(forecaster_file)
            file_name = "forecaster" + "".join(src.suffixes)
            digest = hashlib.sha256(src.read_bytes()).hexdigest()[:16]
            model_ref = model_ref or f"{src.name}@sha256:{digest}"
            loader = loader or (
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
        alerts = alerts_dataset(fc, issue, model_ref)
        counts = alert_counts(alerts)
        alerts_name = f"alerts_{issue}.nc"
        map_names = [alert_map_file(issue, str(t)) for t in fc.data_vars] if maps else []

        def products(d: Path) -> None:
            indices.save(d / _INDICES)
            write_nc(history, d / _HISTORY)
            write_nc(alerts, d / alerts_name)
            if maps:
                save_alert_maps(alerts, d)
            if forecaster_file is not None and file_name is not None:
                shutil.copyfile(forecaster_file, d / file_name)

        extra = {
            "forecaster": {**_forecaster_spec(forecaster), "file": file_name, "loader": loader},
            "variables": _variables(monthly),
            "pet": monthly["wb"].attrs.get("pet_method", "pev") if "wb" in monthly else None,
            "gates": bounds.model_dump(mode="json"),
            "history_months": n_keep,
            "indices": indices.names,
            "issue": issue,
            "alerts_file": alerts_name,
            "alerts": counts,
            "maps": maps,
            "map_files": map_names,
        }
        TwinStore.init(
            twin_dir,
            KIND,
            model_ref=model_ref,
            cursor=issue,
            config_hash=config,
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

    def monthly_history(self) -> xr.Dataset:
        """The stored monthly history (inputs, indices, statics), loaded; dims
        ``(time, lat, lon)`` (see :mod:`hydrology.twin_history`)."""
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
        data: DataInput,
        options: BaseModel | Mapping[str, Any] | None = None,
        *,
        wait: bool | float = False,
    ) -> DroughtUpdate:
        """Ingest one or more new months and issue a new forecast with alerts.

        Every check (files complete, names, units, time axis, grid, plausibility gates) runs
        before the transaction starts: refused data leave the twin directory untouched.

        Args:
            data: Daily canonical dataset or NetCDF file(s) of whole months directly after
                the cursor, on the twin's grid, with the variables the twin was built from.
            options: :class:`DroughtUpdateOptions` (or a mapping validated as one): gate
                overrides for this update only, e.g. ``{"gates": ["tp.max=2500"]}``,
                recorded in the update's summary. None: the stored gates.
            wait: False: refuse at once if another update holds the lock; True: wait for it;
                a number: wait up to that many seconds.

        Returns:
            The result; ``noop=True`` when these months (same content) were already ingested.

        Raises:
            DataError: Bad new data (message names the file, variable, value and bound).
            ConfigError: A gate override invalid on the stored gates (e.g. min above max).
            TwinsError: The months do not follow the cursor.
            TwinLockedError: Another update holds the lock.
        """
        overrides = _options(DroughtUpdateOptions, options).gates or None
        bounds = self.gates.with_overrides(overrides)
        required = list(self.store.state.extra.get("variables", ["tp"]))
        history = self.monthly_history()
        pet = self.store.state.extra.get("pet") or "pev"
        monthly, months, key, source = prepare_months(data, history, required, bounds, pet)
        with self.store.transaction(key, wait=wait) as txn:
            if txn.noop:
                assert txn.record is not None
                log.info("twin %s: months %s already ingested (no-op)", self.path, months)
                return self._result(txn.record, True)
            cursor = txn.state.cursor
            expected = next_month(cursor) if cursor else months[0]
            if months[0] != expected:
                what = "already ingested" if months[0] <= (cursor or "") else "gap"
                hint = "give the months after the cursor, in order, without gaps"
                if months[0] < expected <= months[-1]:  # a whole record, as providers publish
                    new_months = f"{expected}..{months[-1]}"
                    what = f"already ingested; the new months are {new_months}"
                    hint = (
                        f"give {new_months} only, e.g. hydrology.realdata.cut(FILE, OUT, "
                        f"months=('{expected}', '{months[-1]}'))"
                    )
                raise DataError(
                    f"{source}: first month {months[0]} does not follow the twin's cursor "
                    f"{cursor} ({what}; expected {expected}) (variable 'time')",
                    hint=hint,
                )
            new_hist = append_months(history, monthly, self.indices, txn.state.extra)
            fc = self.forecaster.forecast(new_hist)
            issue = months[-1]
            alerts = alerts_dataset(fc, issue, txn.state.model_ref)
            counts = alert_counts(alerts)
            alerts_name = f"alerts_{issue}.nc"
            write_nc(new_hist, txn.products_dir / _HISTORY)
            write_nc(alerts, txn.products_dir / alerts_name)
            extra = dict(txn.state.extra)
            map_names = save_alert_maps(alerts, txn.products_dir) if extra.get("maps") else []
            extra.update(issue=issue, alerts_file=alerts_name, alerts=counts, map_files=map_names)
            txn.update_state(cursor=issue, extra=extra)
            txn.summary.update(
                months=months, issue=issue, alerts=counts, source=source, maps=map_names
            )
            if overrides is not None:
                txn.summary["gates"] = bounds.model_dump(mode="json")
        assert txn.record is not None
        log.info("twin %s: ingested %s, forecast issued %s", self.path, months, issue)
        return self._result(txn.record, False)

    def _result(self, record: UpdateRecord, noop: bool) -> DroughtUpdate:
        issue = str(record.summary.get("issue"))
        products = self.store.version_dir(record.version) / "products"
        return DroughtUpdate(
            **UpdateResult.core_fields(record, noop),
            months=list(record.summary.get("months", [])),
            issue=issue,
            alerts_file=products / f"alerts_{issue}.nc",
            alerts=dict(record.summary.get("alerts", {})),
            maps=[products / n for n in record.summary.get("maps", [])],
            record=record,
        )

    # -- simulate -------------------------------------------------------------------------

    def simulate(self, scenario: BaseModel | Mapping[str, Any]) -> DroughtSimulation:
        """Forecast under a what-if scenario; the twin directory is not changed.

        Args:
            scenario: The :class:`Scenario` (or a mapping validated as one).

        Returns:
            The what-if: :attr:`DroughtSimulation.dataset` holds, per forecast target,
            ``<target>`` = scenario - baseline forecast, ``baseline_<target>`` and
            ``scenario_<target>``, dims ``(lead, lat, lon)`` (index units), plus
            ``delta_<index>`` = scenario - baseline of every index in the issue month, dims
            ``(lat, lon)``; its summary (means and extremes) prints as JSON.
        """
        sc = _options(Scenario, scenario)
        history = self.monthly_history()
        modified, span = apply_scenario(history, sc)
        first = None if span is None else span[0]
        indices = self.indices
        names = [n for n in indices.names if n in history]
        if first is not None:
            new_idx = transform_tail(indices, modified, modified.sizes["time"] - first)
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
        times = history["time"].values
        issue = month_label(times[-1])
        changed = (
            None if span is None else (month_label(times[span[0]]), month_label(times[span[1]]))
        )
        out.attrs = {
            "scenario": sc.model_dump_json(),
            "issue_month": issue,
            "modified_months": "" if changed is None else f"{changed[0]}..{changed[1]}",
        }
        return DroughtSimulation(
            scenario=sc.model_dump(mode="json"),
            dataset=out,
            issue_month=issue,
            modified_months=changed,
            variables=summarise(out),
        )

    # -- status ---------------------------------------------------------------------------

    def status(self) -> DroughtStatus:
        """Cursor, model, version and the last alerts; ``text`` is the printable form."""
        extra = self.store.state.extra
        issue = extra.get("issue")
        alerts = dict(extra.get("alerts", {}))
        lines = [f"issued      {issue}", "alerts (cells per category):"]
        for target, per_lead in alerts.items():
            for lead, cats in per_lead.items():
                text = "  ".join(f"{k}={v}" for k, v in cats.items())
                lines.append(f"  {target} lead {lead}: {text}")
        maps = [self.store.product_path(n) for n in extra.get("map_files", [])]
        lines += [f"map         {m}" for m in maps]
        core = TwinStatus.core_fields(self.store, lines)
        return DroughtStatus(**core, issue=issue, alerts=alerts, maps=maps)
