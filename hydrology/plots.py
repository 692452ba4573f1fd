"""Skill maps and drought-category maps (matplotlib, Agg; figures are returned, not shown).

Figures are built with :class:`matplotlib.figure.Figure` and an Agg canvas, not pyplot, so
nothing accumulates in pyplot's global state; the caller saves or logs them
(``fig.savefig(path)``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.figure import Figure

from hydrology.alerts import ALERT_THRESHOLDS

DROUGHT_COLOURS = ("#ffffff00", "#fcd37f", "#ff7f00", "#b30000")
"""No drought (transparent), moderate (yellow-orange), severe (orange), extreme (dark red)."""

DROUGHT_LABELS = ("none", "moderate", "severe", "extreme")


def _xy(da: xr.DataArray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if da.ndim != 2:
        raise ValueError(f"expected a 2-D (lat, lon) field, got dims {da.dims}")
    ydim, xdim = ("lat", "lon") if {"lat", "lon"} <= set(da.dims) else da.dims
    da = da.transpose(ydim, xdim)
    return da[xdim].values, da[ydim].values, np.ma.masked_invalid(da.values.astype(float))


def _figure(size: tuple[float, float] = (6.0, 4.5)) -> Figure:
    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def skill_map(
    per_cell_metric: xr.DataArray,
    title: str,
    vmin: float | None = None,
    vmax: float | None = None,
    cmap: str = "RdYlBu",
) -> Figure:
    """Map of a per-cell score (NSE, KGE, RMSE, CSI, ...).

    Args:
        per_cell_metric: Scores, dims ``(lat, lon)``; NaN cells (sea) are left blank.
        title: Axes title.
        vmin: Colour-scale minimum (default: data minimum, or -1 for efficiencies).
        vmax: Colour-scale maximum (default: data maximum).
        cmap: Matplotlib colormap name.

    Returns:
        Figure with one map axes and one colorbar axes.
    """
    x, y, v = _xy(per_cell_metric)
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    mesh = ax.pcolormesh(x, y, v, shading="auto", cmap=cmap, vmin=vmin, vmax=vmax)
    label = per_cell_metric.attrs.get("long_name", per_cell_metric.name or "")
    fig.colorbar(mesh, ax=ax, label=str(label))
    ax.set_title(title)
    ax.set_xlabel("lon")
    ax.set_ylabel("lat")
    ax.set_aspect("auto")
    return fig


def drought_map(
    index_slice: xr.DataArray,
    categories: Sequence[float] = (-1.0, -1.5, -2.0),
    title: str | None = None,
) -> Figure:
    """Map of drought categories for one month of a standardised index.

    Categories (for the default thresholds): moderate ``-1.5 < x <= -1``, severe
    ``-2 < x <= -1.5``, extreme ``x <= -2``; above the first threshold is "none".

    Args:
        index_slice: Index values for one time, dims ``(lat, lon)``.
        categories: Thresholds from mild to extreme, decreasing (three of them).
        title: Axes title (default: the index name and month).

    Returns:
        Figure with one map axes and one categorical colorbar axes.
    """
    cats = sorted((float(c) for c in categories), reverse=True)
    if len(cats) != 3:
        raise ValueError("need three thresholds: moderate, severe, extreme")
    x, y, v = _xy(index_slice)
    # Category code: 0 none, 1 moderate, 2 severe, 3 extreme.
    code = np.ma.masked_array(
        np.sum([v.filled(np.inf) <= c for c in cats], axis=0).astype(float), mask=v.mask
    )
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    cmap = ListedColormap(list(DROUGHT_COLOURS))
    norm = BoundaryNorm([-0.5, 0.5, 1.5, 2.5, 3.5], cmap.N)
    mesh = ax.pcolormesh(x, y, code, shading="auto", cmap=cmap, norm=norm)
    cbar = fig.colorbar(mesh, ax=ax, ticks=[0, 1, 2, 3])
    cbar.ax.set_yticklabels(
        [
            f"{DROUGHT_LABELS[0]} (> {cats[0]:g})",
            f"{DROUGHT_LABELS[1]} (<= {cats[0]:g})",
            f"{DROUGHT_LABELS[2]} (<= {cats[1]:g})",
            f"{DROUGHT_LABELS[3]} (<= {cats[2]:g})",
        ]
    )
    if title is None:
        when = ""
        if "time" in index_slice.coords and index_slice["time"].size == 1:
            when = " " + str(index_slice["time"].values)[:7]
        title = f"{index_slice.name or 'index'}{when}: drought categories"
    ax.set_title(title)
    ax.set_xlabel("lon")
    ax.set_ylabel("lat")
    return fig


def alert_map(alerts: xr.Dataset, target: str) -> Figure:
    """Map of a twin's drought alerts for one target: one panel per lead.

    Draws the stored categories (``category_<target>`` of :mod:`hydrology.alerts`: 0 none,
    1 moderate, 2 severe, 3 extreme; no data blank), not a recomputation, so the map shows
    exactly what the alert file says.

    Args:
        alerts: An alert dataset (``alerts_<YYYY-MM>.nc``), dims ``(lead, lat, lon)``.
        target: The forecast target, e.g. ``"spi_3"``.

    Returns:
        Figure with one map axes per lead and one categorical colorbar axes.

    Raises:
        KeyError: ``alerts`` has no ``category_<target>``.
    """
    cat = alerts[f"category_{target}"]
    leads = [int(k) for k in alerts["lead"].values]
    fig = _figure((3.2 * len(leads) + 1.6, 3.6))
    cmap = ListedColormap(["#ffffff", *DROUGHT_COLOURS[1:]])  # none white, no data grey
    norm = BoundaryNorm([-0.5, 0.5, 1.5, 2.5, 3.5], cmap.N)
    axes = fig.subplots(1, len(leads), squeeze=False)[0]
    mesh = None
    for ax, lead in zip(axes, leads, strict=True):
        one = cat.sel(lead=lead)
        x, y, code = _xy(one.where(one >= 0))
        mesh = ax.pcolormesh(x, y, code, shading="auto", cmap=cmap, norm=norm)
        valid = ""
        if "valid_time" in one.coords:
            valid = f", valid {str(one['valid_time'].values)[:7]}"
        ax.set_title(f"lead {lead}{valid}", fontsize=9)
        ax.set_xlabel("lon")
        ax.set_aspect("equal")
        ax.set_facecolor("#d9d9d9")
    axes[0].set_ylabel("lat")
    assert mesh is not None
    cbar = fig.colorbar(mesh, ax=list(axes), ticks=[0, 1, 2, 3])
    t = [float(v) for v in np.atleast_1d(cat.attrs.get("thresholds", ALERT_THRESHOLDS))]
    cbar.ax.set_yticklabels(
        [
            f"{DROUGHT_LABELS[0]} (>= {t[0]:g})",
            *(f"{DROUGHT_LABELS[i + 1]} (< {v:g})" for i, v in enumerate(t)),
        ]
    )
    issue = alerts.attrs.get("issue_month", "")
    fig.suptitle(f"{target} drought alerts issued {issue} (grey: no data)")
    return fig


def alert_map_file(issue: str, target: str) -> str:
    """File name of the alert map of ``target`` issued in ``issue`` (``"YYYY-MM"``)."""
    return f"alerts_{issue}_{target}.png"


def save_alert_maps(alerts: xr.Dataset, directory: Path, dpi: int = 80) -> list[str]:
    """Write :func:`alert_map` of every target of ``alerts`` as PNG into ``directory``.

    Args:
        alerts: An alert dataset (:mod:`hydrology.alerts`).
        directory: Existing directory.
        dpi: Resolution of the PNG files.

    Returns:
        The file names, ``alerts_<issue>_<target>.png``, in the order of the targets.
    """
    issue = str(alerts.attrs.get("issue_month", "unknown"))
    names = []
    for var in alerts.data_vars:
        if not str(var).startswith("category_"):
            continue
        target = str(var)[len("category_") :]
        name = alert_map_file(issue, target)
        alert_map(alerts, target).savefig(directory / name, dpi=dpi)
        names.append(name)
    return names
