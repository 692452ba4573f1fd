"""Tests of gravwave.io: real gwpy frame, GWF/GWOSC/multi-channel HDF5, ASD files, rejections."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from gwpy.timeseries import StateVector, TimeSeries, TimeSeriesDict

from gravwave import io
from gravwave.io_common import foreign_errors
from twins.errors import DataError

GPS = 1_256_655_618  # start of O3b
REAL_CHANNEL = "V1:h_16384Hz"
REAL_GPS = 968654552


def _gwpy_frame() -> Path:
    from importlib.resources import files

    path = Path(str(files("gwpy") / "testing" / "data" / "HLV-HW100916-968654552-1.gwf"))
    if not path.is_file():  # pragma: no cover - depends on the gwpy wheel
        pytest.skip("gwpy test frame not installed")
    return path


def _lalapps_curve(name: str) -> Path:
    from importlib.util import find_spec

    spec = find_spec("lalapps")
    if spec is None or not spec.submodule_search_locations:  # pragma: no cover
        pytest.skip("lalapps not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / name
    if not path.is_file():  # pragma: no cover
        pytest.skip(f"{name} not shipped")
    return path


def _series(name: str, rate: float, t0: float, duration: float, seed: int = 0) -> TimeSeries:
    rng = np.random.default_rng(seed)
    n = int(round(rate * duration))
    return TimeSeries(rng.standard_normal(n), t0=t0, sample_rate=rate, name=name, channel=name)


def _tsd(t0: float, duration: float, rates: dict[str, float] | None = None) -> TimeSeriesDict:
    rates = rates or {"V1:STRAIN": 4096.0, "V1:ENV_MAG": 512.0}
    out = TimeSeriesDict()
    for i, (name, rate) in enumerate(rates.items()):
        out[name] = _series(name, rate, t0, duration, seed=int(t0) + i)
    return out


def _write_gwf(path: Path, tsd: TimeSeriesDict) -> Path:
    tsd.write(str(path), format="gwf")
    return path


# -- real frame ------------------------------------------------------------------------------


def test_real_gwpy_frame_virgo_channel() -> None:
    frame = _gwpy_frame()
    data = io.read_gwf(frame, [REAL_CHANNEL])
    ts = data[REAL_CHANNEL]
    assert ts.sample_rate.value == 16384.0
    assert ts.duration.value == 1.0
    assert ts.t0.value == REAL_GPS
    assert len(ts) == 16384
    assert np.all(np.isfinite(ts.value))
    assert np.std(ts.value) > 0
    ready = io.prepare(
        data, [REAL_CHANNEL], sample_rate=4096.0, min_duration=1.0, source=frame.name
    )
    out = ready[REAL_CHANNEL]
    assert len(out) == 4096
    assert out.sample_rate.value == 4096.0
    assert out.t0.value == REAL_GPS
    assert out.dtype == np.float64


def test_real_frame_gps_slicing_and_missing_channel() -> None:
    frame = _gwpy_frame()
    data = io.read_gwf(frame, REAL_CHANNEL, start=REAL_GPS + 0.25, end=REAL_GPS + 0.75)
    ts = data[REAL_CHANNEL]
    assert ts.t0.value == REAL_GPS + 0.25
    assert len(ts) == 8192
    full = io.read_gwf(frame, REAL_CHANNEL)[REAL_CHANNEL]
    np.testing.assert_array_equal(ts.value, full.value[4096:12288])
    with pytest.raises(DataError, match=r"HLV-HW100916-968654552-1\.gwf: channel V1:ENV_CEB"):
        io.read_gwf(frame, [REAL_CHANNEL, "V1:ENV_CEB_MAG_X"])
    with pytest.raises(DataError, match="not covered"):
        io.read_gwf(frame, REAL_CHANNEL, start=REAL_GPS - 1, end=REAL_GPS + 0.5)


# -- written GWF -----------------------------------------------------------------------------


def test_gwf_multichannel_roundtrip(tmp_path: Path) -> None:
    tsd = _tsd(GPS, 4.0)
    path = _write_gwf(tmp_path / f"V-TEST-{GPS}-4.gwf", tsd)
    got = io.read_gwf(path, list(tsd), start=GPS + 1, end=GPS + 3)
    assert list(got) == list(tsd)
    for name, ts in got.items():
        assert ts.sample_rate == tsd[name].sample_rate
        assert ts.t0.value == GPS + 1
        np.testing.assert_array_equal(ts.value, tsd[name].crop(GPS + 1, GPS + 3).value)


def test_gwf_multi_file_contiguous(tmp_path: Path) -> None:
    a, b = _tsd(GPS, 4.0), _tsd(GPS + 4, 4.0)
    fa = _write_gwf(tmp_path / f"V-TEST-{GPS}-4.gwf", a)
    fb = _write_gwf(tmp_path / f"V-TEST-{GPS + 4}-4.gwf", b)
    got = io.read_gwf([fb, fa], ["V1:STRAIN", "V1:ENV_MAG"])  # order does not matter
    strain = got["V1:STRAIN"]
    assert strain.t0.value == GPS
    assert len(strain) == 8 * 4096
    np.testing.assert_array_equal(strain.value[: 4 * 4096], a["V1:STRAIN"].value)
    np.testing.assert_array_equal(strain.value[4 * 4096 :], b["V1:STRAIN"].value)
    sliced = io.read_gwf([fa, fb], ["V1:ENV_MAG"], start=GPS + 3, end=GPS + 5)["V1:ENV_MAG"]
    assert sliced.t0.value == GPS + 3
    assert len(sliced) == 2 * 512
    ready = io.prepare(got, min_duration=8.0, source="frames")
    assert {len(ts) for ts in ready.values()} == {8 * 4096}


def test_gwf_gap_and_overlap_rejected(tmp_path: Path) -> None:
    fa = _write_gwf(tmp_path / f"V-A-{GPS}-4.gwf", _tsd(GPS, 4.0))
    fgap = _write_gwf(tmp_path / f"V-B-{GPS + 5}-4.gwf", _tsd(GPS + 5, 4.0))
    fover = _write_gwf(tmp_path / f"V-C-{GPS + 2}-4.gwf", _tsd(GPS + 2, 4.0))
    with pytest.raises(DataError, match=rf"V-A-{GPS}-4\.gwf -> V-B-{GPS + 5}-4\.gwf: gap of 1 s"):
        io.read_gwf([fa, fgap], ["V1:STRAIN"])
    with pytest.raises(DataError, match=r"V-C-.*: overlap of 2 s"):
        io.read_gwf([fa, fover], ["V1:STRAIN"])
    with pytest.raises(DataError, match="file not found"):
        io.read_gwf(tmp_path / "missing.gwf", ["V1:STRAIN"])


# -- GWOSC HDF5 ------------------------------------------------------------------------------


def test_gwosc_layout_readable_by_gwpy(tmp_path: Path) -> None:
    strain = _series("x", 4096.0, GPS, 16.0) * 1e-21
    mask = np.full(16, 127, dtype=np.int32)
    path = io.write_gwosc_hdf5(tmp_path / f"V-V1_GWOSC_O3b_4KHZ_R1-{GPS}-16.hdf5", strain, mask)
    ts = TimeSeries.read(str(path), format="hdf5.gwosc")
    assert ts.name == "V1:GWOSC-4KHZ_R1_STRAIN"
    assert ts.t0.value == GPS
    assert ts.sample_rate.value == 4096.0
    np.testing.assert_array_equal(ts.value, strain.value)
    sv = StateVector.read(str(path), format="hdf5.gwosc")
    assert len(sv) == 16
    assert sv.dt.value == 1.0
    with h5py.File(path, "r") as h5:
        assert h5["meta/Detector"][()] == b"V1"
        assert h5["meta/GPSstart"][()] == GPS
        assert h5["meta/Duration"][()] == 16
        assert h5["strain/Strain"].attrs["Xspacing"] == 1 / 4096
        assert h5["strain/Strain"].attrs["Xstart"] == GPS
        names = [bytes(b).decode() for b in h5["quality/simple/DQShortnames"][()]]
        assert names == list(io.GWOSC_DQ_SHORTNAMES)
        assert "DQDescriptions" in h5["quality/simple"]
        assert "Injmask" in h5["quality/injections"]


def test_gwosc_dq_mask_gives_analysis_segments(tmp_path: Path) -> None:
    strain = _series("x", 4096.0, GPS, 16.0) * 1e-21
    strain.value[6 * 4096 : 7 * 4096] = np.nan  # GWOSC stores NaN where DATA is off
    mask = np.full(16, 127, dtype=np.int32)
    mask[6] = 0  # one bad second: no data
    mask[12] &= ~0b100  # CBC_CAT2 off: not required by default
    path = io.write_gwosc_hdf5(tmp_path / "gwosc.hdf5", strain, mask)
    ts, analysis = io.read_gwosc_hdf5(path)
    assert [tuple(s) for s in analysis] == [(GPS, GPS + 6), (GPS + 7, GPS + 16)]
    assert len(ts) == 16 * 4096
    _, segs = io.read_gwosc_hdf5(path, flags=("DATA", "CBC_CAT1", "CBC_CAT2"))
    assert len(segs) == 3
    _, segs = io.read_gwosc_hdf5(path, start=GPS + 2, end=GPS + 14, min_duration=5.0)
    assert [tuple(s) for s in segs] == [(GPS + 7, GPS + 14)]
    with pytest.raises(DataError, match="gwosc.hdf5: DQ flag BOGUS not in the mask"):
        io.read_gwosc_hdf5(path, flags=("BOGUS",))
    with pytest.raises(DataError, match="no analysis segment"):
        io.read_gwosc_hdf5(path, min_duration=10.0)
    # the good pieces are ready for training once cut to the segments
    pieces = [TimeSeriesDict({"V1:GWOSC-4KHZ_R1_STRAIN": ts.crop(*seg)}) for seg in analysis[:1]]
    ready = io.prepare(pieces, min_duration=1.0, source="gwosc.hdf5")
    assert len(ready["V1:GWOSC-4KHZ_R1_STRAIN"]) == 6 * 4096


def test_gwosc_nan_inside_segment_and_bad_file(tmp_path: Path) -> None:
    strain = _series("x", 4096.0, GPS, 8.0)
    strain.value[100] = np.nan
    path = io.write_gwosc_hdf5(tmp_path / "bad.hdf5", strain)
    with pytest.raises(DataError, match=r"bad\.hdf5: channel V1:GWOSC-4KHZ_R1_STRAIN: 1 NaN"):
        io.read_gwosc_hdf5(path)
    other = io.write_multichannel_hdf5(tmp_path / "mc.h5", _tsd(GPS, 1.0))
    with pytest.raises(DataError, match=r"mc\.h5: not a GWOSC HDF5"):
        io.read_gwosc_hdf5(other)


# -- multi-channel HDF5 ----------------------------------------------------------------------


def test_multichannel_hdf5_roundtrip(tmp_path: Path) -> None:
    tsd = _tsd(GPS, 4.0, {"V1:STRAIN": 4096.0, "V1:SBE_LVDT": 500.0, "V1:ENV_MAG": 1024.0})
    path = io.write_multichannel_hdf5(tmp_path / "data.h5", tsd)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.h5"]  # no temp file left
    with h5py.File(path, "r") as h5:
        ds = h5["V1:SBE_LVDT"]
        assert ds.attrs["sample_rate"] == 500.0
        assert ds.attrs["t0"] == GPS
        assert ds.attrs["channel"] == "V1:SBE_LVDT"
    got = io.read_multichannel_hdf5(path)
    assert list(got) == list(tsd)
    for name, ts in got.items():
        assert ts.sample_rate == tsd[name].sample_rate
        assert ts.t0 == tsd[name].t0
        np.testing.assert_array_equal(ts.value, tsd[name].value)
    part = io.read_multichannel_hdf5(path, ["V1:ENV_MAG"], start=GPS + 1, end=GPS + 2.5)
    assert part["V1:ENV_MAG"].t0.value == GPS + 1
    np.testing.assert_array_equal(part["V1:ENV_MAG"].value, tsd["V1:ENV_MAG"].value[1024:2560])
    ready = io.prepare(got, min_duration=4.0, source=path.name)
    assert all(len(ts) == 4 * 4096 and ts.sample_rate.value == 4096 for ts in ready.values())
    with pytest.raises(DataError, match=r"data\.h5: channel V1:NOPE not found"):
        io.read_multichannel_hdf5(path, ["V1:STRAIN", "V1:NOPE"])


def test_multichannel_hdf5_missing_attrs(tmp_path: Path) -> None:
    path = tmp_path / "raw.h5"
    with h5py.File(path, "w") as h5:
        h5.create_dataset("V1:X", data=np.zeros(10)).attrs["channel"] = "V1:X"
    with pytest.raises(DataError, match=r"raw\.h5: channel V1:X lacks attribute sample_rate"):
        io.read_multichannel_hdf5(path)


def test_multichannel_hdf5_channel_given_twice(tmp_path: Path) -> None:
    """Two datasets claiming one channel: which one is meant is unknowable, so refuse."""
    path = tmp_path / "twice.h5"
    with h5py.File(path, "w", track_order=True) as h5:
        for name, data in (("V1:X", np.zeros(10)), ("x_copy", np.ones(10))):
            h5.create_dataset(name, data=data).attrs.update(channel="V1:X", sample_rate=1.0)
    with pytest.raises(
        DataError, match=r"twice\.h5: channel V1:X is given twice, by datasets V1:X and x_copy"
    ):
        io.read_multichannel_hdf5(path, ["V1:X"])


# -- channel list and ASD --------------------------------------------------------------------


def test_channel_list(tmp_path: Path) -> None:
    path = tmp_path / "chans.txt"
    path.write_text("# strain first\nV1:Hrec_hoft_16384Hz\n\n  V1:ENV_CEB_MAG_X  # magnetometer\n")
    assert io.read_channel_list(path) == ["V1:Hrec_hoft_16384Hz", "V1:ENV_CEB_MAG_X"]
    path.write_text("V1:A\nV1:B\nV1:A\n")
    with pytest.raises(DataError, match=r"chans\.txt:3: channel V1:A duplicated"):
        io.read_channel_list(path)
    path.write_text("# nothing\n\n")
    with pytest.raises(DataError, match="no channels"):
        io.read_channel_list(path)


def test_read_asd_real_virgo_curve(tmp_path: Path) -> None:
    curve = _lalapps_curve("LIGO-P1200087-v18-AdV_DESIGN.txt")
    asd = io.read_asd(curve)
    f = asd.frequencies.value
    assert f[0] == pytest.approx(10.0)
    assert np.all(np.diff(f) > 0)
    at100 = float(np.interp(100.0, f, asd.value))
    assert 3e-24 < at100 < 1e-23  # AdV design ~5.7e-24 /sqrt(Hz) at 100 Hz
    psd_file = tmp_path / "adv_psd.txt"
    np.savetxt(psd_file, np.column_stack([f, asd.value**2]), header="f [Hz]  PSD [1/Hz]")
    np.testing.assert_allclose(io.read_asd(psd_file, kind="auto").value, asd.value, rtol=1e-9)
    np.testing.assert_allclose(io.read_asd(psd_file, psd=True).value, asd.value, rtol=1e-9)
    assert io.read_asd(curve, kind="auto").value[0] == asd.value[0]


def test_read_asd_rejects_bad_files(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_text("10 1e-23\n20 -1e-23\n")
    with pytest.raises(DataError, match=r"bad\.txt: 1 non-positive"):
        io.read_asd(path)
    path.write_text("20 1e-23\n10 1e-23\n")
    with pytest.raises(DataError, match="strictly increasing"):
        io.read_asd(path)
    path.write_text("10 1e-23 2e-23 3e-23\n20 1e-23 2e-23 3e-23\n")
    with pytest.raises(DataError, match="two or three columns"):
        io.read_asd(path)


# -- prepare: rejections ---------------------------------------------------------------------


def test_prepare_rejections() -> None:
    good = _tsd(GPS, 8.0)
    chans = ["V1:STRAIN", "V1:ENV_MAG"]
    with pytest.raises(DataError, match="run1.gwf: channel V1:MISSING not found"):
        io.prepare(good, ["V1:STRAIN", "V1:MISSING"], source="run1.gwf")
    nan = _tsd(GPS, 8.0)
    nan["V1:ENV_MAG"].value[5] = np.inf
    with pytest.raises(DataError, match="run1.gwf: channel V1:ENV_MAG: 1 NaN/inf"):
        io.prepare(nan, chans, source="run1.gwf")
    with pytest.raises(DataError, match="sample-rate mismatch: channel V1:ENV_MAG at 512 Hz"):
        io.prepare(good, chans, sample_rate=None, source="run1.gwf")
    short = _tsd(GPS, 8.0)
    short["V1:ENV_MAG"] = _series("V1:ENV_MAG", 512.0, GPS, 7.0)
    with pytest.raises(DataError, match="run1.gwf: length mismatch: channel V1:ENV_MAG"):
        io.prepare(short, chans, source="run1.gwf")
    with pytest.raises(DataError, match=r"span of 8 s is shorter than one training window \(16"):
        io.prepare(good, chans, min_duration=16.0, source="run1.gwf")
    gap = [_tsd(GPS, 4.0), _tsd(GPS + 4.5, 4.0)]
    with pytest.raises(DataError, match=r"a\.gwf -> b\.gwf: channel V1:STRAIN: gap of 0\.5 s"):
        io.prepare(gap, chans, source=["a.gwf", "b.gwf"])
    over = [_tsd(GPS, 4.0), _tsd(GPS + 3, 4.0)]
    with pytest.raises(DataError, match="channel V1:STRAIN: overlap of 1 s"):
        io.prepare(over, chans, source=["a.gwf", "b.gwf"])
    rate = [_tsd(GPS, 4.0), _tsd(GPS + 4, 4.0, {"V1:STRAIN": 2048.0, "V1:ENV_MAG": 512.0})]
    with pytest.raises(DataError, match=r"b\.gwf: channel V1:STRAIN sampled at 2048 Hz"):
        io.prepare(rate, chans, source=["a.gwf", "b.gwf"])


def test_prepare_joins_segments_and_resamples() -> None:
    pieces = [_tsd(GPS, 4.0), _tsd(GPS + 4, 4.0)]
    ready = io.prepare(pieces, sample_rate=2048.0, min_duration=8.0, source=["a", "b"])
    assert list(ready) == ["V1:STRAIN", "V1:ENV_MAG"]
    for ts in ready.values():
        assert ts.sample_rate.value == 2048.0
        assert ts.t0.value == GPS
        assert len(ts) == 8 * 2048
        assert np.all(np.isfinite(ts.value))


def test_unreadable_files_give_data_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.gwf"
    junk.write_text("garbage\n")
    with pytest.raises(DataError, match=r"junk\.gwf: not a readable GWF file"):
        io.read_gwf(junk, ["V1:A"])
    with pytest.raises(DataError, match=r"junk\.gwf: not a readable HDF5 file"):
        io.read_multichannel_hdf5(junk)
    with pytest.raises(DataError, match=r"junk\.gwf: not a GWOSC HDF5"):
        io.read_gwosc_hdf5(junk)
    with pytest.raises(DataError, match=r"junk\.gwf: cannot parse"):
        io.read_asd(junk)


# -- bad files: one-line DataErrors naming file, channel/attribute, found and expected --------


def _good_mc(path: Path) -> Path:
    return io.write_multichannel_hdf5(path, _tsd(GPS, 4.0))


def _set_attr(name: str, value: object, channel: str = "V1:STRAIN") -> object:
    def edit(h5: h5py.File) -> None:
        h5[channel].attrs[name] = value

    return edit


def _replace(data: np.ndarray, channel: str = "V1:STRAIN") -> object:
    def edit(h5: h5py.File) -> None:
        attrs = dict(h5[channel].attrs)
        del h5[channel]
        h5.create_dataset(channel, data=data).attrs.update(attrs)

    return edit


MC_BAD = [
    ("rate_text", _set_attr("sample_rate", "4096 Hz"),
     r"channel V1:STRAIN: attribute sample_rate is '4096 Hz' \(a string\); expected a sample "
     r"rate > 0 \[Hz\]"),
    ("rate_bytes", _set_attr("sample_rate", np.bytes_(b"4096")),
     r"attribute sample_rate is '4096' \(a string\)"),
    ("t0_text", _set_attr("t0", "yesterday"),
     r"channel V1:STRAIN: attribute t0 is 'yesterday' \(a string\); expected a GPS start time"),
    ("rate_array", _set_attr("sample_rate", np.array([4096.0, 2048.0])),
     r"attribute sample_rate is an array of shape \(2,\)"),
    ("rate_bool", _set_attr("sample_rate", True), r"attribute sample_rate is True \(a bool\)"),
    ("rate_nan", _set_attr("sample_rate", np.nan),
     r"channel V1:STRAIN: attribute sample_rate is nan; expected a finite sample rate > 0"),
    ("rate_zero", _set_attr("sample_rate", 0.0), r"attribute sample_rate is 0; expected"),
    ("rate_negative", _set_attr("sample_rate", -4096.0), r"attribute sample_rate is -4096;"),
    ("t0_inf", _set_attr("t0", np.inf), r"attribute t0 is inf; expected a finite GPS"),
    ("bytes_data", _replace(np.array([b"1e-21"] * 100)),
     r"channel V1:STRAIN: dataset of byte strings \(dtype \|S5\); expected real numbers"),
    ("complex_data", _replace(np.ones(100, dtype=complex)), r"dataset of complex numbers"),
    ("rank2", _replace(np.zeros((2, 100))),
     r"dataset of shape \(2, 100\) \(rank 2\); expected a 1-D series \(rank 1\)"),
    ("empty", _replace(np.zeros(0)), r"dataset is empty"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "edit", "match"), MC_BAD, ids=[c[0] for c in MC_BAD])
def test_multichannel_hdf5_bad_content(tmp_path: Path, case: str, edit: Any, match: str) -> None:
    path = _good_mc(tmp_path / f"{case}.h5")
    with h5py.File(path, "r+") as h5:
        edit(h5)
    with pytest.raises(DataError) as err:
        io.read_multichannel_hdf5(path)
    msg = str(err.value)
    assert msg.startswith(f"{case}.h5: ") and "\n" not in msg
    assert re.search(match, msg), msg


def _checksum_corrupt(path: Path) -> Path:
    """A file with metadata checksums (libver latest) with one byte of the root header flipped.

    h5py opens it but listing the root group fails: ``KeyError: ... incorrect metadata
    checksum`` (a traceback before).
    """
    with h5py.File(path, "w", libver="latest") as h5:
        h5.create_dataset("V1:STRAIN", data=np.zeros(64)).attrs.update(sample_rate=64.0, t0=0.0)
    raw = bytearray(path.read_bytes())
    raw[raw.index(b"OHDR") + 6] ^= 0x5A
    path.write_bytes(bytes(raw))
    return path


def test_corrupt_and_truncated_hdf5_are_data_errors(tmp_path: Path) -> None:
    bad = _checksum_corrupt(tmp_path / "checksum.h5")
    with pytest.raises(DataError, match=r"^checksum\.h5: corrupt HDF5 file: .*checksum"):
        io.read_multichannel_hdf5(bad)
    with pytest.raises(DataError, match=r"^checksum\.h5: not a GWOSC HDF5 strain file"):
        io.read_gwosc_hdf5(bad)
    good = _good_mc(tmp_path / "good.h5").read_bytes()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(good[: len(good) * 6 // 10])
    with pytest.raises(DataError, match=r"^cut\.h5: not a readable HDF5 file \(.*truncated"):
        io.read_multichannel_hdf5(cut)
    (tmp_path / "zero.h5").write_bytes(b"")
    with pytest.raises(DataError, match=r"^zero\.h5: not a readable HDF5 file"):
        io.read_multichannel_hdf5(tmp_path / "zero.h5")
    with pytest.raises(DataError, match=r"is a directory, expected a data file"):
        io.read_multichannel_hdf5(tmp_path)
    # A string attribute pointing to a wrong global-heap object (the index after the heap
    # collection's address flipped): h5py raises OSError "bad heap index" reading it.
    raw = bytearray(good)
    pos = raw.index(raw.index(b"GCOL").to_bytes(8, "little")) + 8
    raw[pos] ^= 0xFF
    (tmp_path / "heap.h5").write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"^heap\.h5: corrupt HDF5 file: .*bad heap index"):
        io.read_multichannel_hdf5(tmp_path / "heap.h5")


def _gwosc(path: Path) -> Path:
    return io.write_gwosc_hdf5(path, _series("x", 4096.0, GPS, 8.0) * 1e-21)


def _strain_attr(name: str, value: object) -> object:
    def edit(h5: h5py.File) -> None:
        h5["strain/Strain"].attrs[name] = value

    return edit


def _strain_data(data: np.ndarray) -> object:
    def edit(h5: h5py.File) -> None:
        attrs = dict(h5["strain/Strain"].attrs)
        del h5["strain/Strain"]
        h5["strain"].create_dataset("Strain", data=data).attrs.update(attrs)

    return edit


GWOSC_BAD = [
    ("bytes", _strain_data(np.array([b"1e-21"] * 4096 * 8)),
     r"dataset strain/Strain: dataset of byte strings \(dtype \|S5\); expected real numbers"),
    ("rank2", _strain_data(np.zeros((2, 4096 * 4))), r"dataset strain/Strain: dataset of shape"),
    ("xspacing_text", _strain_attr("Xspacing", "1/4096 s"),
     r"attribute Xspacing is '1/4096 s' \(a string\); expected a sample spacing > 0 \[s\]"),
    ("xspacing_nan", _strain_attr("Xspacing", np.nan), r"attribute Xspacing is nan; expected"),
    ("xspacing_zero", _strain_attr("Xspacing", 0.0), r"attribute Xspacing is 0; expected"),
    ("xspacing_negative", _strain_attr("Xspacing", -1 / 4096), r"attribute Xspacing is -0"),
    ("xstart_text", _strain_attr("Xstart", "yesterday"),
     r"attribute Xstart is 'yesterday' \(a string\); expected a GPS start time"),
    ("no_dqmask", lambda h5: h5.__delitem__("quality/simple/DQmask"),
     r"not a GWOSC HDF5 strain file: no dataset quality/simple/DQmask"),
    ("dq_names", lambda h5: h5["quality/simple/DQShortnames"].__setitem__(0, b"\xff\xfe"),
     "DQ flag DATA not in the mask; available: \ufffd\ufffd, CBC_CAT1"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "edit", "match"), GWOSC_BAD, ids=[c[0] for c in GWOSC_BAD])
def test_gwosc_bad_content(tmp_path: Path, case: str, edit: Any, match: str) -> None:
    path = _gwosc(tmp_path / f"{case}.hdf5")
    with h5py.File(path, "r+") as h5:
        edit(h5)
    with pytest.raises(DataError) as err:
        io.read_gwosc_hdf5(path)
    msg = str(err.value)
    assert msg.startswith(f"{case}.hdf5: ") and "\n" not in msg
    assert re.search(match, msg), msg


def test_truncated_gwf_and_binary_text_files(tmp_path: Path) -> None:
    frame = _write_gwf(tmp_path / "full.gwf", _tsd(GPS, 4.0))
    cut = tmp_path / "cut.gwf"
    cut.write_bytes(frame.read_bytes()[: frame.stat().st_size * 6 // 10])
    # lalframe crashed (SIGSEGV) on this file; the checksum check refuses it first.
    with pytest.raises(DataError) as err:
        io.read_gwf(cut, ["V1:STRAIN"])
    assert str(err.value).startswith("cut.gwf: not a readable GWF file: truncated or corrupt")
    assert "\n" not in str(err.value)
    # One flipped byte in the middle: read silently before, refused by the checksum now.
    flipped = bytearray(frame.read_bytes())
    flipped[len(flipped) // 2] ^= 0xFF
    (tmp_path / "flip.gwf").write_bytes(bytes(flipped))
    with pytest.raises(DataError, match=r"^flip\.gwf: not a readable GWF file: truncated or"):
        io.read_gwf(tmp_path / "flip.gwf", ["V1:STRAIN"])
    latin = tmp_path / "chans.txt"
    latin.write_bytes(b"V1:STRAIN\nV1:MAG_\xe9\n")
    with pytest.raises(DataError, match=r"^chans\.txt: byte 17 \(0xe9\) is not UTF-8"):
        io.read_channel_list(latin)
    binary = tmp_path / "asd.txt"
    binary.write_bytes(bytes(range(256)))
    with pytest.raises(
        DataError, match=r"^asd\.txt: byte \d+ \(0x[0-9a-f]{2}\) is not UTF-8 text"
    ):
        io.read_asd(binary)


def test_foreign_errors_wraps_library_errors_only(tmp_path: Path) -> None:
    own = DataError("x.h5: channel V1:A is constant (dead)")
    with pytest.raises(DataError) as err, foreign_errors(tmp_path / "x.h5", "reading"):
        raise own
    assert err.value is own  # our own errors pass through unchanged
    with pytest.raises(DataError) as err, foreign_errors(tmp_path / "x.h5", "reading", "hint"):
        raise KeyError("Unable to open object\n(incorrect metadata checksum)")
    assert str(err.value) == (
        "x.h5: reading (KeyError: Unable to open object (incorrect metadata checksum))"
    )
    assert err.value.hint == "hint" and isinstance(err.value.__cause__, KeyError)
    with pytest.raises(MemoryError), foreign_errors(tmp_path / "x.h5", "reading"):
        raise MemoryError


# -- published spectrum files as they are (issue 12, item 2) ----------------------------------

O3_VIRGO = (
    Path(__file__).resolve().parents[2] / "data" / "gravwave" / "O3-V1_sensitivity_strain_asd.txt"
)


def test_read_asd_measured_o3_virgo_file_as_published(caplog: pytest.LogCaptureFixture) -> None:
    # The LVK release starts at 0 Hz and runs to 8192 Hz in 0.5-Hz steps (16385 rows).
    with caplog.at_level("INFO", logger="gravwave.io"):
        asd = io.read_asd(O3_VIRGO)
    assert "line 1: 0-Hz row dropped" in caplog.text
    f = asd.frequencies.value
    assert len(asd) == 16384
    assert f[0] == 0.5 and f[-1] == 8192.0
    np.testing.assert_array_equal(np.diff(f), 0.5)  # 0.5 is exact in binary
    # Measured: the minimum is 9.8714e-24 /sqrt(Hz) at 110.5 Hz; the median over 100-300 Hz
    # is 1.32e-23 and over 50-100 Hz 1.26e-23 (Virgo O3a, BNS range about 50 Mpc).
    band = (f >= 100.0) & (f <= 300.0)
    i = int(np.argmin(asd.value))
    assert f[i] == 110.5 and 5e-24 < asd.value[i] < 1e-23
    assert 1e-23 < float(np.median(asd.value[band])) < 2e-23
    assert asd.value[f == 20.0][0] > 10 * asd.value[i]  # the seismic wall below 30 Hz


def _asd_rows(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_read_asd_psd_option_three_columns_comments_commas(tmp_path: Path) -> None:
    f = np.array([0.0, 10.0, 20.0, 40.0])
    a = np.array([1e-20, 4e-22, 3e-23, 1.5e-23])
    psd_file = tmp_path / "psd.txt"
    np.savetxt(psd_file, np.column_stack([f, a**2]), header="f [Hz]  PSD [1/Hz]")
    asd_file = tmp_path / "asd.txt"
    np.savetxt(asd_file, np.column_stack([f, a]))
    ref = io.read_asd(asd_file)
    np.testing.assert_array_equal(ref.frequencies.value, f[1:])
    np.testing.assert_array_equal(ref.value, a[1:])
    # sqrt of a float64 square returns the value within 1 ulp (correctly rounded sqrt,
    # one rounding in the square): rtol 2 eps.
    eps = np.finfo(float).eps
    np.testing.assert_allclose(io.read_asd(psd_file, kind="psd").value, a[1:], rtol=2 * eps)
    np.testing.assert_allclose(io.read_asd(psd_file, psd=True).value, a[1:], rtol=2 * eps)
    text = (
        "% Virgo curve, MATLAB-style header\n"
        "# freq, asd, uncertainty\n"
        "\n"
        "0, 1e-20, 0.1\n"
        "10 ,4e-22,0.1   # trailing comment\n"
        "20\t3e-23\t0.2\n"
        "40 1.5e-23 0.3\n"
    )
    three = io.read_asd(_asd_rows(tmp_path / "three.csv", text))
    np.testing.assert_array_equal(three.frequencies.value, f[1:])
    np.testing.assert_array_equal(three.value, a[1:])


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("10 1e-23\n10 2e-23\n", r"^dup\.txt:2: frequency 10 Hz repeats 10 Hz on line 1; .*"),
        ("0 1e-23\n20 1e-23\n10 1e-23\n", r"^dup\.txt:3: frequency 10 Hz is below 20 Hz on"),
        ("0 1e-23\n0 1e-23\n10 1e-23\n", r"^dup\.txt:2: frequency 0 Hz; .*positive"),
        ("-1 1e-23\n10 1e-23\n", r"^dup\.txt:1: frequency -1 Hz; frequencies must be pos"),
        ("10 1e-23\nnan 1e-23\n", r"^dup\.txt:2: frequency nan Hz; .*finite"),
        ("10 1e-23\n20 -1e-23\n", r"^dup\.txt: 1 non-positive .* at 20 Hz on line 2 \(-1e-23"),
        ("10 1e-23\n# c\n20 inf\n", r"^dup\.txt: 1 non-positive .* at 20 Hz on line 3 \(inf"),
        (
            "0 1e-23\n10 1e-23\n",
            r"^dup\.txt: 1 data rows after the 0-Hz row; expected at least 2 rows",
        ),
        ("# only comments\n", r"^dup\.txt: 0 data rows"),
        ("10 1e-23\n20 abc\n", r"^dup\.txt: cannot parse as numbers \(line 2: '20 abc'\)"),
        ("f asd\n10 1e-23\n", r"^dup\.txt: cannot parse as numbers \(line 1: 'f asd'\)"),
        ("10\n20\n", r"^dup\.txt:1: 1 columns; expected two or three columns"),
        ("10 1 2\n20 1\n", r"^dup\.txt:2: 2 columns, but 3 on line 1; expected the same"),
    ],
)
def test_read_asd_refusals_name_file_and_line(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(DataError, match=match) as err:
        io.read_asd(_asd_rows(tmp_path / "dup.txt", text))
    assert "\n" not in str(err.value)
