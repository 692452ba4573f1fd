"""Batch cleaning of a stretch (``twins gravwave clean``): outputs and records, resume after an
interruption, bad segments named without stopping the others, refusals before writing, GWF in
and out, and the output of 2 Ray workers equal, byte for byte, to a serial run's."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import psutil
import pytest
from gwpy.timeseries import TimeSeriesDict

import gravwave.batch as batch
from gravwave.batch import CleanedSegment, output_stem, plan
from gravwave.batch_run import clean_batch
from gravwave.cleaners import load_cleaner
from gravwave.io import prepare, read_gwf, read_multichannel_hdf5, write_multichannel_hdf5
from gravwave.quality import quality_of
from twins.atomic import sha256_file
from twins.cli import main
from twins.domains import run_domain_command
from twins.errors import ConfigError, TwinsError


def _load(name: str) -> ModuleType:
    path = Path(__file__).with_name(f"{name}.py")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


bs = _load("_batch_stretch")


class Stretch:
    """Three 16-s segment files, a cascade cleaner, and the serial run's output."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.frames = root / "frames"
        self.files = bs.write_stretch(self.frames, range(2, 5))
        self.cleaner_path = root / "cascade.pt"
        bs.make_cleaner(self.cleaner_path)
        self.reference = root / "reference"
        self.summary = clean_batch([self.frames], self.cleaner_path, self.reference)

    def listing(self, out: Path) -> dict[str, bytes]:
        """Every file of an output directory (temporaries included) -> its bytes."""
        return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


@pytest.fixture(scope="module")
def stretch(tmp_path_factory: pytest.TempPathFactory) -> Stretch:
    return Stretch(tmp_path_factory.mktemp("stretch"))


def _cli(*argv: str | Path) -> int:
    return main([str(a) for a in argv])


def test_serial_run_writes_the_cleaners_output_and_its_record(stretch: Stretch) -> None:
    s = stretch.summary
    assert [x.status for x in s.segments] == ["cleaned"] * 3 and s.exit_code == 0
    assert s.backend == "serial" and s.workers == 1
    cleaner = load_cleaner(stretch.cleaner_path)
    chans = [cleaner.strain_channel, *cleaner.witness_channels]
    names = sorted(stretch.listing(stretch.reference))
    assert names == sorted(
        f"V-V1_TEST_CLEANED-{1262304000 + 16 * k}-16{ext}"
        for k in range(2, 5)
        for ext in (".h5", ".quality.json")
    )
    for src, seg in zip(stretch.files, s.segments, strict=True):
        stem = output_stem(src)
        out = stretch.reference / f"{stem}.h5"
        rec = CleanedSegment.model_validate_json((out.parent / f"{stem}.quality.json").read_text())
        assert rec.source == src.name and rec.source_sha256 == sha256_file(src)
        assert rec.cleaner_sha256 == sha256_file(stretch.cleaner_path)
        assert rec.output == out.name and rec.output_sha256 == sha256_file(out)
        assert rec.cleaned_channel == f"{bs.STRAIN}_CLEANED" and rec.channels == tuple(chans)
        # the batch writes exactly what the cleaner gives for this segment (the same code at
        # one torch thread, as the conftest sets): equal samples, not merely close ones
        data = prepare(read_multichannel_hdf5(src, chans), chans, min_duration=16.0)
        expected = cleaner.clean(data[bs.STRAIN], data)
        got = read_multichannel_hdf5(out)[rec.cleaned_channel]
        assert np.array_equal(got.value, expected.value)
        assert float(got.t0.value) == rec.gps_start == seg.gps_start
        assert rec.gps_end - rec.gps_start == 16.0
        assert rec.quality == quality_of(expected, data[bs.STRAIN], cleaner.bands) == seg.quality


def test_rerun_skips_finished_segments_and_writes_nothing(
    stretch: Stretch, tmp_path: Path, dir_snapshot: Callable[..., dict[str, object]]
) -> None:
    out = tmp_path / "out"
    shutil.copytree(stretch.reference, out)
    before = dir_snapshot(out)
    again = clean_batch([stretch.frames], stretch.cleaner_path, out)
    assert [x.status for x in again.segments] == ["skipped"] * 3 and again.exit_code == 0
    assert [x.quality for x in again.segments] == [x.quality for x in stretch.summary.segments]
    assert dir_snapshot(out) == before


class _Killed(BaseException):
    """Stands for SIGKILL: nothing of the run catches it."""


def test_interrupted_run_leaves_nothing_finished_and_resumes(
    stretch: Stretch, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    real_write = batch.atomic_write
    second_record = f"{output_stem(stretch.files[1])}.quality.json"

    def killed_at_the_second_record(path: Path, content: Any) -> Path:
        if Path(path).name == second_record:
            raise _Killed
        return real_write(path, content)

    monkeypatch.setattr(batch, "atomic_write", killed_at_the_second_record)
    with pytest.raises(_Killed):
        clean_batch([stretch.frames], stretch.cleaner_path, out)
    monkeypatch.undo()
    # the second segment's output is written, its record is not: it is not finished; a kill
    # inside an atomic write leaves a temporary, which looks like nothing finished either
    first, second, third = (output_stem(f) for f in stretch.files)
    assert (out / f"{second}.h5").is_file() and not (out / second_record).exists()
    (out / f".{third}.h5.tmp-0dead0").write_bytes(b"half a file")
    resumed = clean_batch([stretch.frames], stretch.cleaner_path, out)
    assert [x.status for x in resumed.segments] == ["skipped", "cleaned", "cleaned"]
    assert stretch.listing(out) == stretch.listing(stretch.reference)  # same bytes, no temps

    # an output cut short, a record that does not parse: both redone, same bytes again
    (out / f"{first}.h5").write_bytes((out / f"{first}.h5").read_bytes()[:1000])
    (out / f"{third}.quality.json").write_text("{")
    redone = clean_batch([stretch.frames], stretch.cleaner_path, out)
    assert [x.status for x in redone.segments] == ["cleaned", "skipped", "cleaned"]
    assert stretch.listing(out) == stretch.listing(stretch.reference)


def test_sigkill_mid_run_leaves_nothing_that_looks_finished(
    stretch: Stretch, tmp_path: Path
) -> None:
    """A real ``twins gravwave clean`` killed with SIGKILL once its first segment is finished:
    every record names an output with its SHA-256, and the rerun completes the serial bytes."""
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "twins", "-q", "gravwave", "clean", str(stretch.frames),
         "--cleaner", str(stretch.cleaner_path), "--out", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        started = time.monotonic()
        while proc.poll() is None and time.monotonic() - started < 240:  # a bound, not a timing
            if list(out.glob("*.quality.json")):
                break
            time.sleep(0.02)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    records = sorted(out.glob("*.quality.json"))
    assert records, "the run ended before its first segment was finished"
    for path in records:
        rec = CleanedSegment.model_validate_json(path.read_text())
        assert sha256_file(out / rec.output) == rec.output_sha256
    resumed = clean_batch([stretch.frames], stretch.cleaner_path, out)
    assert resumed.segments[0].status == "skipped" and resumed.exit_code == 0
    assert stretch.listing(out) == stretch.listing(stretch.reference)


def test_another_cleaner_redoes_every_segment(stretch: Stretch, tmp_path: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(stretch.reference, out)
    other = bs.make_cleaner(tmp_path / "other.pt")  # another untrained network: new weights
    assert sha256_file(tmp_path / "other.pt") != sha256_file(stretch.cleaner_path)
    s = clean_batch([stretch.frames], tmp_path / "other.pt", out)
    assert [x.status for x in s.segments] == ["cleaned"] * 3
    rec = CleanedSegment.model_validate_json(next(out.glob("*.quality.json")).read_text())
    assert rec.cleaner_sha256 == sha256_file(tmp_path / "other.pt")
    assert type(other).__name__ == s.cleaner_kind == "CascadeCleaner"


def _bad_stretch(stretch: Stretch, root: Path) -> dict[str, str]:
    """The stretch plus one bad file of each kind -> what its error must say."""
    frames = root / "frames"
    shutil.copytree(stretch.frames, frames)
    (frames / "V-V1_TEST-1262400000-16.h5").write_bytes(b"not an HDF5 file")
    good = bs.segment(5)
    missing = TimeSeriesDict((c, ts) for c, ts in good.items() if c != list(good)[-1])
    write_multichannel_hdf5(frames / "V-V1_TEST-1262400100-16.h5", missing)
    nan = bs.segment(6)
    nan[bs.STRAIN].value[100] = np.nan
    write_multichannel_hdf5(frames / "V-V1_TEST-1262400200-16.h5", nan)
    short = TimeSeriesDict((c, ts[: len(ts) // 2]) for c, ts in bs.segment(7).items())
    write_multichannel_hdf5(frames / "V-V1_TEST-1262400300-16.h5", short)
    return {
        "V-V1_TEST-1262400000-16.h5": "not a readable HDF5 file",
        "V-V1_TEST-1262400100-16.h5": f"channel {list(good)[-1]} not found",
        "V-V1_TEST-1262400200-16.h5": "1 NaN/inf samples",
        "V-V1_TEST-1262400300-16.h5": "shorter than one training window (16 s)",
    }


def test_bad_segments_are_named_and_the_others_cleaned(
    stretch: Stretch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = _bad_stretch(stretch, tmp_path)
    out = tmp_path / "out"
    rc = _cli("gravwave", "clean", tmp_path / "frames", "--cleaner", stretch.cleaner_path,
              "--out", out, "--json")  # fmt: skip
    captured = capsys.readouterr()
    assert rc == 3
    doc = json.loads(captured.out)
    status = {Path(s["source"]).name: s for s in doc["segments"]}
    assert len(status) == 7
    for name, reason in bad.items():
        seg = status.pop(name)
        assert seg["status"] == "failed" and seg["error_kind"] == "data"
        assert seg["error"].startswith(name) and reason in seg["error"], seg["error"]
        assert "\n" not in seg["error"]
        assert not list(out.glob(f"{output_stem(Path(name))}*"))  # nothing written for it
    assert {s["status"] for s in status.values()} == {"cleaned"}
    assert stretch.listing(out) == stretch.listing(stretch.reference)
    assert "twins: error: 4 of 7 segment(s) failed: V-V1_TEST-1262400000-16.h5" in captured.err
    assert "Traceback" not in captured.err


def test_summary_table_and_file(
    stretch: Stretch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, summary = tmp_path / "out", tmp_path / "reports" / "summary.json"
    shutil.copytree(stretch.reference, out)
    chans = ",".join(stretch.summary.channels)
    rc = _cli("gravwave", "clean", *stretch.files, "--cleaner", stretch.cleaner_path,
              "--out", out, "--channels", chans, "--summary", summary)  # fmt: skip
    assert rc == 0
    text = capsys.readouterr().out
    assert "V-V1_TEST-1262304032-16.h5  skipped  GPS 1262304032-1262304048" in text
    assert "cleaned 0, skipped 3 (finished before), failed 0 of 3 segment(s)" in text
    doc = json.loads(summary.read_text())
    assert doc["backend"] == "serial" and len(doc["segments"]) == 3


@pytest.mark.parametrize(
    ("args", "rc", "message"),
    [
        (["--channels", "V1:NOPE,V1:X"], 2, "the first channel is V1:NOPE"),
        (["--channels", f"{bs.STRAIN},V1:X"], 2, "missing V1:"),
        (["--workers", "0"], 2, "--workers must be at least 1"),
        (["--policy", '{"fftlength": -1}'], 2, "twin policy: fftlength"),
        (["--policy", "{nope"], 2, "--policy: not valid JSON"),
        (["--pattern", "*.gwf"], 2, "no segment files in"),
    ],
)
def test_refusals_before_anything_is_written(
    stretch: Stretch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    rc: int,
    message: str,
) -> None:
    out = tmp_path / "out"
    got = _cli("gravwave", "clean", stretch.frames, "--cleaner", stretch.cleaner_path,
               "--out", out, *args)  # fmt: skip
    err = capsys.readouterr().err
    assert got == rc and message in err, err
    assert len(err.strip().splitlines()) <= 2 and not out.exists()


def test_refused_cleaner_inputs_and_outputs(
    stretch: Stretch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"junk")
    cases = [
        (["--cleaner", tmp_path / "none.pt", "--out", tmp_path / "o"], 3, "none.pt not found"),
        (["--cleaner", junk, "--out", tmp_path / "o"], 3, "junk.pt cannot be read"),
        (["--cleaner", stretch.cleaner_path, "--out", stretch.frames], 2, "holds input"),
    ]
    for args, rc, message in cases:
        assert _cli("gravwave", "clean", stretch.frames, *args) == rc
        assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    (tmp_path / "file").write_text("")
    assert _cli("gravwave", "clean", stretch.frames, "--cleaner", stretch.cleaner_path,
                "--out", tmp_path / "file" / "o") == 2  # fmt: skip
    assert "cannot create the output directory" in capsys.readouterr().err
    assert _cli("gravwave", "clean", tmp_path / "nowhere", "--cleaner", junk, "--out", "o") == 3
    with pytest.raises(ConfigError, match="nowhere does not exist"):
        clean_batch([tmp_path / "nowhere"], stretch.cleaner_path, tmp_path / "o")


def test_output_names_order_and_clashes(tmp_path: Path) -> None:
    assert output_stem(Path("H-H1_GWOSC_4KHZ_R1-1126259447-32.gwf")) == (
        "H-H1_GWOSC_4KHZ_R1_CLEANED-1126259447-32"
    )
    assert output_stem(Path("segment_a.hdf5")) == "segment_a_CLEANED"
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        d.mkdir()
    names = ["V-X-1000000100-100.gwf", "V-X-999999900-100.gwf", "zz.h5", "V-X-1000000000-100.h5"]
    for n in names:
        (a / n).write_bytes(b"")
    found = batch.find_segments([a], ("*.gwf", "*.h5"))
    assert [p.name for p in found] == [names[1], names[3], names[0], names[2]]  # GPS, then name
    (b / "zz.h5").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"a/zz.h5 and .*b/zz.h5 would both be written"):
        plan([a / "zz.h5", b / "zz.h5"], tmp_path / "out", "hdf5")


@pytest.mark.filterwarnings("ignore:LAL has no unit corresponding to:UserWarning")
def test_gwf_in_and_out_and_a_file_of_unknown_type(stretch: Stretch, tmp_path: Path) -> None:
    frames = tmp_path / "gwf"
    frames.mkdir()
    for k in range(2, 4):
        data = bs.segment(k)
        data.write(str(frames / bs.frame_name(data, ".gwf")), format="gwf")
    (frames / "notes.txt").write_text("not a segment")
    s = clean_batch([frames, frames / "notes.txt"], stretch.cleaner_path, tmp_path / "out",
                    output_format="gwf")  # fmt: skip
    assert [x.status for x in s.segments] == ["cleaned", "cleaned", "failed"]
    assert "notes.txt: unknown segment file type .txt" in (s.segments[2].error or "")
    for src in stretch.files[:2]:  # the same samples as the HDF5 run of the same segments
        stem = output_stem(src)
        ref = read_multichannel_hdf5(stretch.reference / f"{stem}.h5")
        got = read_gwf(tmp_path / "out" / f"{stem}.gwf", list(ref))
        assert np.array_equal(got[bs.STRAIN + "_CLEANED"].value, ref[bs.STRAIN + "_CLEANED"].value)


def test_segments_at_another_rate_are_resampled_to_the_cleaners(
    stretch: Stretch, tmp_path: Path
) -> None:
    fast = bs.PARAMS.model_copy(update={"sample_rate": 8192})
    data = bs.segment(2, fast)
    write_multichannel_hdf5(tmp_path / "in" / "fast.h5", data)
    s = clean_batch([tmp_path / "in"], stretch.cleaner_path, tmp_path / "out")
    assert s.segments[0].status == "cleaned"
    got = read_multichannel_hdf5(tmp_path / "out" / "fast_CLEANED.h5")
    ts = got[bs.STRAIN + "_CLEANED"]
    assert float(ts.sample_rate.value) == 4096.0 and len(ts) == 16 * 4096


def test_domain_command_help_and_usage(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["gravwave", "-h"])
    assert exc.value.code == 0 and "clean" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["gravwave", "clean", "-h"])
    assert exc.value.code == 0 and "--workers" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["gravwave", "nope"])
    assert exc.value.code == 2 and "invalid choice: 'nope'" in capsys.readouterr().err
    assert main(["toy", "clean"]) == 1
    assert "domain 'toy' has no commands of its own" in capsys.readouterr().err
    with pytest.raises(TwinsError, match="unknown domain 'nope'; installed: gravwave"):
        run_domain_command("nope", ["clean"])


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.distributed
def test_ray_two_workers_match_a_serial_run(
    stretch: Stretch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two Ray workers on a local Ray: the same bytes as the serial run; the bad segments
    fail on their workers and the others are cleaned."""
    bad = _bad_stretch(stretch, tmp_path)
    out = tmp_path / "out"
    rc = _cli("gravwave", "clean", tmp_path / "frames", "--cleaner", stretch.cleaner_path,
              "--out", out, "--workers", "2", "--json")  # fmt: skip
    cap = capsys.readouterr()
    assert cap.out, f"exit {rc}, no summary; stderr: {cap.err[-2000:]}"
    doc = json.loads(cap.out)
    assert rc == 3 and doc["backend"] == "ray" and doc["workers"] == 2
    failed = {Path(s["source"]).name for s in doc["segments"] if s["status"] == "failed"}
    assert failed == set(bad)
    assert stretch.listing(out) == stretch.listing(stretch.reference)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _session(sid: int) -> list[psutil.Process]:
    """The live processes of session ``sid``."""
    found = []
    for proc in psutil.process_iter(["status"]):
        with contextlib.suppress(OSError, psutil.Error):
            if os.getsid(proc.pid) == sid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(proc)
    return found


def _stop_ray_head(head: subprocess.Popen[bytes], temp: Path) -> None:
    """Kill every process of the head's session (gcs, raylet, agents, workers: started here
    in a session of their own), never another Ray on the machine."""
    procs = _session(head.pid)
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(procs, timeout=30)
    head.wait(timeout=30)
    shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.distributed
def test_ray_joins_an_existing_cluster_with_address(stretch: Stretch, tmp_path: Path) -> None:
    """``--address`` joins a running cluster (started here with ``ray start --head``)."""
    port = _free_port()
    temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # Ray's socket paths must be short
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    head = subprocess.Popen(
        [str(Path(sys.executable).parent / "ray"), "start", "--head", f"--port={port}",
         "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats",
         f"--temp-dir={temp}", "--block"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        started = time.monotonic()
        while head.poll() is None and time.monotonic() - started < 120:  # a bound, not a timing
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.5)
        assert head.poll() is None, "ray start --head exited"
        out = tmp_path / "out"
        argv = ["gravwave", "clean", stretch.frames, "--cleaner", stretch.cleaner_path]
        assert _cli(*argv, "--out", out, "--address", f"127.0.0.1:{port}", "--workers", "2") == 0
        assert stretch.listing(out) == stretch.listing(stretch.reference)
    finally:
        _stop_ray_head(head, temp)
    assert not _session(head.pid)
