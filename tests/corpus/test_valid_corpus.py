"""Valid variants that must be ACCEPTED: the same month (or segment) written another ordinary
way goes in with exit 0 and, where the values are the same, gives the reference products.

Drought twin: the reference is month 2007-11 as NetCDF-4 from ``write_netcdf``; noise twin: the
reference is segment 1 as the twin's multi-channel HDF5. Model calendars and an ensemble
dimension may be supported or refused (issue 14); either way, no traceback and no half-state.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import h5py
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from gwpy.timeseries import TimeSeries, TimeSeriesDict

from gravwave import synthetic as syn
from gravwave.io import read_multichannel_hdf5, write_multichannel_hdf5
from gravwave.twin import NoiseTwin
from hydrology.synthetic import write_netcdf

NOV = "era5land_2007-11.nc"
INPUTS = ("pr", "wb", "sm", "t2m")
INDICES = ("spi_1", "spi_3", "spi_6", "ssmi_1")

# Tolerances, derived (float32 unit roundoff u = 2**-24 = 6.0e-8):
#: A value written through one float32 rounding in another unit (mm, a flux, degC, float64
#: read as float32 sums) and aggregated over <= 31 days with float32 summation is off by at
#: most 31 u = 1.9e-6 relative (naive summation bound); 2e-6.
RTOL_INPUTS = 2e-6
#: A monthly temperature near 280 K stored in degC or degF and converted back: two roundings
#: at <= 512 K (ulp 3.05e-5 K each) and one at <= 128 degF (ulp 7.6e-6 x 5/9) -> 6.5e-5 K.
ATOL_T2M = 1e-4
#: SPI/SSMI = Phi^-1(F(x)); dz = x f(x) / phi(z) * dx/x. For the fitted gamma and normal
#: distributions x f(x) / phi(z) stays below ~10 for |z| <= 3.5 (shape <= 100), so a 2e-6
#: relative input change moves an index by <= 2e-5; 1e-4 leaves a factor 5.
ATOL_INDEX = 1e-4
#: Witnesses stored as float32: each sample off by <= u relative; the Wiener prediction is a
#: sum over 4 channels x 64 taps, whose rounding error relative to its RMS is <= u x
#: sqrt(4 x 64) = 1e-6 for incoherent terms; the prediction's RMS is below the cleaned
#: strain's (it is a band-limited part of it), so the cleaned strain moves by <= 1e-6 of its
#: RMS; 1e-5 leaves a factor 10.
RTOL_FLOAT32_WITNESS = 1e-5


class DroughtWorld(Protocol):
    """What this module uses of the drought world (tests/corpus/conftest.py)."""

    history: xr.Dataset
    alerts: xr.Dataset

    def month(self, month: str) -> xr.Dataset:
        """A deep copy of one month of the daily data."""
        ...


class NoiseWorld(Protocol):
    """What this module uses of the noise world (tests/corpus/conftest.py)."""

    cleaned: np.ndarray
    quality: dict[str, Any]

    def series(self, k: int = 1) -> dict[str, TimeSeries]:
        """Copies of segment ``k``'s channels, strain first."""
        ...


def _products(twin: Path) -> tuple[xr.Dataset, xr.Dataset]:
    pdir = twin / "versions" / "v000001" / "products"
    with (
        xr.open_dataset(pdir / "history.nc") as h,
        xr.open_dataset(pdir / "alerts_2007-11.nc") as a,
    ):
        return h.load(), a.load()


# ------------------------------------------------------------------------ comparisons


def _exact(w: DroughtWorld, hist: xr.Dataset, alerts: xr.Dataset) -> None:
    xr.testing.assert_equal(hist, w.history)
    xr.testing.assert_equal(alerts, w.alerts)


def _t2m_close(w: DroughtWorld, hist: xr.Dataset, alerts: xr.Dataset) -> None:
    xr.testing.assert_equal(hist.drop_vars("t2m"), w.history.drop_vars("t2m"))
    xr.testing.assert_allclose(hist["t2m"], w.history["t2m"], rtol=0, atol=ATOL_T2M)
    xr.testing.assert_equal(alerts, w.alerts)


def _close(w: DroughtWorld, hist: xr.Dataset, alerts: xr.Dataset) -> None:
    for v in INPUTS:
        xr.testing.assert_allclose(hist[v], w.history[v], rtol=RTOL_INPUTS, atol=0)
    for v in INDICES:
        xr.testing.assert_allclose(hist[v], w.history[v], rtol=0, atol=ATOL_INDEX)
    for v in ("spi_3", "ssmi_1"):  # the forecasts; categories may flip at a threshold
        xr.testing.assert_allclose(alerts[v], w.alerts[v], rtol=0, atol=ATOL_INDEX)


def _packing(da: xr.DataArray) -> tuple[float, float]:
    """``(scale_factor, add_offset)`` packing ``da`` into int16 (-32767 kept for the fill)."""
    lo, hi = float(da.min()), float(da.max())
    return (hi - lo) / 65000.0 or 1.0, (hi + lo) / 2


def _packed_close(w: DroughtWorld, hist: xr.Dataset, alerts: xr.Dataset) -> None:
    """Packing rounds each daily value by <= scale/2, so each monthly mean moves by <= scale/2
    (pr, wb in mm/d: x1000 from m; wb = P - PET sums two such errors)."""
    nov = w.month("2007-11")
    s = {v: _packing(nov[v])[0] for v in ("tp", "pev", "swvl1", "t2m")}
    month = hist.time.dt.strftime("%Y-%m") == "2007-11"
    atol = {
        "pr": 1000 * s["tp"] / 2,
        "wb": 1000 * (s["tp"] + s["pev"]) / 2,
        "sm": s["swvl1"] / 2,
        "t2m": s["t2m"] / 2,
    }
    for v, tol in atol.items():
        got, want = hist[v].where(month, drop=True), w.history[v].where(month, drop=True)
        xr.testing.assert_allclose(got, want, rtol=RTOL_INPUTS, atol=tol)


# ------------------------------------------------------------------- drought builders

Build = Callable[[DroughtWorld, Path], list[Path]]


def _nc(fn: Callable[[xr.Dataset], xr.Dataset], **kw: Any) -> Build:
    return lambda w, d: [write_netcdf(fn(w.month("2007-11")), d / NOV, **kw)]


def _to_netcdf(fn: Callable[[xr.Dataset], xr.Dataset], name: str = NOV, **kw: Any) -> Build:
    def build(w: DroughtWorld, d: Path) -> list[Path]:
        p = d / name
        fn(w.month("2007-11")).to_netcdf(p, **kw)
        return [p]

    return build


def _same(ds: xr.Dataset) -> xr.Dataset:
    return ds


def _units(var: str, units: str, convert: Callable[[xr.DataArray], xr.DataArray]) -> Callable:
    def fn(ds: xr.Dataset) -> xr.Dataset:
        attrs = {**ds[var].attrs, "units": units}
        ds[var] = convert(ds[var].astype(np.float64)).astype(np.float32).assign_attrs(attrs)
        return ds

    return fn


def _noon(ds: xr.Dataset) -> xr.Dataset:
    return ds.assign_coords(time=ds.time + pd.Timedelta(hours=12))


def _cds(ds: xr.Dataset) -> xr.Dataset:
    """The CDS layout: latitude/longitude/valid_time, descending latitude, scalar
    ``number`` and ``expver`` coordinates."""
    ds = ds.rename({"lat": "latitude", "lon": "longitude", "time": "valid_time"})
    ds = ds.isel(latitude=slice(None, None, -1))
    return ds.assign_coords(number=0, expver=("valid_time", ["0001"] * ds.sizes["valid_time"]))


def _extra(ds: xr.Dataset) -> xr.Dataset:
    u10 = (ds["t2m"] * 0 + 3.5).assign_attrs(units="m s-1", long_name="10 m wind")
    return ds.assign(
        u10=u10, crs=xr.DataArray(0, attrs={"grid_mapping_name": "latitude_longitude"})
    )


def _halves(w: DroughtWorld, d: Path) -> list[Path]:
    nov = w.month("2007-11")
    return [
        write_netcdf(nov.isel(time=slice(0, 15)), d / "era5land_2007-11-a.nc"),
        write_netcdf(nov.isel(time=slice(15, None)), d / "era5land_2007-11-b.nc"),
    ]


def _zarr(w: DroughtWorld, d: Path) -> list[Path]:
    p = d / "era5land_2007-11.zarr"
    w.month("2007-11").to_zarr(p)
    return [p]


def _encoded(enc: Callable[[xr.Dataset], dict[str, dict[str, Any]]]) -> Build:
    def build(w: DroughtWorld, d: Path) -> list[Path]:
        ds = w.month("2007-11")
        p = d / NOV
        ds.to_netcdf(p, encoding=enc(ds))
        return [p]

    return build


def _fill_32767(ds: xr.Dataset) -> dict[str, dict[str, Any]]:
    return {str(v): {"_FillValue": -32767.0} for v in ds.data_vars}


def _int16(ds: xr.Dataset) -> dict[str, dict[str, Any]]:
    enc = {}
    for v in ("tp", "pev", "e", "swvl1", "t2m"):
        scale, offset = _packing(ds[v])
        enc[v] = {"dtype": "int16", "scale_factor": scale, "add_offset": offset}
        enc[v]["_FillValue"] = np.int16(-32767)
    return enc


def _hours_since_1900(ds: xr.Dataset) -> dict[str, dict[str, Any]]:
    return {"time": {"units": "hours since 1900-01-01 00:00:00", "dtype": "int32"}}


def _calendar(name: str) -> Callable[[xr.Dataset], xr.Dataset]:
    """November 2007 on a model calendar (the same 30 dates exist in all of them)."""

    def fn(ds: xr.Dataset) -> xr.Dataset:
        times = xr.date_range("2007-11-01", periods=30, calendar=name, use_cftime=True)
        return ds.assign_coords(time=times)

    return fn


def _members(ds: xr.Dataset) -> xr.Dataset:
    """Every dynamic variable with an ensemble dim ``number`` of two identical members."""
    for v in ("tp", "t2m", "pev", "e", "swvl1"):
        da = xr.concat([ds[v], ds[v]], dim="number").assign_coords(number=[0, 1])
        ds[v] = da.assign_attrs(ds[v].attrs)
    return ds


@dataclass(frozen=True)
class Ok:
    """A valid drought input and how its products compare with the reference."""

    id: str
    build: Build
    compare: Callable[[DroughtWorld, xr.Dataset, xr.Dataset], None]


M_PER_DAY_TO_KG_M2_S = 1000.0 / 86400.0

DROUGHT_OK: list[Ok] = [
    Ok("reference", _nc(_same), _exact),
    Ok("t2m-in-degC", _nc(_units("t2m", "degC", lambda t: t - 273.15)), _t2m_close),
    Ok("t2m-in-degF", _nc(_units("t2m", "degF", lambda t: t * 1.8 - 459.67)), _t2m_close),
    Ok("daily-means-stamped-12:00", _nc(_noon), _exact),
    Ok("float64", _nc(lambda ds: ds.astype(np.float64)), _close),
    Ok("netcdf3-classic", _to_netcdf(_same, format="NETCDF3_CLASSIC"), _exact),
    Ok("netcdf4-classic", _to_netcdf(_same, format="NETCDF4_CLASSIC"), _exact),
    Ok("netcdf4-contiguous-uncompressed", _to_netcdf(_same), _exact),
    Ok("chunked-1-day-zlib-9", _nc(_same, chunk_time=1, chunk_space=5, complevel=9), _exact),
    Ok("lat-descending", _nc(lambda ds: ds.isel(lat=slice(None, None, -1))), _exact),
    Ok("cds-names-number-expver", _nc(_cds), _exact),
    Ok("extra-unrelated-variables", _nc(_extra), _exact),
    Ok("without-statics", _nc(lambda ds: ds.drop_vars(["lsm", "z"])), _exact),
    Ok("swvl1-units-1", _nc(_units("swvl1", "1", lambda x: x)), _exact),
    Ok("tp-in-mm", _nc(_units("tp", "mm", lambda x: x * 1000.0)), _close),
    Ok(
        "tp-as-flux-kg-m2-s",
        _nc(_units("tp", "kg m-2 s-1", lambda x: x * M_PER_DAY_TO_KG_M2_S)),
        _close,
    ),
    Ok("two-half-month-files", _halves, _exact),
    Ok("time-int32-hours-since-1900", _encoded(_hours_since_1900), _exact),
    Ok("declared-fill-minus-32767", _encoded(_fill_32767), _exact),
    Ok("packed-int16-scale-offset", _encoded(_int16), _packed_close),
    Ok("zarr-store", _zarr, _exact),
]


@pytest.mark.parametrize("case", DROUGHT_OK, ids=lambda c: c.id)
def test_valid_month_is_accepted(
    case: Ok, drought: DroughtWorld, drought_twin: Path, tmp_path: Path, cli: Callable
) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    res = cli(["twin", "update", drought_twin, "--data", *case.build(drought, inputs)])
    assert res.rc == 0, res.observed()
    assert "Traceback" not in res.out + res.err
    assert json.loads(res.out.strip().splitlines()[-1])["cursor"] == "2007-11"
    case.compare(drought, *_products(drought_twin))


EITHER: list[tuple[str, Callable[[xr.Dataset], xr.Dataset], tuple[str, ...]]] = [
    ("calendar-noleap", _calendar("noleap"), ("time", "noleap")),
    ("calendar-360_day", _calendar("360_day"), ("time", "360")),
    ("ensemble-2-identical-members", _members, ("number",)),
]


@pytest.mark.parametrize(("fn", "culprit"), [e[1:] for e in EITHER], ids=[e[0] for e in EITHER])
def test_model_layouts_are_supported_or_refused_with_a_message(
    fn: Callable[[xr.Dataset], xr.Dataset],
    culprit: tuple[str, ...],
    drought: DroughtWorld,
    drought_twin: Path,
    tmp_path: Path,
    cli: Callable,
    refuse: Callable[..., str],
    drought_ok: Callable[[Path], None],
) -> None:
    """Supported: the same dates and values give the reference products. Refused: exit 3,
    one line naming the file and the time axis / ensemble dimension, the twin unchanged."""
    path = write_netcdf(fn(drought.month("2007-11")), tmp_path / NOV)
    probe = tmp_path / "probe"
    shutil.copytree(drought_twin, probe)
    res = cli(["twin", "update", probe, "--data", path])
    if res.rc == 0:
        _exact(drought, *_products(probe))
        return
    refuse(["twin", "update", drought_twin, "--data", path], 3, [NOV, culprit], [drought_twin])
    drought_ok(drought_twin)


# ----------------------------------------------------------------------------- noise

S = syn.STRAIN_CHANNEL


def _h5(
    chans: dict[str, TimeSeries],
    p: Path,
    store: Callable[[h5py.File, str, TimeSeries], h5py.Dataset] | None = None,
) -> Path:
    """Channels written one dataset each, with ``store`` choosing how (default: the
    twin's own writer)."""
    if store is None:
        return write_multichannel_hdf5(p, TimeSeriesDict(chans))
    with h5py.File(p, "w", track_order=True) as h5:
        for c, ts in chans.items():
            store(h5, c, ts)
    return p


def _plain(h5: h5py.File, c: str, ts: TimeSeries) -> h5py.Dataset:
    ds = h5.create_dataset(c, data=ts.value)
    ds.attrs.update(channel=c, sample_rate=4096.0, t0=float(ts.t0.value), unit="")
    return ds


def _gzip(h5: h5py.File, c: str, ts: TimeSeries) -> h5py.Dataset:
    ds = h5.create_dataset(c, data=ts.value, chunks=(4096,), compression="gzip", shuffle=True)
    ds.attrs.update(channel=c, sample_rate=4096.0, t0=float(ts.t0.value), unit="")
    return ds


def _typed_attrs(h5: h5py.File, c: str, ts: TimeSeries) -> h5py.Dataset:
    """An integer rate, a one-element array t0, byte-string channel and unit."""
    ds = h5.create_dataset(c, data=ts.value)
    ds.attrs["sample_rate"] = np.int32(4096)
    ds.attrs["t0"] = np.array([float(ts.t0.value)])
    ds.attrs["channel"] = np.bytes_(c.encode())
    ds.attrs["unit"] = np.bytes_(b"")
    return ds


def _no_channel_attr(h5: h5py.File, c: str, ts: TimeSeries) -> h5py.Dataset:
    ds = h5.create_dataset(c, data=ts.value)
    ds.attrs.update(sample_rate=4096.0, t0=float(ts.t0.value))
    return ds


def _float32_witness(h5: h5py.File, c: str, ts: TimeSeries) -> h5py.Dataset:
    ds = _plain(h5, c, ts) if c == S else h5.create_dataset(c, data=ts.value.astype(np.float32))
    ds.attrs.update(channel=c, sample_rate=4096.0, t0=float(ts.t0.value), unit="")
    return ds


def _reversed(chans: dict[str, TimeSeries]) -> dict[str, TimeSeries]:
    return dict(reversed(list(chans.items())))


def _with_extra(chans: dict[str, TimeSeries]) -> dict[str, TimeSeries]:
    strain = chans[S]
    rng = np.random.default_rng(3)
    extra = {
        f"V1:EXTRA_{i}": TimeSeries(
            rng.standard_normal(len(strain)), t0=strain.t0, sample_rate=4096
        )
        for i in range(2)
    }
    return {**chans, **extra}


NoiseBuild = Callable[[NoiseWorld, Path], Path]


def _gwf(w: NoiseWorld, d: Path) -> Path:
    chans = w.series(1)
    p = d / "V-SEG-1262304034-16.gwf"
    for c, ts in chans.items():
        ts.name = c
        ts.channel = c
    TimeSeriesDict(chans).write(str(p), format="gwf")
    return p


NOISE_OK: list[tuple[str, NoiseBuild, bool]] = [
    ("twins-writer", lambda w, d: _h5(w.series(), d / "V-SEG-1.h5"), True),
    ("channels-in-reverse-order", lambda w, d: _h5(_reversed(w.series()), d / "a.h5"), True),
    ("extra-unrelated-channels", lambda w, d: _h5(_with_extra(w.series()), d / "a.h5"), True),
    ("gzip-chunked-datasets", lambda w, d: _h5(w.series(), d / "a.h5", _gzip), True),
    ("suffix-hdf5", lambda w, d: _h5(w.series(), d / "V-SEG-1.hdf5", _plain), True),
    (
        "int-rate-array-t0-byte-strings",
        lambda w, d: _h5(w.series(), d / "a.h5", _typed_attrs),
        True,
    ),
    ("no-channel-attribute", lambda w, d: _h5(w.series(), d / "a.h5", _no_channel_attr), True),
    ("gwf-frame", _gwf, True),
    ("witnesses-float32", lambda w, d: _h5(w.series(), d / "a.h5", _float32_witness), False),
]


@pytest.mark.parametrize(
    ("build", "exact"), [c[1:] for c in NOISE_OK], ids=[c[0] for c in NOISE_OK]
)
def test_valid_segment_is_accepted(
    build: NoiseBuild,
    exact: bool,
    noise: NoiseWorld,
    noise_twin: Path,
    tmp_path: Path,
    cli: Callable,
) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    res = cli(["twin", "update", noise_twin, "--data", build(noise, inputs)])
    assert res.rc == 0, res.observed()
    assert "Traceback" not in res.out + res.err
    record = json.loads(res.out.strip().splitlines()[-1])
    assert record["version"] == 2
    path = NoiseTwin.open(noise_twin).cleaned_path(2)
    cleaned = next(iter(read_multichannel_hdf5(path).values())).value
    if exact:
        np.testing.assert_array_equal(cleaned, noise.cleaned)
        assert record["asd_ratio"] == noise.quality["asd_ratio"]
    else:
        rms = float(np.sqrt(np.mean(noise.cleaned**2)))
        diff = float(np.sqrt(np.mean((cleaned - noise.cleaned) ** 2)))
        assert diff <= RTOL_FLOAT32_WITNESS * rms, (diff, rms)


# ------------------------------------------------------------------------------ config


def test_config_with_bom_and_crlf_reads_as_plain(
    tmp_path: Path, cli: Callable, workdir: Path
) -> None:
    """A UTF-8 BOM and Windows line ends (editors on Windows) give the same resolved config."""
    text = "name: crlf\ntrain:\n  epochs: 2\n"
    plain, windows = tmp_path / "plain.yaml", tmp_path / "windows.yaml"
    plain.write_text(text)
    windows.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    outs: list[str] = []
    for config in (plain, windows):
        res = cli(["config", config, "train.batch_size=8"])
        assert res.rc == 0, res.observed()
        outs.append(res.out)
    assert outs[0] == outs[1]
