"""Skill maps and drought-category maps (matplotlib, Agg; figures are returned, not shown).

Figures are built with :class:`matplotlib.figure.Figure` and an Agg canvas, not pyplot, so
nothing accumulates in pyplot's global state; the caller saves or logs them
(``fig.savefig(path)``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.figure import Figure

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
