"""Build-once products: one builder among racing processes, crash safety, waits and errors."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr

from twins.compute.buildonce import (
    BuildFailedError,
    BuildWaitError,
    build_once,
    is_built,
    product_path,
)
from twins.lock import FileLock

# A process that waits for a start signal, then asks for the product; its build appends its
# pid to builds.log (O_APPEND: one line per build, whoever runs it) and writes random bytes,
# so two builds would leave two lines and two processes would read different data.
SCRIPT = """
import json, os, sys, time
from pathlib import Path
from twins.compute.buildonce import build_once

root, key, mode = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
(root / f"ready-{os.getpid()}").touch()
while not (root / "go").exists():
    time.sleep(0.01)

def build(tmp):
    with open(root / "builds.log", "a") as log:
        log.write(f"{os.getpid()}\\n")
    (tmp / "data.bin").write_bytes(os.urandom(64))
    if mode == "hang":
        (root / "started").touch()
        time.sleep(600)
    time.sleep(0.5)  # long enough that the other process asks while this one builds
    return {"by": os.getpid()}

product = build_once(root, key, build, timeout_s=60)
data = (product.path / "data.bin").read_bytes().hex()
print(json.dumps({"built": product.built, "path": str(product.path), "data": data}))
"""


def _spawn(tmp_path: Path, root: Path, key: str, mode: str) -> subprocess.Popen[str]:
    script = tmp_path / "builder.py"
    script.write_text(SCRIPT)
    return subprocess.Popen(
        [sys.executable, str(script), str(root), key, mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_files(root: Path, pattern: str, n: int, timeout: float = 60.0) -> None:
    t_end = time.monotonic() + timeout
    while len(list(root.glob(pattern))) < n:
        assert time.monotonic() < t_end, f"timed out waiting for {n} x {root}/{pattern}"
        time.sleep(0.02)


def _write(tmp: Path, text: str = "cube") -> dict[str, Any]:
    (tmp / "data.txt").write_text(text)
    return {"n": 1}


def test_two_processes_race_one_builds_both_open_it(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    root.mkdir()
    procs = [_spawn(tmp_path, root, "cube-abc", "normal") for _ in range(2)]
    _wait_files(root, "ready-*", 2)
    (root / "go").touch()
    outs = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr
        outs.append(json.loads(stdout.strip().splitlines()[-1]))
    assert sorted(o["built"] for o in outs) == [False, True]
    assert outs[0]["path"] == outs[1]["path"] == str(root / "cube-abc")
    assert outs[0]["data"] == outs[1]["data"]
    assert len((root / "builds.log").read_text().splitlines()) == 1
    assert is_built(root, "cube-abc")
    assert not list(root.glob(".cube-abc.tmp-*"))
    record = json.loads((root / "cube-abc.done.json").read_text())
    assert record["key"] == "cube-abc" and record["info"]["by"] == record["pid"]


def test_sigkill_mid_build_leaves_no_product_and_the_next_build_succeeds(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "cache"
    root.mkdir()
    (root / "go").touch()
    proc = _spawn(tmp_path, root, "cube-k", "hang")
    _wait_files(root, "started", 1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    # Either no product or a complete one: here the build had not finished, so none.
    assert not is_built(root, "cube-k")
    assert not (root / "cube-k").exists() and not (root / "cube-k.done.json").exists()
    (left,) = root.glob(".cube-k.tmp-*")
    assert f"-{proc.pid}-" in left.name and (left / "data.bin").exists()
    with caplog.at_level(logging.INFO, logger="twins.compute.buildonce"):
        product = build_once(root, "cube-k", _write, timeout_s=10)
    assert product.built and (product.path / "data.txt").read_text() == "cube"
    assert not left.exists() and not (product.path / "data.bin").exists()
    text = caplog.text
    assert f"previous builder (pid {proc.pid} on" in text and "died without finishing" in text
    assert f"left by pid {proc.pid}" in text and "process gone" in text
    # Asked again, it is opened, not rebuilt.
    again = build_once(root, "cube-k", _write)
    assert not again.built and again.record == product.record


def test_a_directory_without_marker_is_not_a_product_and_is_rebuilt(tmp_path: Path) -> None:
    # What a crash between the rename and the marker would leave.
    half = tmp_path / "cube-h"
    half.mkdir()
    (half / "partial.bin").write_bytes(b"x")
    assert not is_built(tmp_path, "cube-h")
    product = build_once(tmp_path, "cube-h", _write)
    assert product.built and sorted(p.name for p in half.iterdir()) == ["data.txt"]


def test_wait_timeout_names_the_product_the_lock_and_its_holder(tmp_path: Path) -> None:
    lock = FileLock(tmp_path / "cube-t.lock")
    assert lock.acquire(purpose="build cube-t")
    try:
        with pytest.raises(BuildWaitError) as err:
            build_once(tmp_path, "cube-t", _write, timeout_s=0.3)
    finally:
        lock.release()
    msg = str(err.value)
    assert "\n" not in msg and "waited 0.3 s for" in msg and str(tmp_path / "cube-t") in msg
    assert f"pid {os.getpid()} on" in msg and "(build cube-t) holds the build lock" in msg
    assert err.value.exit_code == 75
    with pytest.raises(BuildWaitError, match="no process holds the build lock"):
        build_once(tmp_path, "cube-t", _write, may_build=False, timeout_s=0.2, poll_s=0.05)


def test_waiter_reports_the_builders_failure_and_a_later_build_succeeds(tmp_path: Path) -> None:
    def boom(tmp: Path) -> None:
        (tmp / "part").write_text("half")
        time.sleep(0.3)
        raise ValueError("grid has no land cell")

    def wait(out: dict[str, Any]) -> None:
        try:
            out["product"] = build_once(
                tmp_path, "cube-f", _write, may_build=False, timeout_s=30, poll_s=0.02
            )
        except BuildWaitError as exc:
            out["error"] = exc

    first: dict[str, Any] = {}
    waiter = threading.Thread(target=wait, args=(first,))
    waiter.start()
    with pytest.raises(ValueError, match="no land cell"):
        build_once(tmp_path, "cube-f", boom)
    waiter.join(timeout=30)
    assert isinstance(first.get("error"), BuildFailedError)
    msg = str(first["error"])
    assert f"in pid {os.getpid()} on" in msg and "ValueError: grid has no land cell" in msg
    assert not list(tmp_path.glob(".cube-f.tmp-*")) and not (tmp_path / "cube-f").exists()

    # The failure recorded before a new wait begins does not fail that wait.
    second: dict[str, Any] = {}
    waiter = threading.Thread(target=wait, args=(second,))
    waiter.start()
    time.sleep(0.1)
    product = build_once(tmp_path, "cube-f", _write)
    waiter.join(timeout=30)
    assert product.built and "error" not in second
    assert second["product"].path == product.path and not second["product"].built
    assert not (tmp_path / "cube-f.failed.json").exists()


def test_keys_must_be_plain_file_names(tmp_path: Path) -> None:
    for bad in ("../x", ".hidden", "a/b", ""):
        with pytest.raises(ValueError, match="product key"):
            product_path(tmp_path, bad)


def test_a_zarr_store_built_once_opens_lazily_and_equal(tmp_path: Path) -> None:
    ds = xr.Dataset(
        {"spi": (("cell", "time"), np.arange(12.0).reshape(4, 3))},
        coords={"cell": np.arange(4), "time": np.arange(3)},
    ).chunk({"cell": 2})

    def write(tmp: Path) -> dict[str, Any]:
        ds.to_zarr(tmp, mode="w-", consolidated=False)  # tmp exists and is empty
        return {"variables": sorted(ds.data_vars)}

    product = build_once(tmp_path, "cube-z", write)
    opened = xr.open_zarr(product.path, consolidated=False)
    assert opened["spi"].chunks == ((2, 2), (3,))  # lazy, chunked by cell
    xr.testing.assert_identical(opened.load(), ds.load())
    assert product.record["info"] == {"variables": ["spi"]}
