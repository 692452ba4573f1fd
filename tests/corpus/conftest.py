"""Shared machinery of the bad-input corpus (issue 14, item 7).

Everything runs in-process through :func:`twins.cli.main`, as a user would type it. One tiny
drought twin and one tiny noise twin are built per session; each case works on a copy.

Fixtures:

* ``cli(argv)``: run ``twins ARGV``; returns the exit code, stdout and stderr;
* ``refuse(argv, code, names, watch)``: run a command that must be refused and check the
  refusal (exit code of its kind, one ``twins: error:`` line naming every string in
  ``names``, no traceback, no traceback log, every watched directory unchanged);
* ``drought`` / ``noise``: the session's worlds (data, template twin, valid inputs,
  products of the reference update);
* ``drought_twin`` / ``noise_twin``: a fresh copy of the template twin.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
from gwpy.timeseries import TimeSeries, TimeSeriesDict

from gravwave import synthetic as syn
from gravwave.cleaners import WienerCleaner
from gravwave.io import read_multichannel_hdf5, write_multichannel_hdf5
from gravwave.twin import NoiseTwin
from hydrology.forecast import PersistenceForecaster
from hydrology.indices import DroughtIndices
from hydrology.synthetic import generate, write_netcdf
from hydrology.twin import DroughtTwin
from twins.cli import main

# ------------------------------------------------------------------------------ the CLI


@dataclass(frozen=True)
class CliResult:
    """Exit code and captured output of one ``twins`` command."""

    rc: int
    out: str
    err: str

    @property
    def first_err(self) -> str:
        """The first non-empty stderr line (for failure reports)."""
        return next((line for line in self.err.splitlines() if line.strip()), "")

    def observed(self) -> str:
        """One line for assertion messages: what the command did."""
        return f"observed rc={self.rc} stderr={self.first_err!r}"


@pytest.fixture(autouse=True)
def log_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Per-case ``TWINS_LOG_DIR``: the CLI's last guard writes tracebacks here, not in $HOME.

    A handled refusal writes no log; a file here means an unexpected exception.
    """
    path = tmp_path / "twins-logs"
    monkeypatch.setenv("TWINS_LOG_DIR", str(path))
    return path


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[[Sequence[str]], CliResult]:
    """``cli(argv)``: run ``twins ARGV`` in this process and capture its output."""

    def run(argv: Sequence[str]) -> CliResult:
        capsys.readouterr()  # drop what earlier steps of the test printed
        try:
            rc = main([str(a) for a in argv])
        except SystemExit as exc:  # argparse usage errors
            rc = exc.code if isinstance(exc.code, int) else 1
        captured = capsys.readouterr()
        return CliResult(rc, captured.out, captured.err)

    return run


@pytest.fixture
def refuse(
    cli: Callable[[Sequence[str]], CliResult],
    dir_snapshot: Callable[..., dict[str, object]],
    log_dir: Path,
) -> Callable[..., str]:
    """``refuse(argv, code, names, watch, skip_lock=True)`` -> the error line.

    Checks, with the observed exit code and first stderr line in every failure message:
    the exit code is ``code``; stdout and stderr hold no ``Traceback``; stderr holds exactly
    one ``twins: error:`` line, followed by nothing or another ``twins:`` line (the hint), so
    the message did not spill over several lines; the error line contains each string of
    ``names`` (an inner tuple: any one of its strings); no traceback log was written; every
    directory of ``watch`` is byte-for-byte unchanged (for a path that does not exist, its
    parent).
    """

    def check(
        argv: Sequence[str],
        code: int,
        names: Sequence[str | tuple[str, ...]],
        watch: Sequence[Path],
        skip_lock: bool = True,
    ) -> str:
        roots = [w if w.exists() else w.parent for w in watch]
        before = [dir_snapshot(r, skip_lock=skip_lock) for r in roots]
        res = cli(argv)
        seen = res.observed()
        assert "Traceback" not in res.out + res.err, seen
        assert res.rc == code, seen
        errors = [ln for ln in res.err.splitlines() if ln.startswith("twins: error:")]
        assert len(errors) == 1, seen
        lines = res.err.splitlines()
        line = errors[0]
        after = lines[lines.index(line) + 1 :][:1]
        assert all(ln.startswith("twins: ") for ln in after), f"{seen}; not one line: {after}"
        for name in names:
            options = name if isinstance(name, tuple) else (name,)
            assert any(o in line for o in options), f"{seen}; expected it to name {name!r}"
        assert not log_dir.exists() or not any(log_dir.iterdir()), seen
        for root, snap in zip(roots, before, strict=True):
            assert dir_snapshot(root, skip_lock=skip_lock) == snap, f"{seen}; {root} changed"
        return line

    return check


# ------------------------------------------------------------------------ drought world

#: Indices of the tiny drought twin (as tests/hydrology/test_twin.py).
INDICES = ("spi_1", "spi_3", "spi_6", "ssmi_1")


@dataclass
class DroughtWorld:
    """The session's drought twin and its inputs.

    Attributes:
        data: Daily tiny preset 2000-01..2007-12, dims ``(time, lat, lon)`` (12 x 12),
            ERA5 names and units (``tp`` [m/day], ``t2m`` [K], ``swvl1`` [m3 m-3], ...).
        template: Twin initialised on 2000-01..2007-10 (cursor 2007-10).
        nov: The valid next month, 2007-11, as a NetCDF-4 file.
        history: ``history.nc`` after ingesting ``nov`` (the reference products).
        alerts: ``alerts_2007-11.nc`` after ingesting ``nov``.
        scratch: The session directory holding all of it.
    """

    data: xr.Dataset
    template: Path
    nov: Path
    history: xr.Dataset
    alerts: xr.Dataset
    scratch: Path

    def month(self, month: str) -> xr.Dataset:
        """A deep copy of one month of the daily data."""
        return self.data.sel(time=month).copy(deep=True)


def products(twin_dir: Path, version: int, issue: str) -> tuple[xr.Dataset, xr.Dataset]:
    """``(history, alerts)`` of a drought twin's version, loaded into memory."""
    pdir = twin_dir / "versions" / f"v{version:06d}" / "products"
    with (
        xr.open_dataset(pdir / "history.nc") as h,
        xr.open_dataset(pdir / f"alerts_{issue}.nc") as a,
    ):
        return h.load(), a.load()


@pytest.fixture(scope="session")
def drought(tmp_path_factory: pytest.TempPathFactory) -> DroughtWorld:
    """Tiny drought twin (persistence of SPI-3 and SSMI-1) at cursor 2007-10, as in
    tests/hydrology/test_twin.py, plus the reference update by 2007-11."""
    root = tmp_path_factory.mktemp("drought")
    data = generate("tiny").drop_vars(["drought_forcing", "drought_mask"])
    base = data.sel(time=slice(None, "2007-10-31"))
    indices = DroughtIndices(INDICES, "2000-01-01", "2005-12-31").fit(base)
    template = root / "template"
    DroughtTwin.init(template, base, PersistenceForecaster(("spi_3", "ssmi_1")), indices)
    nov = write_netcdf(data.sel(time="2007-11"), root / "era5land_2007-11.nc")
    ref = root / "reference"
    shutil.copytree(template, ref)
    DroughtTwin.open(ref).update(nov)
    history, alerts = products(ref, 1, "2007-11")
    return DroughtWorld(data, template, nov, history, alerts, root)


@pytest.fixture
def drought_twin(drought: DroughtWorld, tmp_path: Path) -> Path:
    """A fresh copy of the drought template twin (cursor 2007-10, version 0)."""
    target = tmp_path / "drought-twin"
    shutil.copytree(drought.template, target)
    return target


# -------------------------------------------------------------------------- noise world

#: Segment length [s]: the shortest the twin's policy accepts (two 8-s range FFTs).
DUR = 16.0
T0 = 1262304018.0
POLICY = {
    "register_models": False,
    "min_refit_seconds": DUR,
    "buffer_seconds": 3 * DUR,
    "min_segment_seconds": DUR,
}


def params(**kw: Any) -> syn.SyntheticParams:
    """Synthetic settings of the noise world: one distractor, so 4 witnesses."""
    return syn.SyntheticParams(**{"duration": DUR, "seed": 4, "t0": T0, "n_distractors": 1, **kw})


def channels_of(seg: syn.SyntheticSegment) -> TimeSeriesDict:
    """Strain first, then the witnesses, as one dict."""
    return TimeSeriesDict({syn.STRAIN_CHANNEL: seg.strain, **seg.witnesses})


@dataclass
class NoiseWorld:
    """The session's noise twin and its inputs.

    Attributes:
        segments: Synthetic segments 0, 1, 2 (``DUR`` s each from ``T0``, 4096 Hz).
        template: Twin that consumed segment 0 (cursor ``T0 + DUR``, version 1).
        seg1: The valid next segment as multi-channel HDF5.
        cleaned: Cleaned strain after consuming ``seg1`` (the reference product).
        quality: Result of that update as JSON data (``SegmentResult``, read back at v2).
        scratch: The session directory holding all of it.
    """

    segments: list[syn.SyntheticSegment]
    template: Path
    seg1: Path
    cleaned: np.ndarray
    quality: dict[str, Any]
    scratch: Path

    @property
    def channels(self) -> list[str]:
        """The twin's channels, strain first."""
        return [syn.STRAIN_CHANNEL, *self.segments[1].witnesses]

    def series(self, k: int = 1) -> dict[str, TimeSeries]:
        """Copies of segment ``k``'s channels, strain first."""
        return {c: ts.copy() for c, ts in channels_of(self.segments[k]).items()}


def cleaned_of(twin_dir: Path, version: int) -> np.ndarray:
    """The cleaned strain a noise twin's version wrote."""
    path = NoiseTwin.open(twin_dir).cleaned_path(version)
    return next(iter(read_multichannel_hdf5(path).values())).value


@pytest.fixture(scope="session")
def noise(tmp_path_factory: pytest.TempPathFactory) -> NoiseWorld:
    """Tiny noise twin: a Wiener cleaner (64 taps) fitted on a segment before the stream,
    which then consumed segment 0; plus the reference update by segment 1."""
    root = tmp_path_factory.mktemp("noise")
    pre = syn.generate(params(t0=T0 - 4 * DUR), 0)
    chans = list(pre.witnesses)
    cleaner = WienerCleaner(syn.STRAIN_CHANNEL, chans, 4096, [(142.0, 162.0)], n_taps=64)
    cleaner.fit(pre.strain, pre.witnesses)
    segments = [syn.generate(params(), k) for k in range(3)]
    template = root / "template"
    twin = NoiseTwin.init(template, cleaner, POLICY)
    twin.update(segments[0].strain, witnesses=segments[0].witnesses)
    seg1 = write_multichannel_hdf5(root / "V-SEG-1.h5", channels_of(segments[1]))
    ref = root / "reference"
    shutil.copytree(template, ref)
    NoiseTwin.open(ref).update(seg1)
    quality = NoiseTwin.open(ref).result(2).model_dump(mode="json")
    return NoiseWorld(segments, template, seg1, cleaned_of(ref, 2), quality, root)


@pytest.fixture
def noise_twin(noise: NoiseWorld, tmp_path: Path) -> Path:
    """A fresh copy of the noise template twin (version 1, cursor after segment 0)."""
    target = tmp_path / "noise-twin"
    shutil.copytree(noise.template, target)
    return target


# ---------------------------------------------------------------- valid follow-ups


@pytest.fixture
def drought_ok(
    cli: Callable[[Sequence[str]], CliResult], drought: DroughtWorld
) -> Callable[[Path], None]:
    """``drought_ok(twin)``: the valid 2007-11 update succeeds (no lock or half-state left)."""

    def check(twin: Path) -> None:
        res = cli(["twin", "update", twin, "--data", drought.nov])
        assert res.rc == 0, f"valid update after the refusal: {res.observed()}"
        assert json.loads(res.out.strip().splitlines()[-1])["cursor"] == "2007-11"

    return check


@pytest.fixture
def noise_ok(
    cli: Callable[[Sequence[str]], CliResult], noise: NoiseWorld
) -> Callable[[Path], None]:
    """``noise_ok(twin)``: the valid segment 1 goes in as version 2 afterwards."""

    def check(twin: Path) -> None:
        res = cli(["twin", "update", twin, "--data", noise.seg1])
        assert res.rc == 0, f"valid update after the refusal: {res.observed()}"
        assert json.loads(res.out.strip().splitlines()[-1])["version"] == 2

    return check


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty current directory for config cases (a default ``workdir: runs`` lands here)."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    yield cwd
