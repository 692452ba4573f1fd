"""Drought alerts of the twin: categories of forecast index values, as CF datasets.

An alert dataset (``alerts_<YYYY-MM>.nc`` in a twin version's products) holds, per forecast
target, the forecast values (``<target>``, dims ``(lead, lat, lon)``, dimensionless) and the
drought category (``category_<target>``, int8, CF ``flag_values`` 0/1/2/3 = none / moderate
(< -1) / severe (< -1.5) / extreme (< -2), -1 = no data).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

__all__ = [
    "ALERT_MEANINGS",
    "ALERT_THRESHOLDS",
    "AlertCounts",
    "alert_categories",
    "alert_counts",
    "alerts_dataset",
]

#: Category thresholds (strictly below): moderate, severe, extreme.
ALERT_THRESHOLDS: tuple[float, float, float] = (-1.0, -1.5, -2.0)
ALERT_MEANINGS = "none moderate severe extreme"

#: Cells per category, per target and lead: ``{target: {lead: {category: cells}}}``.
AlertCounts = dict[str, dict[str, dict[str, int]]]


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


def alerts_dataset(fc: xr.Dataset, issue: str, model_ref: str | None) -> xr.Dataset:
    """CF alert dataset: forecast values and categories per target, dims ``(lead, lat, lon)``.

    Args:
        fc: Forecast (:func:`hydrology.forecast.forecast_dataset`), one variable per target.
        issue: Issue month ``"YYYY-MM"``.
        model_ref: The model that made the forecast (recorded in the attributes).

    Returns:
        The alert dataset (see the module docstring).
    """
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


def alert_counts(alerts: xr.Dataset) -> AlertCounts:
    """Cells per category, per target and lead: ``{target: {lead: {category: n}}}``."""
    names = ALERT_MEANINGS.split()
    counts: AlertCounts = {}
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
