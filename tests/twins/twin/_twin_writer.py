"""Helper for the twin store tests: deterministic updates, run in-process or as a subprocess.

Subprocess modes (``python _twin_writer.py MODE DIR ...``):

* ``loop DIR`` — print ``ready``, then commit updates ``u<version+1>``, ``u<version+2>``, …
  back to back (wait=True) until killed, printing ``committed N`` after each.
* ``fault DIR POINT`` — commit one update, SIGKILLing itself at commit step ``POINT``.
* ``init-fault DIR`` — init a twin at DIR, SIGKILLing itself just before the final rename.
* ``hold DIR`` — take the lock (in a transaction), print ``locked``, wait until stdin closes,
  then commit.
* ``nowait DIR`` — try one update with wait=False; on TwinLockedError print the message and
  exit 75.
* ``serial DIR TAG N LOG`` — commit N updates ``TAG-0…`` with wait=True, appending start/end
  markers to LOG inside each transaction.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import sys
import time
from pathlib import Path

from twins.twin import TwinLockedError, TwinStore, UpdateRecord
from twins.twin import store as store_module

#: Names of the product files every update writes.
PRODUCT_NAMES = ("a.bin", "b.bin", "sub/c.bin")


def key_for(i: int) -> str:
    """Return the idempotency key of update number ``i``."""
    return f"u{i:05d}"


def cursor_for(i: int) -> str:
    """Return the cursor that update number ``i`` sets."""
    return f"c{i:05d}"


def product_files(i: int) -> dict[str, bytes]:
    """Return the deterministic content of update ``i``'s products (a few KB each)."""
    rng = random.Random(i)
    return {name: rng.randbytes(rng.randint(2_000, 24_000)) for name in PRODUCT_NAMES}


def do_update(store: TwinStore, i: int, *, wait: bool | float = True) -> tuple[bool, UpdateRecord]:
    """Run update ``i`` (key ``u<i>``) and return ``(noop, record)``."""
    with store.transaction(key_for(i), wait=wait) as txn:
        if not txn.noop:
            sums = {}
            for name, data in product_files(i).items():
                target = txn.products_dir / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
                sums[name] = hashlib.sha256(data).hexdigest()
            txn.update_state(cursor=cursor_for(i), extra={"last": i})
            txn.summary.update({"i": i, "sha256": sums})
    assert txn.record is not None
    return txn.noop, txn.record


def check_twin(directory: Path) -> int:
    """Assert that the twin at ``directory`` is consistent; return its committed version.

    Checks: twin.json is valid JSON of the right shape; the store opens; version == number of
    history entries, numbered 1..N with keys u<i>; each version's products exist with exactly
    the expected content; no version beyond N is reachable through the API.
    """
    import json

    from twins.twin import TwinState, TwinVersionError

    state = TwinState.from_dict(json.loads((directory / "twin.json").read_text()))
    store = TwinStore.open(directory)
    assert store.state == state
    n = state.version
    history = store.history()
    assert len(history) == n
    assert [r.version for r in history] == list(range(1, n + 1))
    for record in history:
        i = record.version
        assert record.key == key_for(i)
        assert record.cursor_after == cursor_for(i)
        assert record.cursor_before == (cursor_for(i - 1) if i > 1 else None)
        vdir = store.version_dir(i)
        assert vdir.is_dir()
        expected = product_files(i)
        assert sorted(record.products) == sorted(expected)
        for name, data in expected.items():
            assert (vdir / "products" / name).read_bytes() == data, (i, name)
            assert record.summary["sha256"][name] == hashlib.sha256(data).hexdigest()
        assert store.record(i) == record
    assert store.verify() == []
    if n:
        assert state.cursor == cursor_for(n)
        assert store.product_path("a.bin") == store.version_dir(n) / "products" / "a.bin"
    else:
        assert state.cursor is None
    try:
        store.version_dir(n + 1)
    except TwinVersionError:
        pass
    else:
        raise AssertionError(f"version {n + 1} is visible")
    assert store.find(key_for(n + 1)) is None
    return n


def _kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def main(argv: list[str]) -> int:
    """Run one subprocess mode (see the module docstring)."""
    mode, directory = argv[0], argv[1]
    if mode == "init-fault":
        store_module._fault_hook = lambda point: _kill_self() if point == "init-built" else None
        TwinStore.init(directory, kind="test")
        return 0
    store = TwinStore.open(directory)
    if mode == "loop":
        print("ready", flush=True)
        i = store.state.version + 1
        while True:
            do_update(store, i, wait=True)
            print(f"committed {i}", flush=True)
            i += 1
    if mode == "fault":
        point = argv[2]
        store_module._fault_hook = lambda p: _kill_self() if p == point else None
        do_update(store, store.state.version + 1, wait=True)
        return 0
    if mode == "hold":
        with store.transaction(f"hold-{os.getpid()}", wait=True) as txn:
            (txn.products_dir / "held.txt").write_text(str(os.getpid()))
            print("locked", flush=True)
            sys.stdin.read()
        return 0
    if mode == "nowait":
        try:
            do_update(store, store.state.version + 1, wait=False)
        except TwinLockedError as exc:
            print(f"{exc}\n{exc.hint}", flush=True)
            return exc.exit_code
        return 0
    if mode == "serial":
        tag, count, log = argv[2], int(argv[3]), Path(argv[4])
        for j in range(count):
            with store.transaction(f"{tag}-{j}", wait=True) as txn:
                with log.open("a") as handle:
                    handle.write(f"start {tag} {j} v{txn.version}\n")
                data = f"{tag}-{j}".encode() * 500
                (txn.products_dir / "p.bin").write_bytes(data)
                time.sleep(0.005)
                txn.summary["sha256"] = hashlib.sha256(data).hexdigest()
                with log.open("a") as handle:
                    handle.write(f"end {tag} {j} v{txn.version}\n")
        return 0
    raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
