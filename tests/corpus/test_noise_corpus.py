"""Corpus of bad segment files for the noise twin (``twins twin update DIR --data FILE``).

The twin has consumed segment 0; segment 1 is the valid next one. Every case is refused with
exit 3 and one line naming the file and the channel (or attribute), leaves the twin
byte-for-byte unchanged, and segment 1 goes in afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import h5py
import numpy as np
import pytest
import xarray as xr
from gwpy.timeseries import TimeSeries, TimeSeriesDict

from gravwave import synthetic as syn
from gravwave.io import write_multichannel_hdf5

STRAIN = syn.STRAIN_CHANNEL
MAG = syn.MAG_CHANNEL
MAINS = syn.MAINS_CHANNEL
ANG = syn.ANGULAR_CHANNEL
SEG = "V-SEG-1.h5"


class NoiseWorld(Protocol):
    """What the builders use of the session's noise world (tests/corpus/conftest.py)."""

    segments: list[syn.SyntheticSegment]

    def series(self, k: int = 1) -> dict[str, TimeSeries]:
        """Copies of segment ``k``'s channels, strain first."""
        ...


Build = Callable[[NoiseWorld, Path], Path]


@dataclass(frozen=True)
class Bad:
    """One refused segment file.

    Attributes:
        id: Test id.
        build: Writes the file into a directory and returns its path.
        names: What the error line must name besides the file (a tuple: any of).
    """

    id: str
    build: Build
    names: tuple[str | tuple[str, ...], ...]


# ------------------------------------------------------------------------------- helpers


def _write(chans: dict[str, TimeSeries], d: Path, name: str = SEG) -> Path:
    return write_multichannel_hdf5(d / name, TimeSeriesDict(chans))


def _samples(channel: str, fn: Callable[[np.ndarray], None], k: int = 1) -> Build:
    """Segment ``k`` with ``fn`` applied in place to one channel's samples."""

    def build(w: NoiseWorld, d: Path) -> Path:
        chans = w.series(k)
        fn(chans[channel].value)
        return _write(chans, d)

    return build


def _set(index: int | slice, value: float) -> Callable[[np.ndarray], None]:
    def fn(x: np.ndarray) -> None:
        x[index] = value

    return fn


def _tamper(fn: Callable[[h5py.File], None]) -> Build:
    """Segment 1 written in the twin's layout, then edited with h5py."""

    def build(w: NoiseWorld, d: Path) -> Path:
        p = _write(w.series(1), d)
        with h5py.File(p, "r+") as h5:
            fn(h5)
        return p

    return build


def _attr(channel: str, name: str, value: object) -> Build:
    def fn(h5: h5py.File) -> None:
        h5[channel].attrs[name] = value

    return _tamper(fn)


def _drop_attr(channel: str, name: str) -> Build:
    def fn(h5: h5py.File) -> None:
        del h5[channel].attrs[name]

    return _tamper(fn)


def _replace(channel: str, data: Callable[[np.ndarray], np.ndarray]) -> Build:
    """The channel's dataset replaced by ``data(samples)``, attributes kept."""

    def fn(h5: h5py.File) -> None:
        old = h5[channel]
        values, attrs = old[()], dict(old.attrs)
        del h5[channel]
        new = h5.create_dataset(channel, data=data(values))
        new.attrs.update(attrs)

    return _tamper(fn)


def _duplicate_channel(h5: h5py.File) -> None:
    """A second dataset claiming to be the magnetometer (other samples)."""
    src = h5[MAG]
    twin = h5.create_dataset("mag_copy", data=src[()][::-1].copy())
    twin.attrs.update(dict(src.attrs))


def _drop(channel: str) -> Build:
    def build(w: NoiseWorld, d: Path) -> Path:
        chans = w.series(1)
        del chans[channel]
        return _write(chans, d)

    return build


def _map(fn: Callable[[str, TimeSeries], TimeSeries], k: int = 1) -> Build:
    """Segment ``k`` with every channel passed through ``fn(name, series)``."""

    def build(w: NoiseWorld, d: Path) -> Path:
        return _write({c: fn(c, ts) for c, ts in w.series(k).items()}, d)

    return build


def _only(channel: str, fn: Callable[[TimeSeries], TimeSeries]) -> Build:
    return _map(lambda c, ts: fn(ts) if c == channel else ts)


def _shifted(seconds: float) -> Callable[[TimeSeries], TimeSeries]:
    def fn(ts: TimeSeries) -> TimeSeries:
        ts.t0 = ts.t0.value + seconds
        return ts

    return fn


def _cropped(seconds: float) -> Callable[[TimeSeries], TimeSeries]:
    return lambda ts: ts.crop(ts.t0.value, ts.t0.value + seconds)


def _other_seed(w: NoiseWorld, d: Path) -> Path:
    """Segment 0's time span with other content (a different seed): before the cursor."""
    seg = syn.generate(w.segments[0].params.model_copy(update={"seed": 5}), 0)
    return _write({STRAIN: seg.strain, **seg.witnesses}, d)


def _raw(content: bytes, name: str = SEG) -> Build:
    def build(w: NoiseWorld, d: Path) -> Path:
        p = d / name
        p.write_bytes(content)
        return p

    return build


def _truncated(share: float) -> Build:
    def build(w: NoiseWorld, d: Path) -> Path:
        p = _write(w.series(1), d)
        with p.open("r+b") as fh:
            fh.truncate(int(p.stat().st_size * share))
        return p

    return build


def _checksum_corrupt(w: NoiseWorld, d: Path) -> Path:
    """Written with the latest HDF5 format (checksummed metadata); one byte of the third
    object header (a witness dataset's) flipped, so its metadata checksum fails."""
    p = d / SEG
    with h5py.File(p, "w", libver="latest", track_order=True) as h5:
        for c, ts in w.series(1).items():
            ds = h5.create_dataset(c, data=ts.value)
            ds.attrs.update(channel=c, sample_rate=4096.0, t0=float(ts.t0.value), unit="")
    raw = bytearray(p.read_bytes())
    at = -1
    for _ in range(3):
        at = raw.index(b"OHDR", at + 1)
    raw[at + 12] ^= 0xFF
    p.write_bytes(bytes(raw))
    return p


def _empty_file(w: NoiseWorld, d: Path) -> Path:
    """A valid HDF5 file without any channel dataset."""
    p = d / SEG
    with h5py.File(p, "w") as h5:
        h5.attrs["comment"] = "no channels"
    return p


def _directory(w: NoiseWorld, d: Path) -> Path:
    p = d / SEG
    p.mkdir()
    return p


def _netcdf(w: NoiseWorld, d: Path) -> Path:
    """A drought-style NetCDF file given to the noise twin."""
    p = d / "era5land_2007-11.nc"
    xr.Dataset({"tp": (("time",), np.zeros(30, np.float32))}).to_netcdf(p)
    return p


def _whole_at(rate: int) -> Build:
    return _map(lambda c, ts: ts.resample(rate))


# --------------------------------------------------------------------------------- cases

CASES: list[Bad] = [
    # -- implausible samples
    Bad("strain-sample-1e300", _samples(STRAIN, _set(1000, 1e300)), (STRAIN,)),
    Bad("strain-one-nan", _samples(STRAIN, _set(1000, np.nan)), (STRAIN,)),
    Bad("strain-one-inf", _samples(STRAIN, _set(2000, np.inf)), (STRAIN,)),
    Bad("strain-all-nan", _samples(STRAIN, _set(slice(None), np.nan)), (STRAIN,)),
    Bad("strain-dead-all-zero", _samples(STRAIN, _set(slice(None), 0.0)), (STRAIN,)),
    Bad("witness-dead-all-zero", _samples(MAG, _set(slice(None), 0.0)), (MAG,)),
    Bad("witness-one-nan", _samples(MAG, _set(1000, np.nan)), (MAG,)),
    Bad("witness-one-minus-inf", _samples(ANG, _set(5, -np.inf)), (ANG,)),
    Bad("witness-sample-1e300", _samples(MAINS, _set(777, 1e300)), (MAINS,)),
    # -- unreadable files
    Bad("hdf5-metadata-checksum", _checksum_corrupt, ()),
    Bad("hdf5-cut-at-half", _truncated(0.5), ()),
    Bad("zero-length-file", _raw(b""), ()),
    Bad("text-file-named-h5", _raw(b"gps,strain\n1262304034,1e-21\n"), ()),
    Bad("directory-as-data", _directory, ()),
    Bad("missing-file", lambda w, d: d / "V-SEG-9.h5", ()),
    Bad("unknown-suffix", _raw(b"strain samples\n", "V-SEG-1.txt"), ()),
    Bad("netcdf-given-to-noise-twin", _netcdf, ()),
    Bad("no-channel-datasets", _empty_file, ()),
    # -- attributes and datasets of the wrong type
    Bad("sample-rate-4096-Hz-string", _attr(MAG, "sample_rate", "4096 Hz"), (MAG, "sample_rate")),
    Bad("t0-yesterday", _attr(STRAIN, "t0", "yesterday"), (STRAIN, "t0")),
    Bad("sample-rate-zero", _attr(STRAIN, "sample_rate", 0.0), (STRAIN, "sample_rate")),
    Bad("sample-rate-nan", _attr(MAG, "sample_rate", np.nan), (MAG, "sample_rate")),
    Bad("t0-nan", _attr(ANG, "t0", np.nan), (ANG, "t0")),
    Bad("t0-missing", _drop_attr(MAG, "t0"), (MAG, "t0")),
    Bad("strain-of-byte-strings", _replace(STRAIN, lambda x: x.astype("S24")), (STRAIN,)),
    Bad("strain-complex", _replace(STRAIN, lambda x: x.astype(np.complex128)), (STRAIN,)),
    Bad("strain-2d", _replace(STRAIN, lambda x: x.reshape(2, -1)), (STRAIN,)),
    Bad("strain-empty-dataset", _replace(STRAIN, lambda x: x[:0]), (STRAIN,)),
    Bad("channel-given-twice", _tamper(_duplicate_channel), (MAG,)),
    # -- channels that do not fit together
    Bad("missing-witness", _drop(MAG), (MAG,)),
    Bad("missing-strain", _drop(STRAIN), (STRAIN,)),
    Bad("witness-at-2048-Hz", _only(MAG, lambda ts: ts.resample(2048)), (MAG,)),
    Bad("witness-shorter", _only(MAG, _cropped(15.0)), (MAG,)),  # the strain has 16 s
    Bad("witness-starts-1s-late", _only(MAG, _shifted(1.0)), (MAG,)),
    Bad("segment-at-2048-Hz", _whole_at(2048), (("2048", STRAIN),)),
    Bad("segment-too-short", _map(lambda c, ts: _cropped(4.0)(ts)), ()),
    # -- order
    Bad("gap-segment-2", _map(lambda c, ts: ts, k=2), ()),
    Bad("before-cursor-other-content", _other_seed, ()),
    Bad("overlaps-cursor-by-8s", _map(lambda c, ts: _shifted(-8.0)(ts)), ()),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_segment_is_refused(
    case: Bad,
    noise: NoiseWorld,
    noise_twin: Path,
    tmp_path: Path,
    refuse: Callable[..., str],
    noise_ok: Callable[[Path], None],
) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    path = case.build(noise, inputs)
    argv = ["twin", "update", noise_twin, "--data", path]
    refuse(argv, 3, [path.name, *case.names], [noise_twin])
    noise_ok(noise_twin)


def test_rollback_of_noise_twin_to_missing_version(
    noise_twin: Path, refuse: Callable[..., str], noise_ok: Callable[[Path], None]
) -> None:
    refuse(["twin", "rollback", noise_twin, "--to", "7"], 4, ["7"], [noise_twin])
    noise_ok(noise_twin)
