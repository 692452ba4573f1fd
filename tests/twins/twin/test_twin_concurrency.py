"""Writer lock of the twin store: refusal with holder info, timeouts, serialisation."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import ModuleType

import pytest

from twins.errors import TwinsError
from twins.twin import TwinLockedError, TwinStore, format_status

WRITER = Path(__file__).with_name("_twin_writer.py")


def _load_writer() -> ModuleType:
    name = "twins_tests_twin_writer"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, WRITER)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


w = _load_writer()


def _popen(*args: str, stdin: int | None = subprocess.DEVNULL) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WRITER), *args],
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_second_writer_is_refused_with_holder_pid(tmp_path: Path) -> None:
    directory = tmp_path / "twin"
    store = TwinStore.init(directory, kind="test")
    holder = _popen("hold", str(directory), stdin=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline().strip() == "locked"

        t0 = time.monotonic()
        with pytest.raises(TwinLockedError) as info, store.transaction("k", wait=False):
            pass
        assert time.monotonic() - t0 < 0.5  # refused at once
        err = info.value
        assert isinstance(err, TwinsError)
        message = str(err)
        assert str(directory) in message
        assert f"pid {holder.pid}" in message
        assert "since 20" in message
        assert "\n" not in message
        assert "--wait" in err.hint
        assert err.holder is not None and err.holder.pid == holder.pid
        assert err.exit_code == 75

        # A bounded wait gives up after about that long.
        t0 = time.monotonic()
        with pytest.raises(TwinLockedError, match=r"after waiting 0\.3 s") as info:
            w.do_update(store, 1, wait=0.3)
        assert 0.3 <= time.monotonic() - t0 < 2.0
        assert f"pid {holder.pid}" in str(info.value)

        status = store.status()
        assert status["locked"] is True
        assert status["lock_holder"]["pid"] == holder.pid
        assert f"held by pid {holder.pid}" in format_status(store)

        # Nothing was written by the refused attempts.
        assert store.state.version == 0
        assert os.listdir(directory / "history") == []

        # Once the holder is done, a waiting writer gets through.
        holder.stdin.close()
        noop, record = w.do_update(store, 1, wait=10.0)
        assert not noop and record.version == 2  # the holder committed v1
        assert holder.wait(timeout=10) == 0
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        for stream in (holder.stdout, holder.stderr, holder.stdin):
            if stream is not None and not stream.closed:
                stream.close()
    assert store.status()["locked"] is False
    assert "lock         free" in format_status(store)


def test_other_process_is_refused_while_this_one_holds(tmp_path: Path) -> None:
    directory = tmp_path / "twin"
    store = TwinStore.init(directory, kind="test")
    with store.transaction("mine") as txn:
        (txn.products_dir / "x").write_text("x")
        proc = _popen("nowait", str(directory))
        out, _err = proc.communicate(timeout=30)
    assert proc.returncode == 75
    assert f"pid {os.getpid()}" in out
    assert str(directory) in out
    assert "retry later or use --wait" in out
    assert store.state.version == 1
    assert [r.key for r in store.history()] == ["mine"]


def test_waiting_writers_serialise(tmp_path: Path) -> None:
    """Two processes with wait=True: transactions never interleave, versions are consecutive."""
    directory = tmp_path / "twin"
    store = TwinStore.init(directory, kind="test")
    log = tmp_path / "log.txt"
    count = 10
    procs = [_popen("serial", str(directory), tag, str(count), str(log)) for tag in "AB"]
    for proc in procs:
        _out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    lines = log.read_text().splitlines()
    assert len(lines) == 4 * count
    seen = set()
    for k in range(0, len(lines), 2):
        start, end = lines[k].split(), lines[k + 1].split()
        assert start[0] == "start" and end[0] == "end", (lines[k], lines[k + 1])
        assert start[1:] == end[1:]
        assert start[3] == f"v{k // 2 + 1}"  # each transaction saw its predecessor's commit
        seen.add((start[1], int(start[2])))
    assert seen == {(tag, j) for tag in "AB" for j in range(count)}
    history = store.history()
    assert [r.version for r in history] == list(range(1, 2 * count + 1))
    for prev, record in zip(history, history[1:], strict=False):
        assert record.started >= prev.finished
    for record in history:
        tag, j = record.key.split("-")
        data = f"{tag}-{j}".encode() * 500
        assert (store.version_dir(record.version) / "products" / "p.bin").read_bytes() == data
        assert record.summary["sha256"] == hashlib.sha256(data).hexdigest()
    assert store.verify() == []


def test_nested_transaction_in_same_thread_is_refused(tmp_path: Path) -> None:
    store = TwinStore.init(tmp_path / "twin", kind="test")
    with store.transaction("outer") as txn:
        with (
            pytest.raises(TwinLockedError, match="already locked by this thread"),
            store.transaction("inner", wait=True),
        ):
            pass
        (txn.products_dir / "x").write_text("x")
    assert [r.key for r in store.history()] == ["outer"]


def test_threads_serialise(tmp_path: Path) -> None:
    store = TwinStore.init(tmp_path / "twin", kind="test")
    order: list[str] = []

    def second() -> None:
        with store.transaction("second", wait=True):
            order.append("second")

    with store.transaction("first"):
        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.2)  # give the thread time to block on the lock
        order.append("first")
    thread.join(timeout=10)
    assert order == ["first", "second"]
    assert [r.key for r in store.history()] == ["first", "second"]
