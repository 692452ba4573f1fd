"""Typed options and results of the drought twin (the twin contract's models).

Options become flags of ``twins twin init|update`` (:mod:`twins.twin.commands`); results print
as one line of JSON there and are what :class:`hydrology.twin.DroughtTwin` returns in Python.

* :class:`DroughtInit`: ``twins twin init DIR --kind hydrology --run RUN_DIR [--data FILE ...]
  [--gates KEY=VALUE ...] [--indices NAME ...] [--no-maps]``;
* :class:`DroughtUpdateOptions`: ``twins twin update DIR --data FILE ... [--gates KEY=VALUE ...]``;
* :class:`DroughtUpdate`, :class:`DroughtSimulation`, :class:`DroughtStatus`: the results.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import xarray as xr
from pydantic import BaseModel, ConfigDict, Field, field_validator

from hydrology.alerts import AlertCounts
from hydrology.gates import Gates
from hydrology.indices import check_index_names
from twins.errors import TwinsError
from twins.twin import SimulationResult, TwinStatus, UpdateRecord, UpdateResult

__all__ = [
    "TWIN_INDICES",
    "DroughtInit",
    "DroughtSimulation",
    "DroughtStatus",
    "DroughtUpdate",
    "DroughtUpdateOptions",
    "VariableSummary",
    "summarise",
]

#: Indices a twin keeps by default besides its forecaster's targets (SPEI is left out: its
#: fit takes minutes on a 50 x 50 grid).
TWIN_INDICES = ("spi_1", "spi_3", "spi_6", "ssmi_1")


def _gate_items(items: list[str]) -> list[str]:
    """Refuse gate overrides that are malformed, unknown or invalid on the default gates."""
    try:
        Gates().with_overrides(items)
    except TwinsError as exc:
        raise ValueError(str(exc)) from None
    return items


class DroughtInit(BaseModel):
    """A twin from a finished training run: its forecaster, the indices it was trained on
    (calibrated over the run's training period) and a daily record.

    Attributes:
        run: Finished ``twins train`` run directory of ``hydrology.task:DroughtForecast``
            (``config.yaml``, ``model.pt``).
        data: Daily NetCDF file(s) of whole months the twin starts from (its last month
            becomes the cursor), on the run's grid; default: the data the run trained on.
        gates: Plausibility bounds of this twin's input, ``KEY=VALUE`` (e.g. ``tp.max=2500``),
            kept for every update.
        indices: Drought indices the twin keeps besides the forecaster's targets; None: those
            of :data:`TWIN_INDICES` the record holds the variables for (a precipitation-only
            record such as GPCC gives SPI only). A named index whose variable the record
            lacks is refused.
        maps: Draw the alert maps of every version as PNG in its products
            (``alerts_<YYYY-MM>_<target>.png``, one panel per lead).
    """

    model_config = ConfigDict(extra="forbid")

    run: Path = Field(description="finished training run directory (config.yaml, model.pt)")
    data: list[Path] | None = Field(
        None, description="daily NetCDF record, whole months (default: the run's data)"
    )
    gates: list[str] = Field(
        default_factory=list, description="plausibility bounds KEY=VALUE, e.g. tp.max=2500"
    )
    indices: list[str] | None = Field(
        None,
        description="indices kept besides the forecaster's targets (default: those of "
        "spi_1 spi_3 spi_6 ssmi_1 the record can give)",
    )
    maps: bool = Field(
        True, description="draw each version's alert maps as PNG beside its alert file"
    )

    @field_validator("gates")
    @classmethod
    def _gates(cls, v: list[str]) -> list[str]:
        return _gate_items(v)

    @field_validator("indices")
    @classmethod
    def _indices(cls, v: list[str] | None) -> list[str] | None:
        if v is not None:
            check_index_names(v)
        return v


class DroughtUpdateOptions(BaseModel):
    """Options of an update besides its data.

    Attributes:
        gates: Overrides of the twin's stored gates for this update only, ``KEY=VALUE``
            (e.g. ``tp.max=2500``); recorded in the update's summary.
    """

    model_config = ConfigDict(extra="forbid")

    gates: list[str] = Field(
        default_factory=list,
        description="gate overrides for this update only, KEY=VALUE, e.g. tp.max=2500",
    )

    @field_validator("gates")
    @classmethod
    def _gates(cls, v: list[str]) -> list[str]:
        return _gate_items(v)


class DroughtUpdate(UpdateResult):
    """What an update did (``noop``: these months, same content, were already ingested).

    Attributes:
        months: Months ingested, ``"YYYY-MM"``.
        issue: Issue month of the new forecast.
        alerts_file: The alert NetCDF of this version.
        alerts: Cells per category per target and lead.
        maps: The alert maps (PNG) of this version; empty when the twin draws none.
        record: The committed store record (not printed).
    """

    json_exclude: ClassVar[frozenset[str]] = frozenset({"record"})

    months: list[str]
    issue: str
    alerts_file: Path
    alerts: AlertCounts
    maps: list[Path] = Field(default_factory=list)
    record: UpdateRecord | None = None


class VariableSummary(BaseModel):
    """Mean and extremes of one variable of a what-if over its finite values.

    Attributes:
        mean: Mean (None when no value is finite).
        min: Minimum.
        max: Maximum.
        mean_per_lead: Mean per lead (months, as strings) for forecast variables.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    mean: float | None
    min: float | None
    max: float | None
    mean_per_lead: dict[str, float | None] | None = None


def summarise(ds: xr.Dataset) -> dict[str, VariableSummary]:
    """Per variable of a what-if dataset: the mean and extremes, and the mean per lead.

    Args:
        ds: :attr:`DroughtSimulation.dataset` (or part of it).

    Returns:
        ``{variable: VariableSummary}``, index units (dimensionless).
    """
    out = {}
    for name in ds.data_vars:
        v = np.asarray(ds[name].values, dtype=np.float64)
        fin = v[np.isfinite(v)]
        per_lead = None
        if "lead" in ds[name].dims:
            axis = ds[name].dims.index("lead")
            per_lead = {}
            for i, k in enumerate(ds["lead"].values):
                row = np.take(v, i, axis=axis)
                per_lead[str(int(k))] = float(np.nanmean(row)) if np.isfinite(row).any() else None
        out[str(name)] = VariableSummary(
            mean=float(fin.mean()) if fin.size else None,
            min=float(fin.min()) if fin.size else None,
            max=float(fin.max()) if fin.size else None,
            mean_per_lead=per_lead,
        )
    return out


class DroughtSimulation(SimulationResult):
    """A what-if against the baseline forecast; the twin is unchanged.

    Attributes:
        dataset: Per forecast target ``<target>`` = scenario - baseline forecast,
            ``baseline_<target>`` and ``scenario_<target>``, dims ``(lead, lat, lon)``, and
            ``delta_<index>`` = scenario - baseline of every index in the issue month, dims
            ``(lat, lon)``; index units (not printed).
        issue_month: The month the forecasts are issued from.
        modified_months: First and last month whose inputs the scenario changed (None: it
            changed none); the indices of the months after them change too (accumulation).
        variables: Mean and extremes of every variable of ``dataset``.
    """

    json_exclude: ClassVar[frozenset[str]] = frozenset({"dataset"})

    dataset: xr.Dataset
    issue_month: str
    modified_months: tuple[str, str] | None
    variables: dict[str, VariableSummary]


class DroughtStatus(TwinStatus):
    """Where a drought twin stands.

    Attributes:
        issue: Issue month of the latest forecast.
        alerts: Its cells per category per target and lead.
        maps: Its alert maps (PNG); empty when the twin draws none.
    """

    issue: str | None
    alerts: AlertCounts
    maps: list[Path] = Field(default_factory=list)
