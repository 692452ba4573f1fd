"""File formats of climate downloads: netCDF, Zarr, GRIB (cfgrib) and the CDS ``.zip``.

- :func:`engine` picks the xarray engine from the path: a Zarr store, GRIB (by suffix or by
  the ``GRIB`` bytes that open every GRIB message), else netCDF;
- :func:`open_one` opens one file (lazily, except GRIB: cfgrib decodes every message again
  on each pass over a lazy array, so GRIB is decoded once into memory); GRIB goes through
  cfgrib with ``indexpath=""``, so no ``.idx`` file is ever written next to the user's
  data. A GRIB file holding several
  hypercubes (an accumulation on reference time x step beside an instantaneous field) is read
  as its cubes, each put on its valid time, then merged;
- :func:`expand_archives` unpacks the ``.zip`` a CDS request is delivered as (its members are
  the stepType files of one request) into a temporary folder that lives as long as the
  caller needs it; :func:`relabel` writes ``request.zip!member.nc`` for those paths in
  messages.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cfgrib
import xarray as xr

from hydrology.layouts import grib_valid_time
from twins.errors import DataError

__all__ = ["GRIB_SUFFIXES", "MEMBER_SUFFIXES", "engine", "expand_archives", "open_one", "relabel"]

logger = logging.getLogger(__name__)

GRIB_SUFFIXES = (".grib", ".grb", ".grib1", ".grb1", ".grib2", ".grb2")
#: Members of a zip that are read (others, e.g. a licence text, are skipped and logged).
MEMBER_SUFFIXES = (".nc", ".nc4", ".netcdf", *GRIB_SUFFIXES)
_CFGRIB_KWARGS: dict[str, Any] = {"indexpath": ""}


def engine(path: Path) -> str:
    """``"zarr"`` for a Zarr store (``.zarr`` suffix, or v2 ``.zgroup`` / v3 ``zarr.json``
    inside a directory), ``"cfgrib"`` for GRIB (suffix, or a file starting with ``GRIB``),
    else ``"netcdf4"``."""
    if path.suffix == ".zarr" or (path / ".zgroup").exists() or (path / "zarr.json").exists():
        return "zarr"
    if path.suffix.lower() in GRIB_SUFFIXES:
        return "cfgrib"
    if path.is_file():
        with open(path, "rb") as fh:
            if fh.read(4) == b"GRIB":
                return "cfgrib"
    return "netcdf4"


def backend_kwargs(kind: str) -> dict[str, Any]:
    """Extra ``open_dataset`` arguments of an engine (cfgrib: no index file on disk)."""
    return {"backend_kwargs": dict(_CFGRIB_KWARGS)} if kind == "cfgrib" else {}


def open_one(path: Path, chunks: dict[str, int] | str | None) -> xr.Dataset:
    """Open one file lazily with its engine (see the module docstring for GRIB).

    Args:
        path: NetCDF file, Zarr store or GRIB file.
        chunks: dask chunks, as for ``xr.open_dataset``.

    Returns:
        The dataset as stored (GRIB: loaded, and on ``valid_time`` when it held several
        cubes).
    """
    kind = engine(path)
    if kind != "cfgrib":
        return xr.open_dataset(path, engine=kind, chunks=chunks, **backend_kwargs(kind))
    # cfgrib decodes message by message on every pass over a lazy array (the layout, value
    # and gate checks make three): GRIB is decoded once, into memory. open_datasets, not
    # open_dataset: the latter skips, with a log line only, every variable that does not
    # fit the first hypercube (t2m beside an ERA5 accumulation on reference time x step)
    cubes = cfgrib.open_datasets(str(path), backend_kwargs=dict(_CFGRIB_KWARGS))
    if not cubes:
        raise DataError(f"{path}: no GRIB message could be read")
    if len(cubes) == 1:
        return cubes[0].load()
    logger.info("%s: GRIB holds %d hypercubes; merged on valid_time", path, len(cubes))
    return xr.merge(
        [grib_valid_time(c.load(), str(path)) for c in cubes],
        compat="override",
        join="outer",
        combine_attrs="drop_conflicts",
    )


@contextmanager
def expand_archives(paths: Sequence[Path]) -> Iterator[tuple[list[Path], dict[str, str]]]:
    """Replace every ``.zip`` in ``paths`` by its data members, unpacked for the block.

    Args:
        paths: Input paths; zips among them are unpacked, others pass unchanged.

    Yields:
        ``(files, names)``: the paths to open, and a map from each unpacked member's path to
        the name messages give it (``"<zip>!<member>"``). The members are deleted when the
        block ends, so whatever is read from them must be loaded inside it.

    Raises:
        DataError: A zip that cannot be read, or one without netCDF or GRIB members.
    """
    zips = [p for p in paths if p.suffix.lower() == ".zip" and p.is_file()]
    if not zips:
        yield list(paths), {}
        return
    folder = tempfile.mkdtemp(prefix="twins-zip-")
    try:
        files: list[Path] = []
        names: dict[str, str] = {}
        for i, p in enumerate(paths):
            if p not in zips:
                files.append(p)
                continue
            target = Path(folder) / str(i)
            target.mkdir()
            members = _unpack(p, target)
            for m in members:
                names[str(m)] = f"{p}!{m.name}"
            files.extend(members)
        yield files, names
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _unpack(archive: Path, target: Path) -> list[Path]:
    """Write the data members of ``archive`` flat into ``target``; their paths, sorted."""
    try:
        with zipfile.ZipFile(archive) as zf:
            out: list[Path] = []
            for info in zf.infolist():
                name = os.path.basename(info.filename)
                if info.is_dir() or not name:
                    continue
                if not name.lower().endswith(MEMBER_SUFFIXES):
                    logger.info("%s: member %s skipped (not netCDF or GRIB)", archive, name)
                    continue
                dest = target / name
                if dest.exists():
                    raise DataError(f"{archive}: two members are named {name}")
                with zf.open(info) as src, open(dest, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                out.append(dest)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        text = " ".join(str(exc).split())[:200]
        raise DataError(
            f"{archive}: cannot read the zip archive ({type(exc).__name__}: {text})",
            hint="download the request again",
        ) from None
    if not out:
        raise DataError(
            f"{archive}: the zip holds no netCDF or GRIB member "
            f"(expected names ending {', '.join(MEMBER_SUFFIXES)})"
        )
    return sorted(out)


def relabel(message: str, names: dict[str, str]) -> str:
    """``message`` with every unpacked member path written as ``<zip>!<member>``."""
    for path, name in names.items():
        message = message.replace(path, name)
    return message
