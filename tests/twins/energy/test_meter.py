"""Tests of twins.energy: RAPL on a fake sysfs tree, a fake pynvml, CPU seconds, reports."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

from twins.energy import EnergyMeter, EnergyReport, available_sources
from twins.energy import rapl as rapl_mod
from twins.energy.nvml import visible_indices
from twins.energy.rapl import counter_delta, discover_zones

MAX_UJ = 262_143_328_850  # a real package max_energy_range_uj
#: /proc reports user and system CPU time each truncated to whole clock ticks, so the
#: difference of two readings of their sum is at most 2 ticks below the true CPU time.
CPU_SLACK_S = 2 / os.sysconf("SC_CLK_TCK")

# Energies: pytest.approx (rel 1e-6) compares float64 sums of a few integer microjoule
# deltas scaled by 1e-6 with the decimal joules written here: a few u64 (1e-15) apart.


# -- fake sysfs --------------------------------------------------------------------------


def make_zone(root: Path, zone_id: str, name: str, energy_uj: int, max_uj: int = MAX_UJ) -> Path:
    """Create a RAPL zone directory; sub-zones are nested inside their parent like sysfs."""
    parts = zone_id.split(":")
    parent = root / ":".join(parts[:2]) if len(parts) == 3 else root
    zone = parent / zone_id
    zone.mkdir(parents=True)
    (zone / "name").write_text(name + "\n")
    (zone / "energy_uj").write_text(f"{energy_uj}\n")
    (zone / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return zone


def set_uj(zone: Path, value: int) -> None:
    (zone / "energy_uj").write_text(f"{value}\n")


@pytest.fixture
def sysfs(tmp_path: Path) -> dict[str, Path]:
    """Two packages and a dram sub-zone of package 0, also linked flat as in sysfs."""
    root = tmp_path / "powercap"
    root.mkdir()
    (root / "intel-rapl").mkdir()  # the control-type directory, not a zone
    zones = {
        "root": root,
        "pkg0": make_zone(root, "intel-rapl:0", "package-0", 5_000_000),
        "dram": make_zone(root, "intel-rapl:0:0", "dram", 7_000_000),
        "pkg1": make_zone(root, "intel-rapl:1", "package-1", 9_000_000),
    }
    (root / "intel-rapl:0:0").symlink_to(zones["dram"])  # flat alias of the sub-zone
    return zones


# -- RAPL --------------------------------------------------------------------------------


def test_discover_zones_labels_levels_and_dedup(sysfs: dict[str, Path]) -> None:
    zones = discover_zones(sysfs["root"])
    assert [(z.label, z.top_level) for z in zones] == [
        ("rapl:package-0", True),
        ("rapl:package-1", True),
        ("rapl:package-0/dram", False),
    ]
    assert all(z.max_energy_range_uj == MAX_UJ for z in zones)
    assert available_sources(sysfs["root"], use_nvml=False) == [z.label for z in zones]


def test_two_packages_and_dram_known_increments(sysfs: dict[str, Path]) -> None:
    meter = EnergyMeter(rapl_root=sysfs["root"], use_nvml=False).start()
    set_uj(sysfs["pkg0"], 5_000_000 + 1_000_000)  # +1.0 J
    set_uj(sysfs["pkg1"], 9_000_000 + 2_500_000)  # +2.5 J
    set_uj(sysfs["dram"], 7_000_000 + 300_000)  # +0.3 J, reported but not in the total
    report = meter.stop()

    assert report.energy_j == pytest.approx(
        {"rapl:package-0": 1.0, "rapl:package-1": 2.5, "rapl:package-0/dram": 0.3}
    )
    assert report.total_j == pytest.approx(3.5)
    assert report.sources == ("rapl:package-0", "rapl:package-1")
    assert report.estimated_j is None
    assert report.describe().endswith("energy 3.5 J (rapl:package-0, rapl:package-1)")
    metrics = report.as_metrics()
    assert metrics["energy_j"] == pytest.approx(3.5)
    assert "energy_estimated_j" not in metrics
    per_domain = report.as_metrics("e", per_domain=True)
    assert per_domain["e_j_rapl_package-0_dram"] == pytest.approx(0.3)
    assert all(isinstance(v, float) for v in per_domain.values())


def test_counter_delta_wrap_and_reset() -> None:
    assert counter_delta(100, 250, 1000) == 150
    assert counter_delta(900, 50, 1000) == 100 + 50  # one wrap at max_range
    assert counter_delta(900, 50, None) == 50  # non-wrapping counter: a reset
    assert counter_delta(900, 50, 500) == 50  # nonsensical range: treated as reset


def test_wraparound_between_start_and_stop(tmp_path: Path) -> None:
    max_uj = 1_000_000
    zone = make_zone(tmp_path, "intel-rapl:0", "package-0", max_uj - 1_000, max_uj)
    meter = EnergyMeter(rapl_root=tmp_path, use_nvml=False).start()
    set_uj(zone, 500)  # wrapped once
    report = meter.stop()
    assert report.total_j == pytest.approx((1_000 + 500) * 1e-6)


def test_polls_accumulate_across_several_wraps(tmp_path: Path) -> None:
    max_uj = 1_000_000
    zone = make_zone(tmp_path, "intel-rapl:0", "package-0", 100, max_uj)
    meter = EnergyMeter(rapl_root=tmp_path, use_nvml=False).start()
    for value in (900_000, 100_000, 950_000, 20_000):  # two wraps, each seen by a poll
        set_uj(zone, value)
        meter.poll()
    set_uj(zone, 40_000)
    deltas = [900_000 - 100, 100_000 + 100_000, 850_000, 50_000 + 20_000, 20_000]
    expected = sum(deltas)
    assert meter.stop().total_j == pytest.approx(expected * 1e-6)


def test_background_polling_catches_wrap(tmp_path: Path) -> None:
    max_uj = 1_000_000
    zone = make_zone(tmp_path, "intel-rapl:0", "package-0", 0, max_uj)
    meter = EnergyMeter(rapl_root=tmp_path, use_nvml=False, poll_interval_s=0.002).start()

    def wait_for_polls(n: int) -> None:
        target = meter.polls + n
        # a hang guard, not a timing: the thread polls every 2 ms; this fails only if it stops
        deadline = time.monotonic() + 60.0
        while meter.polls < target:
            assert time.monotonic() < deadline, "background thread did not poll"
            time.sleep(0.002)

    set_uj(zone, 800_000)
    wait_for_polls(2)
    set_uj(zone, 300_000)  # wrapped; only the background poll can notice before stop
    wait_for_polls(2)
    set_uj(zone, 600_000)
    report = meter.stop()
    assert report.total_j == pytest.approx((max_uj + 600_000) * 1e-6)


def test_psys_not_added_to_package_total(tmp_path: Path) -> None:
    pkg = make_zone(tmp_path, "intel-rapl:0", "package-0", 0)
    psys = make_zone(tmp_path, "intel-rapl:1", "psys", 0)
    meter = EnergyMeter(rapl_root=tmp_path, use_nvml=False).start()
    set_uj(pkg, 2_000_000)
    set_uj(psys, 5_000_000)
    report = meter.stop()
    assert report.energy_j == pytest.approx({"rapl:package-0": 2.0, "rapl:psys": 5.0})
    assert report.total_j == pytest.approx(2.0)
    assert report.sources == ("rapl:package-0",)


def test_energy_uj_directory_makes_zone_unavailable(sysfs: dict[str, Path]) -> None:
    energy = sysfs["pkg1"] / "energy_uj"
    energy.unlink()
    energy.mkdir()  # reading it raises IsADirectoryError, as good as EACCES here
    assert available_sources(sysfs["root"], use_nvml=False) == [
        "rapl:package-0",
        "rapl:package-0/dram",
    ]


def test_permission_error_makes_source_unavailable(
    sysfs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_read_int = rapl_mod._read_int

    def read_int(path: Path) -> int:
        if path.name == "energy_uj":  # root-only since Linux 5.10 (CVE-2020-8694)
            raise PermissionError(13, "Permission denied", str(path))
        return real_read_int(path)

    monkeypatch.setattr(rapl_mod, "_read_int", read_int)
    assert available_sources(sysfs["root"], use_nvml=False) == []
    report = EnergyMeter(rapl_root=sysfs["root"], use_nvml=False).start().stop()
    assert report.energy_j is None and report.total_j is None and report.sources == ()
    assert "energy unavailable" in report.describe()


def test_counter_unreadable_mid_run_is_skipped_not_raised(
    sysfs: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    meter = EnergyMeter(rapl_root=sysfs["root"], use_nvml=False).start()
    energy = sysfs["pkg1"] / "energy_uj"
    energy.unlink()
    energy.mkdir()
    set_uj(sysfs["pkg0"], 5_000_000 + 400_000)
    with caplog.at_level("WARNING", logger="twins.energy.meter"):
        meter.poll()
        meter.poll()
    assert sum("rapl:package-1 unreadable" in r.getMessage() for r in caplog.records) == 1
    energy.rmdir()
    set_uj(sysfs["pkg1"], 9_000_000 + 100_000)  # readable again: delta since last good read
    report = meter.stop()
    assert report.energy_j is not None
    assert report.energy_j["rapl:package-0"] == pytest.approx(0.4)
    assert report.energy_j["rapl:package-1"] == pytest.approx(0.1)


def test_lap_reports_since_previous_lap_and_total_keeps_going(sysfs: dict[str, Path]) -> None:
    with EnergyMeter(rapl_root=sysfs["root"], use_nvml=False) as meter:
        set_uj(sysfs["pkg0"], 6_000_000)  # +1 J
        first = meter.lap()
        set_uj(sysfs["pkg0"], 8_000_000)  # +2 J
        second = meter.lap()
        so_far = meter.read()
        set_uj(sysfs["pkg0"], 8_500_000)  # +0.5 J, after the last lap
    total = meter.report
    assert first.total_j == pytest.approx(1.0)
    assert second.total_j == pytest.approx(2.0)
    assert so_far.total_j == pytest.approx(3.0)
    assert total is not None and total.total_j == pytest.approx(3.5)
    assert total.wall_s >= first.wall_s + second.wall_s
    assert meter.read() is total and meter.stop() is total  # stopped: final report kept


def test_lifecycle_errors() -> None:
    meter = EnergyMeter(rapl_root="/nonexistent", use_nvml=False)
    with pytest.raises(RuntimeError):
        meter.poll()
    with pytest.raises(RuntimeError):
        meter.read()
    with pytest.raises(RuntimeError):
        meter.lap()
    with pytest.raises(RuntimeError):
        meter.stop()
    meter.start()
    with pytest.raises(RuntimeError):
        meter.start()
    meter.stop()
    meter.poll()  # stopped: a no-op
    with pytest.raises(RuntimeError):
        meter.lap()
    with pytest.raises(ValueError):
        EnergyMeter(estimate_watts_per_core=0)
    with pytest.raises(ValueError):
        EnergyMeter(poll_interval_s=-1)


# -- CPU seconds ---------------------------------------------------------------------------

CHILD = (
    "import sys, time\n"
    "t0 = time.process_time()\n"
    "while time.process_time() - t0 < {busy}: pass\n"
    "print(time.process_time(), flush=True)\n"
    "{tail}\n"
)


def test_cpu_seconds_grow_with_busy_loop() -> None:
    meter = EnergyMeter(rapl_root="/nonexistent", use_nvml=False).start()
    t0 = time.thread_time()
    while time.thread_time() - t0 < 0.2:  # this thread's CPU time: it cannot outrun the wall
        pass
    report = meter.stop()
    assert report.cpu_s >= 0.2 - CPU_SLACK_S
    assert report.wall_s >= 0.2


def test_cpu_seconds_include_reaped_child() -> None:
    meter = EnergyMeter(rapl_root="/nonexistent", use_nvml=False).start()
    done = subprocess.run(
        [sys.executable, "-c", CHILD.format(busy=0.3, tail="")],
        capture_output=True,
        text=True,
        check=True,
    )
    child_cpu = float(done.stdout)
    report = meter.stop()
    assert child_cpu >= 0.3
    # the child's own reading is a lower bound of the CPU time it brings to ours
    assert report.cpu_s >= child_cpu - CPU_SLACK_S


def test_cpu_seconds_include_live_unreaped_child() -> None:
    meter = EnergyMeter(rapl_root="/nonexistent", use_nvml=False).start()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD.format(busy=0.3, tail="sys.stdin.readline()")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        child_cpu = float(child.stdout.readline())  # child has burnt CPU and is still alive
        while_alive = meter.read()
        assert child.poll() is None
        assert while_alive.cpu_s >= child_cpu - CPU_SLACK_S
        child.stdin.close()
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    after_reap = meter.stop()
    assert after_reap.cpu_s >= while_alive.cpu_s  # moved to children_* without loss


# -- estimates and the real machine -------------------------------------------------------


def test_estimate_only_when_asked_and_labelled() -> None:
    plain = EnergyMeter(rapl_root="/nonexistent", use_nvml=False).start().stop()
    assert plain.estimated_j is None
    assert "energy_estimated_j" not in plain.as_metrics()
    assert "estimated" not in plain.describe()

    meter = EnergyMeter(rapl_root="/nonexistent", use_nvml=False, estimate_watts_per_core=8.0)
    meter.start()
    t0 = time.process_time()
    while time.process_time() - t0 < 0.05:
        pass
    report = meter.stop()
    assert report.cpu_s > 0
    assert report.estimated_j == pytest.approx(report.cpu_s * 8.0)
    assert report.total_j is None and report.energy_j is None  # an estimate is not a measure
    metrics = report.as_metrics("run")
    assert set(metrics) == {"run_wall_s", "run_cpu_s", "run_estimated_j"}
    assert metrics["run_estimated_j"] == pytest.approx(report.estimated_j)
    text = report.describe()
    assert "energy unavailable" in text
    assert "assumed 8.0 W/core, NOT measured" in text
    assert report.per_sample(10) is None  # never derived from the estimate


def test_real_machine_reports_unavailable() -> None:
    if available_sources():
        pytest.skip("this machine has a readable RAPL or NVML counter")
    with EnergyMeter() as meter:
        pass
    report = meter.report
    assert report is not None
    assert report.energy_j is None and report.total_j is None and report.sources == ()
    assert report.describe().endswith("energy unavailable (no RAPL or NVML counter readable)")
    assert set(report.as_metrics()) == {"energy_wall_s", "energy_cpu_s"}


def test_per_sample_and_describe_format() -> None:
    report = EnergyReport(
        wall_s=12.34,
        cpu_s=20.06,
        energy_j={"rapl:package-0": 345.2},
        total_j=345.2,
        sources=("rapl:package-0",),
    )
    assert report.per_sample(4) == pytest.approx(86.3)
    with pytest.raises(ValueError):
        report.per_sample(0)
    assert report.describe() == "wall 12.3 s, CPU 20.1 s, energy 345.2 J (rapl:package-0)"
    estimate = EnergyReport(wall_s=12.3, cpu_s=20.1, estimated_j=160.8, assumed_watts_per_core=8.0)
    assert estimate.describe() == (
        "wall 12.3 s, CPU 20.1 s, energy unavailable (no RAPL or NVML counter readable), "
        "estimated 161 J (assumed 8.0 W/core, NOT measured)"
    )
    assert estimate.per_sample(3) is None


# -- NVML ------------------------------------------------------------------------------------


class FakeNVMLError(Exception):
    pass


def fake_pynvml(counters_mj: dict[int, int | None], fail_init: bool = False) -> types.ModuleType:
    """A pynvml stand-in: ``counters_mj[i]`` is GPU i's counter, None = not supported."""
    mod = types.ModuleType("pynvml")
    mod.NVMLError = FakeNVMLError  # type: ignore[attr-defined]
    mod.state = {"init": 0, "shutdown": 0}  # type: ignore[attr-defined]

    def nvmlInit() -> None:
        if fail_init:
            raise FakeNVMLError("NVML Shared Library Not Found")
        mod.state["init"] += 1  # type: ignore[attr-defined]

    def nvmlShutdown() -> None:
        mod.state["shutdown"] += 1  # type: ignore[attr-defined]

    def nvmlDeviceGetTotalEnergyConsumption(handle: tuple[str, int]) -> int:
        value = counters_mj[handle[1]]
        if value is None:
            raise FakeNVMLError("Not Supported")
        return value

    mod.nvmlInit = nvmlInit  # type: ignore[attr-defined]
    mod.nvmlShutdown = nvmlShutdown  # type: ignore[attr-defined]
    mod.nvmlDeviceGetCount = lambda: len(counters_mj)  # type: ignore[attr-defined]
    mod.nvmlDeviceGetHandleByIndex = lambda i: ("handle", i)  # type: ignore[attr-defined]
    mod.nvmlDeviceGetTotalEnergyConsumption = nvmlDeviceGetTotalEnergyConsumption  # type: ignore[attr-defined]
    return mod


def test_nvml_success_path_accumulates(monkeypatch: pytest.MonkeyPatch) -> None:
    counters: dict[int, int | None] = {0: 1_000_000, 1: 50_000, 2: None}  # gpu2: no counter
    fake = fake_pynvml(counters)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)

    assert available_sources("/nonexistent") == ["nvml:gpu0", "nvml:gpu1"]
    meter = EnergyMeter(rapl_root="/nonexistent").start()
    counters[0] = 1_000_000 + 120_000  # +120 J
    counters[1] = 50_000 + 30_500  # +30.5 J
    meter.poll()
    counters[0] += 80_000  # +80 J
    lap = meter.lap()
    counters[1] += 1_500  # +1.5 J
    report = meter.stop()

    assert lap.energy_j == pytest.approx({"nvml:gpu0": 200.0, "nvml:gpu1": 30.5})
    assert report.energy_j == pytest.approx({"nvml:gpu0": 200.0, "nvml:gpu1": 32.0})
    assert report.total_j == pytest.approx(232.0)
    assert report.sources == ("nvml:gpu0", "nvml:gpu1")
    assert report.per_sample(100) == pytest.approx(2.32)
    assert "energy 232.0 J (nvml:gpu0, nvml:gpu1)" in report.describe()
    assert fake.state["init"] == fake.state["shutdown"] == 2  # type: ignore[attr-defined]


def test_nvml_and_rapl_together(sysfs: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    counters: dict[int, int | None] = {0: 0, 1: 0}
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(counters))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")  # this process owns GPU 1 only
    meter = EnergyMeter(rapl_root=sysfs["root"]).start()
    counters[0] = 999_000
    counters[1] = 10_000  # +10 J
    set_uj(sysfs["pkg0"], 5_000_000 + 2_000_000)  # +2 J
    report = meter.stop()
    assert report.sources == ("rapl:package-0", "rapl:package-1", "nvml:gpu1")
    assert report.total_j == pytest.approx(12.0)
    assert "nvml:gpu0" not in (report.energy_j or {})


def test_nvml_errors_mean_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml({0: 5}, fail_init=True))
    assert available_sources("/nonexistent") == []
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml -> ImportError
    assert available_sources("/nonexistent") == []
    report = EnergyMeter(rapl_root="/nonexistent").start().stop()
    assert report.energy_j is None


def test_visible_indices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert visible_indices(4) == [0, 1, 2, 3]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    assert visible_indices(4) == [3]
    assert visible_indices(4, "2,0") == [0, 2]
    assert visible_indices(4, "1,7") == [1]
    assert visible_indices(4, "1,-1,2") == [1]
    assert visible_indices(4, "") == []
    assert visible_indices(2, "GPU-8a3c-uuid") == [0, 1]
