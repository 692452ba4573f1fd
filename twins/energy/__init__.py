"""Energy, wall time and CPU time of training runs.

Energy (J) is measured only from counters that can be read: Intel RAPL through the
powercap sysfs tree and NVIDIA GPUs through NVML. Without them a report says energy is
unavailable; an estimate from CPU seconds is made only on request and is always labelled
as such.

Example:
    >>> from twins.energy import EnergyMeter
    >>> with EnergyMeter() as meter:                     # doctest: +SKIP
    ...     run()
    >>> meter.report.describe()                           # doctest: +SKIP
    'wall 12.3 s, CPU 20.1 s, energy unavailable (no RAPL or NVML counter readable)'
"""

from twins.energy.meter import (
    EnergyMeter,
    EnergyReport,
    available_sources,
    process_tree_cpu_seconds,
)
from twins.energy.rapl import DEFAULT_RAPL_ROOT

__all__ = [
    "DEFAULT_RAPL_ROOT",
    "EnergyMeter",
    "EnergyReport",
    "available_sources",
    "process_tree_cpu_seconds",
]
