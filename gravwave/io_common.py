"""Helpers shared by the gravitational-wave readers (:mod:`gravwave.io` and its parts).

Internal: file checks, GPS spans of series, request checks, and :func:`foreign_errors`, which
turns any exception of h5py, gwpy or lalframe raised while reading into a one-line
:class:`~twins.errors.DataError` naming the file (our own ``DataError`` passes through).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from gwpy.timeseries import TimeSeries

from twins.errors import DataError

PathLike = str | os.PathLike[str]

#: Relative time tolerance in samples when comparing GPS boundaries.
TOL_SAMPLES = 0.25
#: Names listed in a message before "... (N in all)".
MAX_LISTED = 8
#: Longest foreign exception text quoted in a message [characters].
MAX_REASON = 240


def listing(names: Iterable[str]) -> str:
    """``"a, b, c"`` (at most :data:`MAX_LISTED` names, then the count), or ``"none"``."""
    names = list(names)
    shown = ", ".join(names[:MAX_LISTED])
    if len(names) > MAX_LISTED:
        shown += f", ... ({len(names)} in all)"
    return shown or "none"


def require_file(path: PathLike) -> Path:
    """The path, if it is an existing regular file.

    Raises:
        DataError: Missing, or a directory.
    """
    p = Path(path)
    if p.is_dir():
        raise DataError(f"{p}: is a directory, expected a data file", hint="check the path")
    if not p.is_file():
        raise DataError(f"{p}: file not found", hint="check the path")
    return p


def span(ts: TimeSeries) -> tuple[float, float]:
    """GPS ``[start, end)`` of a series [s]."""
    t0 = float(ts.t0.value)
    return t0, t0 + len(ts) / float(ts.sample_rate.value)


def rate(ts: TimeSeries) -> float:
    """Sample rate of a series [Hz]."""
    return float(ts.sample_rate.value)


def check_request(
    start: float | None, end: float | None, have: tuple[float, float], what: str
) -> tuple[float, float]:
    """The requested GPS ``[start, end)``, defaulting to ``have``; refuse one outside it."""
    lo = have[0] if start is None else float(start)
    hi = have[1] if end is None else float(end)
    if hi <= lo:
        raise DataError(f"{what}: empty request, end GPS {hi} <= start GPS {lo}")
    if lo < have[0] - 1e-6 or hi > have[1] + 1e-6:
        raise DataError(
            f"{what}: requested GPS [{lo}, {hi}) not covered by the data [{have[0]}, {have[1]})",
            hint="pick start/end inside the file span",
        )
    return lo, hi


def reason(exc: BaseException) -> str:
    """A foreign exception as one short line: ``"KeyError: <text>"``, whitespace collapsed."""
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    text = re.sub(r"\s+", " ", text).strip()
    if len(text) > MAX_REASON:
        text = text[: MAX_REASON - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@contextmanager
def foreign_errors(path: Path, what: str, hint: str = "") -> Iterator[None]:
    """Turn an exception of a reading library into ``DataError("<file>: <what> (<reason>)")``.

    Our own :class:`DataError` and ``MemoryError`` pass through unchanged.

    Args:
        path: The file being read (its name starts the message).
        what: What failed, e.g. ``"channel V1:X: cannot read the samples"``.
        hint: Hint of the raised error.
    """
    try:
        yield
    except (DataError, MemoryError):
        raise
    except Exception as exc:
        raise DataError(f"{path.name}: {what} ({reason(exc)})", hint=hint) from exc


def read_utf8(path: Path, expected: str) -> str:
    """The text of ``path``, or a one-line DataError naming the first byte that is not UTF-8.

    Args:
        path: The file.
        expected: What the file should be, for the hint (``"a text file of channel names"``).

    Raises:
        DataError: The file is not UTF-8 text.
    """
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path.name}: byte {exc.start} (0x{data[exc.start]:02x}) is not UTF-8 text",
            hint=f"expected {expected}",
        ) from None
