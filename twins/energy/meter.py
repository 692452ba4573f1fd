"""Energy, wall time and CPU time of a run: :class:`EnergyMeter` and :class:`EnergyReport`.

The meter always records wall time (s) and the CPU seconds of this process and its
children. It records energy (J) only from hardware counters that can actually be read:
Intel RAPL through powercap sysfs (:mod:`twins.energy.rapl`) and NVIDIA GPUs through
NVML (:mod:`twins.energy.nvml`). When neither is readable the report says so; an
estimate from CPU seconds is produced only on request, and it is always labelled as an
estimate and kept apart from measured energy.

Counters wrap (RAPL at ``max_energy_range_uj``, from tens of seconds to hours of full
load depending on the CPU). A single wrap between two readings is corrected; several
cannot be detected. Call :meth:`EnergyMeter.poll` (or :meth:`~EnergyMeter.lap`) at least
once per wrap period, e.g. every step or epoch, or pass ``poll_interval_s`` to poll from a
background thread. Deltas are accumulated between polls, so a long epoch is fine as long
as it is polled often enough.

Example:
    >>> with EnergyMeter() as meter:                    # doctest: +SKIP
    ...     for epoch in range(3):
    ...         train_one_epoch()
    ...         mlflow.log_metrics(meter.lap().as_metrics("epoch_energy"), step=epoch)
    >>> print(meter.report.describe())                   # doctest: +SKIP
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from twins.energy.nvml import JOULES_PER_MJ, NvmlSession
from twins.energy.rapl import DEFAULT_RAPL_ROOT, JOULES_PER_UJ, counter_delta, discover_zones

logger = logging.getLogger(__name__)

UNAVAILABLE_REASON = "no RAPL or NVML counter readable"


@dataclass(frozen=True)
class EnergyReport:
    """What a run (or one lap of it) cost.

    Attributes:
        wall_s: Elapsed wall-clock time in seconds.
        cpu_s: CPU seconds (user + system) of this process and its child processes.
        energy_j: Measured energy in joules per source and domain, e.g.
            ``{"rapl:package-0": 310.2, "rapl:package-0/dram": 20.5, "nvml:gpu0": 900.0}``;
            None when no counter was readable.
        total_j: Measured joules summed over the top-level domains listed in
            ``sources`` (RAPL packages and GPUs; sub-domains such as ``dram`` are not
            added); None when no top-level counter was readable.
        estimated_j: ``cpu_s * assumed_watts_per_core`` in joules, only when the meter
            was asked for an estimate; otherwise None. Never measured.
        sources: Labels of the domains summed into ``total_j``; empty when unmeasured.
        assumed_watts_per_core: The W/core behind ``estimated_j``, or None.
    """

    wall_s: float
    cpu_s: float
    energy_j: dict[str, float] | None = None
    total_j: float | None = None
    estimated_j: float | None = None
    sources: tuple[str, ...] = ()
    assumed_watts_per_core: float | None = None

    @property
    def measured(self) -> bool:
        """True when ``total_j`` comes from a hardware counter."""
        return self.total_j is not None

    def per_sample(self, n: int) -> float | None:
        """Measured joules per sample.

        Args:
            n: Number of samples processed (must be positive).

        Returns:
            ``total_j / n`` in J, or None when energy was not measured (an estimate is
            never used here).

        Raises:
            ValueError: ``n`` is not positive.
        """
        if n <= 0:
            raise ValueError(f"per_sample needs a positive sample count, got {n}")
        if self.total_j is None:
            return None
        return self.total_j / n

    def as_metrics(self, prefix: str = "energy", per_domain: bool = False) -> dict[str, float]:
        """Flat float metrics, ready for ``mlflow.log_metrics``.

        Keys: ``{prefix}_wall_s`` and ``{prefix}_cpu_s`` always; ``{prefix}_j`` (measured
        total, J) only when measured; ``{prefix}_estimated_j`` only when estimated. An
        estimate never goes under the measured key.

        Args:
            prefix: Key prefix.
            per_domain: Also add ``{prefix}_j_<domain>`` for every measured domain, with
                characters MLflow rejects replaced (``rapl:package-0/dram`` becomes
                ``rapl_package-0_dram``).

        Returns:
            Metric name to float value.
        """
        metrics = {f"{prefix}_wall_s": float(self.wall_s), f"{prefix}_cpu_s": float(self.cpu_s)}
        if self.total_j is not None:
            metrics[f"{prefix}_j"] = float(self.total_j)
        if self.estimated_j is not None:
            metrics[f"{prefix}_estimated_j"] = float(self.estimated_j)
        if per_domain and self.energy_j:
            for label, joules in self.energy_j.items():
                metrics[f"{prefix}_j_{_metric_safe(label)}"] = float(joules)
        return metrics

    def describe(self) -> str:
        """One human-readable line.

        Returns:
            E.g. ``"wall 12.3 s, CPU 20.1 s, energy 345.2 J (rapl:package-0)"`` or
            ``"wall 12.3 s, CPU 20.1 s, energy unavailable (no RAPL or NVML counter
            readable), estimated 161 J (assumed 8.0 W/core, NOT measured)"``.
        """
        parts = [f"wall {self.wall_s:.1f} s", f"CPU {self.cpu_s:.1f} s"]
        if self.total_j is not None:
            parts.append(f"energy {self.total_j:.1f} J ({', '.join(self.sources)})")
        elif self.energy_j:
            domains = ", ".join(f"{k} {v:.1f} J" for k, v in self.energy_j.items())
            parts.append(f"energy total unavailable (only sub-domains readable: {domains})")
        else:
            parts.append(f"energy unavailable ({UNAVAILABLE_REASON})")
        if self.estimated_j is not None:
            watts = (
                f"{self.assumed_watts_per_core:.1f}"
                if self.assumed_watts_per_core is not None
                else "?"
            )
            parts.append(
                f"estimated {self.estimated_j:.0f} J (assumed {watts} W/core, NOT measured)"
            )
        return ", ".join(parts)


def _metric_safe(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-._" else "_" for c in label)


def process_tree_cpu_seconds(process: psutil.Process | None = None) -> float:
    """CPU seconds (user + system) used so far by a process and all its descendants.

    Sums the process's own times, the times of children it has already reaped
    (``children_user``/``children_system``), and the times of every live (or zombie)
    descendant together with what those have reaped. A descendant's time therefore
    counts exactly once whether or not it has been reaped yet. Time of descendants that
    were orphaned and reaped by another process (e.g. ``init``), or of processes that
    are not descendants (Ray workers started by ``raylet``), is not seen.

    Args:
        process: Process to measure; this process when None.

    Returns:
        CPU time in seconds.
    """
    proc = process if process is not None else psutil.Process()
    times = proc.cpu_times()
    total = times.user + times.system + times.children_user + times.children_system
    try:
        children = proc.children(recursive=True)
    except psutil.Error as err:
        logger.debug("cannot list child processes: %s", err)
        children = []
    for child in children:
        try:
            ct = child.cpu_times()
        except psutil.Error:  # exited (and reaped) meanwhile, or not ours to read
            continue
        total += ct.user + ct.system + ct.children_user + ct.children_system
    return total


@dataclass
class _Domain:
    """One energy counter being accumulated, in its native integer unit."""

    label: str
    counted: bool  # summed into total_j
    joules_per_unit: float
    read: Callable[[], int]
    max_range: int | None
    last: int
    accumulated: int = 0
    failing: bool = False


@dataclass(frozen=True)
class _Mark:
    wall: float
    cpu: float
    accumulated: dict[str, int]


def _open_domains(rapl_root: Path, use_nvml: bool) -> tuple[list[_Domain], NvmlSession | None]:
    domains: list[_Domain] = []
    zones = discover_zones(rapl_root)
    has_package = any(z.top_level and z.name.startswith("package") for z in zones)
    for zone in zones:
        try:
            first = zone.read_energy_uj()
        except (OSError, ValueError) as err:
            logger.debug("RAPL zone %s unavailable: %s", zone.label, err)
            continue
        # psys (platform) already contains the packages: sum it only when alone.
        counted = zone.top_level and (zone.name.startswith("package") or not has_package)
        domains.append(
            _Domain(
                label=zone.label,
                counted=counted,
                joules_per_unit=JOULES_PER_UJ,
                read=zone.read_energy_uj,
                max_range=zone.max_energy_range_uj,
                last=first,
            )
        )
    session = NvmlSession.open() if use_nvml else None
    if session is not None:
        for gpu in session.gpus:
            try:
                first = gpu.read_mj()
            except Exception as err:  # NVMLError or anything the binding raises
                logger.debug("NVML %s unavailable: %s", gpu.label, err)
                continue
            domains.append(
                _Domain(
                    label=gpu.label,
                    counted=True,
                    joules_per_unit=JOULES_PER_MJ,
                    read=gpu.read_mj,
                    max_range=None,
                    last=first,
                )
            )
    return domains, session


def available_sources(
    rapl_root: Path | str = DEFAULT_RAPL_ROOT, use_nvml: bool = True
) -> list[str]:
    """Labels of the energy counters this process can read right now.

    Args:
        rapl_root: The powercap class directory.
        use_nvml: Also probe NVIDIA GPUs through NVML.

    Returns:
        Domain labels, e.g. ``["rapl:package-0", "rapl:package-0/dram", "nvml:gpu0"]``;
        empty when energy cannot be measured here.
    """
    domains, session = _open_domains(Path(rapl_root), use_nvml)
    if session is not None:
        session.close()
    return [d.label for d in domains]


class EnergyMeter:
    """Measures wall time, CPU seconds and (where readable) energy of a block of work.

    Use as a context manager or with :meth:`start` / :meth:`stop`. :meth:`lap` gives the
    cost since the previous lap (e.g. per epoch) while the totals keep accumulating.

    Args:
        rapl_root: The powercap class directory (``/sys/class/powercap``).
        use_nvml: Read NVIDIA GPU energy through NVML when available.
        estimate_watts_per_core: If given, reports also carry
            ``estimated_j = cpu_s * estimate_watts_per_core`` (J), labelled as an
            estimate. None (default) means no estimate.
        poll_interval_s: If given, a daemon thread calls :meth:`poll` every this many
            seconds, so counter wraps are caught without manual polling.

    Raises:
        ValueError: ``estimate_watts_per_core`` or ``poll_interval_s`` is not positive.
    """

    def __init__(
        self,
        rapl_root: Path | str = DEFAULT_RAPL_ROOT,
        use_nvml: bool = True,
        estimate_watts_per_core: float | None = None,
        poll_interval_s: float | None = None,
    ) -> None:
        if estimate_watts_per_core is not None and not estimate_watts_per_core > 0:
            raise ValueError(
                f"estimate_watts_per_core must be positive, got {estimate_watts_per_core}"
            )
        if poll_interval_s is not None and not poll_interval_s > 0:
            raise ValueError(f"poll_interval_s must be positive, got {poll_interval_s}")
        self.rapl_root = Path(rapl_root)
        self.use_nvml = use_nvml
        self.estimate_watts_per_core = (
            float(estimate_watts_per_core) if estimate_watts_per_core is not None else None
        )
        self.poll_interval_s = poll_interval_s
        self._lock = threading.RLock()
        self._process = psutil.Process()
        self._domains: list[_Domain] = []
        self._nvml: NvmlSession | None = None
        self._start: _Mark | None = None
        self._lap: _Mark | None = None
        self._cpu_high = 0.0
        self._final: EnergyReport | None = None
        self._running = False
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self.polls = 0
        """Number of counter polls since :meth:`start`."""

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> EnergyMeter:
        """Open the counters and take the starting readings.

        Returns:
            The meter itself, for chaining.

        Raises:
            RuntimeError: The meter is already running.
        """
        with self._lock:
            if self._running:
                raise RuntimeError("EnergyMeter.start() called while already running")
            self._domains, self._nvml = _open_domains(self.rapl_root, self.use_nvml)
            self._final = None
            self.polls = 0
            self._cpu_high = 0.0
            cpu = self._cpu_now()
            mark = _Mark(time.perf_counter(), cpu, {d.label: 0 for d in self._domains})
            self._start = self._lap = mark
            self._running = True
        if self._domains:
            logger.info("energy meter started: %s", ", ".join(self.sources))
        else:
            logger.info("energy meter started: energy unavailable (%s)", UNAVAILABLE_REASON)
        if self.poll_interval_s is not None:
            self._stop_event.clear()
            self._thread = threading.Thread(
                target=self._poll_loop, name="twins-energy-poll", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> EnergyReport:
        """Take the final readings, release the counters and report since :meth:`start`.

        Calling it again returns the same report.

        Returns:
            The report since :meth:`start`.

        Raises:
            RuntimeError: The meter was never started.
        """
        thread = self._thread
        if thread is not None:
            self._stop_event.set()
            thread.join()
            self._thread = None
        with self._lock:
            if self._final is not None and not self._running:
                return self._final
            self._require_started()
            self._poll_locked()
            report = self._report_since(self._start)  # type: ignore[arg-type]
            self._running = False
            self._final = report
            if self._nvml is not None:
                self._nvml.close()
                self._nvml = None
        logger.info("energy meter stopped: %s", report.describe())
        return report

    def __enter__(self) -> EnergyMeter:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- readings ----------------------------------------------------------------------

    def poll(self) -> None:
        """Read every counter and add the energy since the previous poll.

        Call it more often than the shortest counter wrap period (every step or epoch
        is usually enough). A no-op once the meter is stopped.

        Raises:
            RuntimeError: The meter was never started.
        """
        with self._lock:
            if not self._running:
                self._require_started()
                return
            self._poll_locked()

    def read(self) -> EnergyReport:
        """Report since :meth:`start` without stopping (polls first).

        Returns:
            The report so far; after :meth:`stop`, the final report.

        Raises:
            RuntimeError: The meter was never started.
        """
        with self._lock:
            if not self._running:
                self._require_started()
                assert self._final is not None
                return self._final
            self._poll_locked()
            return self._report_since(self._start)  # type: ignore[arg-type]

    def lap(self) -> EnergyReport:
        """Report since the previous lap (or since :meth:`start`) and begin a new lap.

        The totals reported by :meth:`read` and :meth:`stop` are unaffected.

        Returns:
            The report of the lap just finished.

        Raises:
            RuntimeError: The meter is not running.
        """
        with self._lock:
            if not self._running:
                raise RuntimeError("EnergyMeter.lap() needs a running meter")
            self._poll_locked()
            assert self._lap is not None
            report, mark = self._report_and_mark(self._lap)
            self._lap = mark
            return report

    # -- properties --------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._running

    @property
    def sources(self) -> tuple[str, ...]:
        """Labels of every counter in use (including sub-domains), in report order."""
        return tuple(d.label for d in self._domains)

    @property
    def report(self) -> EnergyReport | None:
        """The final report once stopped, else None."""
        return self._final

    # -- internals ---------------------------------------------------------------------

    def _require_started(self) -> None:
        if self._start is None:
            raise RuntimeError("EnergyMeter was not started; call start() or use `with`")

    def _poll_loop(self) -> None:
        assert self.poll_interval_s is not None
        while not self._stop_event.wait(self.poll_interval_s):
            try:
                self.poll()
            except Exception:  # a metering thread must never take the run down
                logger.exception("energy meter background poll failed")

    def _cpu_now(self) -> float:
        """Monotone CPU seconds of the process tree (orphaned children can make the raw
        sum drop; a drop is held at the previous high-water mark)."""
        try:
            cpu = process_tree_cpu_seconds(self._process)
        except psutil.Error as err:
            logger.debug("cannot read CPU times: %s", err)
            cpu = self._cpu_high
        self._cpu_high = max(self._cpu_high, cpu)
        return self._cpu_high

    def _poll_locked(self) -> None:
        self.polls += 1
        for dom in self._domains:
            try:
                value = dom.read()
            except Exception as err:  # OSError/ValueError (RAPL), NVMLError (NVML)
                if not dom.failing:
                    logger.warning("energy counter %s unreadable: %s", dom.label, err)
                    dom.failing = True
                continue
            if dom.failing:
                logger.info("energy counter %s readable again", dom.label)
                dom.failing = False
            dom.accumulated += counter_delta(dom.last, value, dom.max_range)
            dom.last = value

    def _report_since(self, mark: _Mark) -> EnergyReport:
        return self._report_and_mark(mark)[0]

    def _report_and_mark(self, since: _Mark) -> tuple[EnergyReport, _Mark]:
        now = _Mark(
            time.perf_counter(),
            self._cpu_now(),
            {d.label: d.accumulated for d in self._domains},
        )
        wall_s = now.wall - since.wall
        cpu_s = max(0.0, now.cpu - since.cpu)
        energy_j: dict[str, float] | None = None
        total_j: float | None = None
        sources: tuple[str, ...] = ()
        if self._domains:
            energy_j = {
                d.label: (now.accumulated[d.label] - since.accumulated.get(d.label, 0))
                * d.joules_per_unit
                for d in self._domains
            }
            counted = [d.label for d in self._domains if d.counted]
            if counted:
                sources = tuple(counted)
                total_j = sum(energy_j[label] for label in counted)
        estimated_j = (
            cpu_s * self.estimate_watts_per_core
            if self.estimate_watts_per_core is not None
            else None
        )
        report = EnergyReport(
            wall_s=wall_s,
            cpu_s=cpu_s,
            energy_j=energy_j,
            total_j=total_j,
            estimated_j=estimated_j,
            sources=sources,
            assumed_watts_per_core=self.estimate_watts_per_core,
        )
        return report, now
