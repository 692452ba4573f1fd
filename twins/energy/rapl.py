"""Intel RAPL energy counters read from the Linux powercap sysfs tree.

The kernel exposes one directory per RAPL zone under ``/sys/class/powercap``:
``intel-rapl:0`` (package 0), ``intel-rapl:1`` (package 1), and sub-zones such as
``intel-rapl:0:0`` (``core``), ``intel-rapl:0:1`` (``uncore``) or ``intel-rapl:0:2``
(``dram``). Sub-zones appear both flat in the class directory and nested inside their
parent zone; both layouts are understood and de-duplicated by zone id. AMD CPUs use the
same ``intel-rapl`` naming.

Each zone holds ``name``, ``energy_uj`` (a counter in microjoules that wraps at
``max_energy_range_uj``) and ``max_energy_range_uj``. Since Linux 5.10 ``energy_uj`` is
readable by root only (CVE-2020-8694); a zone whose files cannot be read is simply
skipped.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

DEFAULT_RAPL_ROOT = Path("/sys/class/powercap")
"""Where the kernel mounts the powercap class directory."""

_ZONE_RE = re.compile(r"^intel-rapl:(\d+)(?::(\d+))?$")

JOULES_PER_UJ = 1e-6
"""Joules per RAPL counter unit (the counter counts microjoules)."""


@dataclass(frozen=True)
class RaplZone:
    """One readable RAPL zone.

    Attributes:
        zone_id: Directory name, e.g. ``"intel-rapl:0"`` or ``"intel-rapl:0:2"``.
        path: Directory holding ``energy_uj`` and ``max_energy_range_uj``.
        name: Content of the zone's ``name`` file, e.g. ``"package-0"`` or ``"dram"``.
        label: Report key: ``"rapl:<name>"`` for a top-level zone and
            ``"rapl:<parent name>/<name>"`` for a sub-zone, e.g. ``"rapl:package-0/dram"``.
        top_level: True for a package-level zone (``intel-rapl:N``), False for a sub-zone.
        max_energy_range_uj: Counter range in microjoules; the counter wraps to 0 after it.
    """

    zone_id: str
    path: Path
    name: str
    label: str
    top_level: bool
    max_energy_range_uj: int

    def read_energy_uj(self) -> int:
        """Read the zone's current counter value.

        Returns:
            Counter value in microjoules (wraps at ``max_energy_range_uj``).

        Raises:
            OSError: The file cannot be read (e.g. ``PermissionError``).
            ValueError: The file does not hold an integer.
        """
        return _read_int(self.path / "energy_uj")


def _read_int(path: Path) -> int:
    return int(path.read_text().strip())


def _read_name(zone_dir: Path, fallback: str) -> str:
    try:
        name = (zone_dir / "name").read_text().strip()
    except (OSError, UnicodeDecodeError):
        return fallback
    return name or fallback


def _zone_dirs(root: Path) -> dict[str, Path]:
    """Map zone id to directory for every ``intel-rapl:*`` zone, flat or nested."""
    found: dict[str, Path] = {}
    try:
        candidates = sorted(root.glob("intel-rapl:*")) + sorted(
            root.glob("intel-rapl:*/intel-rapl:*")
        )
    except OSError as err:
        logger.debug("cannot list RAPL zones under %s: %s", root, err)
        return found
    for path in candidates:
        if _ZONE_RE.match(path.name) and path.is_dir():
            found.setdefault(path.name, path)
    return found


def discover_zones(root: Path | str = DEFAULT_RAPL_ROOT) -> list[RaplZone]:
    """Find the RAPL zones whose counters this process can read.

    A zone is kept only when both ``energy_uj`` and ``max_energy_range_uj`` can be read
    and parsed now; unreadable zones (``PermissionError``, missing files, garbage) are
    skipped with a debug log message, never an exception.

    Args:
        root: The powercap class directory, ``/sys/class/powercap`` by default. Tests
            point it at a fake tree.

    Returns:
        Readable zones, top-level zones first, each group sorted by zone id.
    """
    root = Path(root)
    dirs = _zone_dirs(root)
    names = {zid: _read_name(path, zid) for zid, path in dirs.items()}
    zones: list[RaplZone] = []
    used_labels: set[str] = set()
    for zid, path in sorted(dirs.items(), key=lambda kv: _sort_key(kv[0])):
        match = _ZONE_RE.match(zid)
        assert match is not None  # _zone_dirs only keeps matching names
        top_level = match.group(2) is None
        name = names[zid]
        if top_level:
            label = f"rapl:{name}"
        else:
            parent_id = f"intel-rapl:{match.group(1)}"
            label = f"rapl:{names.get(parent_id, parent_id)}/{name}"
        if label in used_labels:  # two zones with one name: keep both, tell them apart
            label = f"{label}#{zid}"
        try:
            max_range = _read_int(path / "max_energy_range_uj")
            _read_int(path / "energy_uj")
        except (OSError, ValueError, UnicodeDecodeError) as err:
            logger.debug("RAPL zone %s (%s) unavailable: %s", zid, path, err)
            continue
        used_labels.add(label)
        zones.append(
            RaplZone(
                zone_id=zid,
                path=path,
                name=name,
                label=label,
                top_level=top_level,
                max_energy_range_uj=max_range,
            )
        )
    zones.sort(key=lambda z: (not z.top_level, _sort_key(z.zone_id)))
    return zones


def _sort_key(zone_id: str) -> tuple[int, ...]:
    return tuple(int(part) for part in zone_id.split(":")[1:])


def counter_delta(start: int, end: int, max_range: int | None) -> int:
    """Energy spent between two readings of a wrapping counter, in counter units.

    ``end - start`` when the counter did not go down. When it did, it is taken to have
    wrapped exactly once at ``max_range``: ``(max_range - start) + end``. The exact
    modulus would be ``max_range + 1``; the missing single unit (1 uJ for RAPL) is
    negligible and the kernel documentation does not pin down which one applies.

    More than one wrap between two readings cannot be detected, so readings must be
    taken more often than the wrap period (``max_range`` divided by the power draw;
    from tens of seconds to hours depending on the CPU).

    Args:
        start: Earlier reading.
        end: Later reading.
        max_range: Value at which the counter wraps to 0, or None for a counter that
            does not wrap (a decrease then means the counter was reset, and ``end`` is
            taken as the energy since the reset).

    Returns:
        Non-negative difference in counter units.
    """
    if end >= start:
        return end - start
    if max_range is None or max_range < start:
        logger.warning(
            "energy counter went down from %d to %d with no usable wrap range (%s); "
            "assuming it was reset",
            start,
            end,
            max_range,
        )
        return end
    return (max_range - start) + end
