"""Restoring a twin to an earlier version (twins.twin.restore)."""

from __future__ import annotations

from pathlib import Path

import pytest

from twins.twin import (
    TwinState,
    TwinStore,
    TwinVersionError,
    restore_version,
    visible_products,
)


def _update(store: TwinStore, i: int, *, extra_file: str | None = None) -> bool:
    """Update ``u<i>``: cursor 2021-0<i>, model m<i>, products a.txt (and ``extra_file``)."""
    with store.transaction(f"u{i}") as txn:
        if not txn.noop:
            (txn.products_dir / "a.txt").write_text(f"a{i}")
            if extra_file:
                (txn.products_dir / extra_file).write_text(f"{extra_file}{i}")
            txn.update_state(cursor=f"2021-0{i}", model_ref=f"m{i}", extra={"last": i})
    return txn.noop


@pytest.fixture()
def store(tmp_path: Path) -> TwinStore:
    twin = TwinStore.init(
        tmp_path / "twin",
        kind="k",
        cursor="2021-00",
        model_ref="m0",
        extra={"last": 0},
        products=lambda d: (d / "clim.txt").write_text("clim"),
    )
    _update(twin, 1)
    _update(twin, 2, extra_file="late.txt")
    _update(twin, 3)
    return twin


def test_restore_brings_back_state_and_products(store: TwinStore) -> None:
    record = restore_version(store, 1)
    assert (record.version, record.action) == (4, "restore")
    assert record.summary == {"restored": 1, "undone": [2, 3]}
    state = store.state
    assert (state.cursor, state.model_ref, state.extra) == ("2021-01", "m1", {"last": 1})
    assert state.undone == ((2, 3),)
    assert store.product_path("a.txt").read_text() == "a1"
    assert store.product_path("clim.txt").read_text() == "clim"
    # late.txt appeared in a version that was taken back: it is gone from lookups
    assert "late.txt" not in visible_products(store, 4)
    with pytest.raises(FileNotFoundError, match="late.txt"):
        store.product_path("late.txt")
    assert store.verify() == []
    # the undone updates may be ingested again; the kept one is still a no-op
    assert _update(store, 1) is True
    assert _update(store, 2) is False
    assert store.state.cursor == "2021-02"
    assert store.product_path("a.txt").read_text() == "a2"


def test_restore_again_is_a_noop(store: TwinStore, dir_snapshot) -> None:
    first = restore_version(store, 2)
    before = dir_snapshot(store.path, skip_lock=True)
    assert restore_version(store, 2) == first
    assert dir_snapshot(store.path, skip_lock=True) == before


def test_restore_into_an_undone_range_brings_its_keys_back(store: TwinStore) -> None:
    restore_version(store, 1)  # v4, undoes 2..3
    record = restore_version(store, 3)  # back to v3's lineage, undoes only v4
    assert record.summary == {"restored": 3, "undone": [4, 4]}
    assert store.state.undone == ((4, 4),)
    assert store.state.cursor == "2021-03"
    assert _update(store, 2) is True and _update(store, 3) is True  # both in v3's lineage
    assert store.product_path("late.txt").read_text() == "late.txt2"


@pytest.mark.parametrize(
    ("version", "words"),
    [(3, "current version"), (9, "no version 9"), (True, "integer")],
)
def test_restore_refusals_change_nothing(
    store: TwinStore, dir_snapshot, version: object, words: str
) -> None:
    before = dir_snapshot(store.path, skip_lock=True)
    with pytest.raises(TwinVersionError, match=words) as info:
        restore_version(store, version)  # type: ignore[arg-type]
    assert str(store.path) in str(info.value) and "\n" not in str(info.value)
    assert dir_snapshot(store.path, skip_lock=True) == before


def test_version_without_snapshot_is_refused(store: TwinStore, dir_snapshot) -> None:
    (store.version_dir(1) / "state.json").unlink()  # as committed by an older twins
    before = dir_snapshot(store.path, skip_lock=True)
    with pytest.raises(TwinVersionError, match="no state snapshot"):
        restore_version(store, 1)
    assert dir_snapshot(store.path, skip_lock=True) == before


def test_state_round_trips_undone(store: TwinStore) -> None:
    restore_version(store, 0)
    state = store.state
    assert TwinState.from_dict(state.to_dict()) == state
    assert state.to_dict()["undone"] == [[1, 3]]
    with pytest.raises(ValueError, match="undone"):
        TwinState.from_dict(state.to_dict() | {"undone": [[3, 1]]})
