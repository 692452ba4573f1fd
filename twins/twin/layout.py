"""Where a twin keeps what: file and directory names, name patterns, small file helpers.

See :mod:`twins.twin.store` for the layout these names make.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from twins.atomic import sha256_file
from twins.twin.errors import TwinUpdateError

STATE_FILE = "twin.json"
LOCK_FILE = ".lock"
STAGING_DIR = "staging"
HISTORY_DIR = "history"
PRODUCTS_DIR = "products"
RECORD_FILE = "update.json"
#: Copy of the state a version committed (``twin.json`` as of that version), kept so that
#: :func:`twins.twin.restore.restore_version` can bring it back. Versions written before it existed
#: lack it.
SNAPSHOT_FILE = "state.json"
#: Marker of a version whose ``products/`` holds the whole product set (a restore): product
#: lookups stop there instead of searching older versions.
COMPLETE_FILE = "complete"
INIT_KEY = "init"

VERSION_RE = re.compile(r"^v(\d{6,})$")
HISTORY_RE = re.compile(r"^(\d{6,})-([0-9a-f]{16})\.json$")
TMP_RE = re.compile(r"^\..+\.tmp-[0-9a-f]+$")


def listdir(directory: Path) -> list[str]:
    try:
        return os.listdir(directory)
    except FileNotFoundError:
        return []


def product_manifest(products_dir: Path) -> dict[str, dict[str, Any]]:
    """Return the size + sha256 manifest of every regular file below ``products_dir``.

    Raises:
        ValueError: A product is a symbolic link or a special file.
    """
    manifest: dict[str, dict[str, Any]] = {}
    for dirpath, dirnames, filenames in os.walk(products_dir):
        for name in dirnames:
            if os.path.islink(os.path.join(dirpath, name)):
                raise ValueError(f"product {name!r} is a symbolic link")
        for name in filenames:
            path = Path(dirpath, name)
            rel = path.relative_to(products_dir).as_posix()
            if path.is_symlink() or not path.is_file():
                raise ValueError(f"product {rel!r} is not a regular file")
            manifest[rel] = {"size": path.stat().st_size, "sha256": sha256_file(path)}
    return dict(sorted(manifest.items()))


def check_key(key: object, path: Path) -> str:
    if not isinstance(key, str) or not key:
        raise TwinUpdateError(
            f"twin {path}: update key must be a non-empty string, not {key!r}",
            hint="pass a key that identifies the update's inputs, e.g. a hash of them",
        )
    return key
