"""Detect truncated NetCDF-3 (classic, 64-bit offset, CDF-5) files from their header.

A classic NetCDF file declares, in its header, where every variable's data begins and how
large it is. The netCDF-C library reads a file whose tail was cut off without an error
(the missing bytes come back as fill values or zeros), so a partial download would be
ingested silently, or refused for a misleading reason ("latitude is not monotonic" when the
coordinate was in the lost tail). :func:`check_complete` compares the file size with the
extent the header declares and names the first variable whose data is missing.

NetCDF-4 (HDF5) files need no such check: HDF5 records the end-of-file address in its
superblock and refuses a shorter file on open. Format reference: the NetCDF Classic and
64-bit Offset Format specification (Unidata, NetCDF Users Guide, "File Format").
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

from twins.errors import DataError

__all__ = ["check_complete"]

_MAGIC = b"CDF"
_NC_DIMENSION, _NC_VARIABLE, _NC_ATTRIBUTE = 10, 11, 12
# nc_type -> size in bytes (NC_BYTE, CHAR, SHORT, INT, FLOAT, DOUBLE, UBYTE, USHORT, UINT,
# INT64, UINT64)
_TYPE_SIZE = {1: 1, 2: 1, 3: 2, 4: 4, 5: 4, 6: 8, 7: 1, 8: 2, 9: 4, 10: 8, 11: 8}
_STREAMING = 0xFFFFFFFF
_MAX_HEADER = 64 << 20  # refuse to parse headers claiming more than 64 MiB


class _Header(Exception):
    """The header itself is cut off or malformed (internal)."""


class _Reader:
    """Big-endian reader over the header bytes of one file."""

    def __init__(self, data: bytes, version: int) -> None:
        self.data, self.pos = data, 4
        self.big = version == 5  # CDF-5: 64-bit counts and sizes
        self.offset64 = version in (2, 5)

    def _take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise _Header("header ends early")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u32(self) -> int:
        return int(struct.unpack(">I", self._take(4))[0])

    def u64(self) -> int:
        return int(struct.unpack(">Q", self._take(8))[0])

    def count(self) -> int:
        return self.u64() if self.big else self.u32()

    def offset(self) -> int:
        return self.u64() if self.offset64 else self.u32()

    def name(self) -> str:
        n = self.count()
        raw = self._take(n)
        self._take(-n % 4)
        return raw.decode("utf-8", errors="replace")

    def skip_attributes(self) -> None:
        tag, n = self.u32(), self.count()
        if tag not in (0, _NC_ATTRIBUTE):
            raise _Header(f"unexpected attribute tag {tag}")
        for _ in range(n):
            self.name()
            nc_type = self.u32()
            size = _TYPE_SIZE.get(nc_type)
            if size is None:
                raise _Header(f"unknown attribute type {nc_type}")
            nbytes = self.count() * size
            self._take(nbytes + (-nbytes % 4))


def _layout(path: Path) -> tuple[int, int, list[tuple[str, int, int, bool]]] | None:
    """Data layout a NetCDF-3 header declares.

    Args:
        path: The file.

    Returns:
        ``(numrecs, recsize, [(variable, begin, nbytes, is_record), ...])`` with sizes in
        bytes (``nbytes`` of one record for record variables), or None when ``path`` is not
        a NetCDF-3 file or its record count is unknown (streaming).

    Raises:
        DataError: The header itself is cut off or malformed.
    """
    with open(path, "rb") as f:
        head = f.read(4)
        if len(head) < 4 or head[:3] != _MAGIC or head[3] not in (1, 2, 5):
            return None
        data = head + f.read(_MAX_HEADER)
    r = _Reader(data, head[3])
    try:
        numrecs = r.u64() if r.big else r.u32()
        tag, ndims = r.u32(), r.count()
        if tag not in (0, _NC_DIMENSION):
            raise _Header(f"unexpected dimension tag {tag}")
        dims = []
        for _ in range(ndims):
            r.name()
            dims.append(r.count())
        r.skip_attributes()
        tag, nvars = r.u32(), r.count()
        if tag not in (0, _NC_VARIABLE):
            raise _Header(f"unexpected variable tag {tag}")
        variables = []
        for _ in range(nvars):
            name = r.name()
            ids = [r.count() for _ in range(r.count())]
            r.skip_attributes()
            nc_type = r.u32()
            r.count()  # vsize: saturates for large variables, recomputed below
            begin = r.offset()
            if nc_type not in _TYPE_SIZE or any(i >= len(dims) for i in ids):
                raise _Header(f"variable {name!r} has an unknown type or dimension")
            record = bool(ids) and dims[ids[0]] == 0
            shape = [dims[i] for i in ids[1:]] if record else [dims[i] for i in ids]
            nbytes = _TYPE_SIZE[nc_type]
            for n in shape:
                nbytes *= n
            variables.append((name, begin, nbytes, record))
    except (_Header, struct.error) as exc:
        raise DataError(
            f"{path}: file truncated or unreadable: the NetCDF-3 header is cut off or "
            f"malformed ({exc})",
            hint="download the file again",
        ) from None
    records = [v for v in variables if v[3]]
    if records and numrecs == _STREAMING:
        return None
    # one record holds every record variable's slice, each padded to 4 bytes unless it is
    # the only record variable
    padded = sum(n + (-n % 4) for _, _, n, _ in records)
    recsize = records[0][2] if len(records) == 1 else padded
    return numrecs, recsize, variables


def check_complete(path: str | os.PathLike[str]) -> None:
    """Refuse a NetCDF-3 file shorter than its header declares (a cut-off download).

    Other formats (NetCDF-4/HDF5, Zarr directories) and streaming files (record count not
    in the header) pass untouched.

    Args:
        path: The file.

    Raises:
        DataError: ``"<file>: file truncated or unreadable: variable '<name>' ..."``, naming
            the variable whose data the cut reaches first, with the declared and the actual
            size.
    """
    path = Path(path)
    if not path.is_file():
        return
    layout = _layout(path)
    if layout is None:
        return
    numrecs, recsize, variables = layout
    size = path.stat().st_size
    ends, cut = [], []
    for name, begin, nbytes, record in variables:
        if record:
            if numrecs == 0:
                continue
            ends.append(begin + (numrecs - 1) * recsize + nbytes)
            # the slice of this variable in the record the cut falls in (or the next one)
            r = min(max((size - begin) // recsize, 0), numrecs - 1) if recsize else 0
            start = begin + r * recsize
            if start + nbytes <= size and r + 1 < numrecs:
                start += recsize
        else:
            start = begin
            ends.append(begin + nbytes)
        if start + nbytes > size:
            cut.append((start, name))
    declared = max(ends, default=0)
    if size >= declared or not cut:
        return
    name = min(cut)[1]
    raise DataError(
        f"{path}: file truncated or unreadable: the data of variable '{name}' is cut off; the "
        f"file has {size} bytes, {size / declared:.1%} of the {declared} bytes its NetCDF-3 "
        "header declares",
        hint="download the file again",
    )
