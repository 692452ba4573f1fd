"""Twin store API: init/open, transactions, idempotency, aborts, errors, status, rollback."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

from twins.errors import TwinsError
from twins.twin import (
    ProductNotFoundError,
    TwinCorruptError,
    TwinError,
    TwinExistsError,
    TwinKindError,
    TwinNotFoundError,
    TwinState,
    TwinStore,
    TwinUpdateError,
    TwinVersionError,
    format_status,
    key_hash,
)

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


def _one_line_naming(err: BaseException, path: Path) -> str:
    message = str(err)
    assert isinstance(err, TwinsError)
    assert str(path) in message, message
    assert "\n" not in message
    return message


@pytest.fixture
def store(tmp_path: Path) -> TwinStore:
    return TwinStore.init(
        tmp_path / "twin",
        kind="hydrology",
        model_ref="models/m0",
        cursor="2021-01",
        config_hash="cfg0",
        extra={"region": "po"},
        products=lambda d: (d / "climatology.txt").write_text("clim"),
    )


# ---------------------------------------------------------------------------------------------
# init / open / transactions


def test_init_layout_and_state(store: TwinStore) -> None:
    directory = store.path
    assert sorted(os.listdir(directory)) == [
        ".lock",
        "history",
        "staging",
        "twin.json",
        "versions",
    ]
    raw = json.loads((directory / "twin.json").read_text())
    assert set(raw) == {
        "format",
        "kind",
        "version",
        "model_ref",
        "cursor",
        "config_hash",
        "created",
        "updated",
        "current",
        "extra",
    }
    state = store.state
    assert state == TwinState.from_dict(raw)
    assert (state.kind, state.version, state.cursor, state.model_ref, state.config_hash) == (
        "hydrology",
        0,
        "2021-01",
        "models/m0",
        "cfg0",
    )
    assert state.current == "versions/v000000"
    assert state.extra == {"region": "po"}
    assert store.history() == []
    record = store.record(0)
    assert record.action == "init" and record.version == 0
    assert record.products["climatology.txt"]["size"] == 4
    assert store.product_path("climatology.txt").read_text() == "clim"
    assert not any(p.name.startswith(".twin.init-") for p in directory.parent.iterdir())
    assert TwinStore.open(directory, kind="hydrology").state == state


def test_init_into_empty_existing_directory(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    store = TwinStore.init(tmp_path / "empty", kind="k")
    assert store.state.version == 0


def test_transaction_commits_products_state_and_history(store: TwinStore) -> None:
    with store.transaction("key-1") as txn:
        assert not txn.noop
        assert txn.state.version == 0 and txn.version == 1
        assert txn.products_dir.parent.parent == store.path / "staging"
        (txn.products_dir / "spi.txt").write_text("spi-1")
        (txn.products_dir / "maps").mkdir()
        (txn.products_dir / "maps" / "m.bin").write_bytes(b"\0" * 5000)
        txn.update_state(cursor="2021-02", model_ref="models/m1", extra={"region": "po", "n": 1})
        txn.summary.update({"cells": 12})
    assert txn.committed
    record = txn.record
    assert record is not None and record.version == 1
    assert (record.cursor_before, record.cursor_after) == ("2021-01", "2021-02")
    assert record.summary == {"cells": 12}
    assert sorted(record.products) == ["maps/m.bin", "spi.txt"]
    assert record.started <= record.finished
    state = store.state
    assert (state.version, state.cursor, state.model_ref, state.config_hash) == (
        1,
        "2021-02",
        "models/m1",
        "cfg0",
    )
    assert state.extra == {"region": "po", "n": 1}
    assert state.current == "versions/v000001"
    assert store.history() == [record]
    assert store.find("key-1") == record
    assert os.listdir(store.path / "history") == [f"000001-{key_hash('key-1')}.json"]
    assert os.listdir(store.path / "staging") == []
    assert store.version_dir() == store.path / "versions" / "v000001"
    assert store.version_dir(0) == store.path / "versions" / "v000000"
    assert store.product_path("maps/m.bin").parent.parent.parent.name == "v000001"
    # Older products stay reachable through the newest version that has them.
    assert store.product_path("climatology.txt").parts[-3] == "v000000"
    with store.transaction("key-2") as txn:
        (txn.products_dir / "spi.txt").write_text("spi-2")
    assert store.product_path("spi.txt").read_text() == "spi-2"
    assert store.product_path("maps/m.bin").parts[-4] == "v000001"
    assert store.verify() == []


def test_empty_update_is_a_version(store: TwinStore) -> None:
    with store.transaction("nothing"):
        pass
    assert store.state.version == 1
    assert store.record(1).products == {}


# ---------------------------------------------------------------------------------------------
# idempotency


def test_same_key_twice_is_a_noop_that_writes_nothing(store: TwinStore, dir_snapshot) -> None:
    with store.transaction("k") as txn:
        (txn.products_dir / "a.txt").write_text("a")
        txn.update_state(cursor="2021-02")
    first = txn.record
    before = dir_snapshot(store.path)  # includes .lock, twin.json, mtimes
    with store.transaction("k") as again:
        assert again.noop
        assert again.record == first
        assert again.version == 1
        assert again.state.version == 1
        with pytest.raises(TwinUpdateError, match="already committed"):
            _ = again.products_dir
        with pytest.raises(TwinUpdateError, match="already committed"):
            again.update_state(cursor="2099-01")
    assert not again.committed
    assert dir_snapshot(store.path) == before
    assert store.state.version == 1
    # A different key is a new update.
    with store.transaction("k2"):
        pass
    assert store.state.version == 2
    assert [r.key for r in store.history()] == ["k", "k2"]


def test_rollback_to_restores_model_ref(store: TwinStore, dir_snapshot) -> None:
    for i, model in enumerate(["models/m1", "models/m2"], start=1):
        with store.transaction(f"u{i}") as txn:
            txn.update_state(model_ref=model, cursor=f"2021-0{i + 1}")
    record = store.rollback_to(1, "rollback-1")
    assert record.version == 3 and record.action == "rollback"
    assert record.summary == {"rollback_to": 1, "model_ref": "models/m1"}
    state = store.state
    assert (state.model_ref, state.cursor, state.config_hash) == ("models/m1", "2021-03", "cfg0")
    assert store.rollback_to(1, "rollback-1") == record  # idempotent
    assert store.rollback_to(0, "rollback-0").model_ref == "models/m0"
    before = dir_snapshot(store.path, skip_lock=True)
    with pytest.raises(TwinVersionError) as info:
        store.rollback_to(99, "rollback-99")
    _one_line_naming(info.value, store.path)
    assert dir_snapshot(store.path, skip_lock=True) == before


# ---------------------------------------------------------------------------------------------
# aborts


@pytest.mark.parametrize("exc_type", [RuntimeError, KeyboardInterrupt])
def test_exception_aborts_and_leaves_twin_unchanged(
    store: TwinStore, exc_type: type[BaseException], dir_snapshot
) -> None:
    with store.transaction("ok") as txn:
        (txn.products_dir / "a.txt").write_text("a")
    before = dir_snapshot(store.path, skip_lock=True)
    state = store.state
    with pytest.raises(exc_type), store.transaction("bad") as txn:
        (txn.products_dir / "a.txt").write_text("half")
        txn.update_state(cursor="2099-12", model_ref="broken")
        txn.summary["x"] = 1
        raise exc_type("boom")
    assert not txn.committed and txn.record is None
    assert dir_snapshot(store.path, skip_lock=True) == before
    assert os.listdir(store.path / "staging") == []
    assert store.state == state
    assert store.find("bad") is None
    assert store.status()["locked"] is False
    # The key was not consumed: retrying it commits.
    with store.transaction("bad") as txn:
        assert not txn.noop
    assert store.state.version == 2


def test_invalid_commit_aborts_cleanly(store: TwinStore, dir_snapshot) -> None:
    before = dir_snapshot(store.path, skip_lock=True)
    txn = store.transaction("k")
    with pytest.raises(TwinUpdateError, match="summary is not JSON") as info, txn:
        (txn.products_dir / "a.txt").write_text("a")
        txn.summary["bad"] = object()
    _one_line_naming(info.value, store.path)
    txn = store.transaction("k")
    with pytest.raises(TwinUpdateError, match="not a regular file"), txn:
        (txn.products_dir / "link").symlink_to(store.path / "twin.json")
    txn = store.transaction("k")
    with pytest.raises(TwinUpdateError, match="extra is not JSON"), txn:
        txn.update_state(extra={"x": {1, 2}})
    txn = store.transaction("k")
    with pytest.raises(TwinUpdateError, match="cursor must be a string"), txn:
        txn.update_state(cursor=202103)  # type: ignore[arg-type]
    assert dir_snapshot(store.path, skip_lock=True) == before


# ---------------------------------------------------------------------------------------------
# errors


def test_open_non_twin_directory(tmp_path: Path) -> None:
    with pytest.raises(TwinNotFoundError) as info:
        TwinStore.open(tmp_path)
    message = _one_line_naming(info.value, tmp_path)
    assert "twin.json" in message
    assert info.value.hint
    missing = tmp_path / "missing"
    with pytest.raises(TwinNotFoundError, match="does not exist") as info:
        TwinStore.open(missing)
    _one_line_naming(info.value, missing)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(TwinNotFoundError, match="not a directory"):
        TwinStore.open(a_file)


def test_init_refuses_existing_twin_or_content(
    store: TwinStore, tmp_path: Path, dir_snapshot
) -> None:
    before = dir_snapshot(store.path)
    with pytest.raises(TwinExistsError, match="already a twin") as info:
        TwinStore.init(store.path, kind="hydrology")
    _one_line_naming(info.value, store.path)
    assert dir_snapshot(store.path) == before
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "data.csv").write_text("1")
    with pytest.raises(TwinExistsError, match="not an empty directory") as info:
        TwinStore.init(busy, kind="k")
    _one_line_naming(info.value, busy)
    with pytest.raises(TwinError, match="kind must be"):
        TwinStore.init(tmp_path / "new", kind="")
    with pytest.raises(TwinError, match="extra is not JSON"):
        TwinStore.init(tmp_path / "new", kind="k", extra={"x": object()})
    assert not (tmp_path / "new").exists()


def test_init_products_failure_leaves_nothing(tmp_path: Path) -> None:
    def products(directory: Path) -> None:
        (directory / "half.txt").write_text("half")
        raise ValueError("no climatology")

    with pytest.raises(ValueError, match="no climatology"):
        TwinStore.init(tmp_path / "twin", kind="k", products=products)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    ("content", "detail"),
    [
        (b"{not json", "invalid"),
        (b"\xff\xfe", "invalid"),
        (b"[]", "not an object"),
        (b'{"format": 1}', "missing field"),
        (b'{"format": 2}', "unsupported format"),
        (b"", "invalid"),
    ],
)
def test_corrupt_twin_json(store: TwinStore, content: bytes, detail: str) -> None:
    (store.path / "twin.json").write_bytes(content)
    with pytest.raises(TwinCorruptError, match=detail) as info:
        TwinStore.open(store.path)
    message = _one_line_naming(info.value, store.path)
    assert "twin.json" in message
    with pytest.raises(TwinCorruptError), store.transaction("k"):
        pass
    assert os.listdir(store.path / "staging") == []


def test_corrupt_field_values(store: TwinStore) -> None:
    raw = json.loads((store.path / "twin.json").read_text())
    for field, value, detail in [
        ("version", -1, "'version'"),
        ("version", True, "'version'"),
        ("cursor", 3, "'cursor'"),
        ("extra", [], "'extra'"),
        ("current", "versions/v000009", "'current'"),
        ("kind", "", "'kind' is empty"),
    ]:
        (store.path / "twin.json").write_text(json.dumps({**raw, field: value}))
        with pytest.raises(TwinCorruptError, match=detail):
            TwinStore.open(store.path)


def test_missing_current_version_dir_is_corrupt(store: TwinStore) -> None:
    with store.transaction("k"):
        pass
    os.rename(store.path / "versions" / "v000001", store.path / "moved")
    with pytest.raises(TwinCorruptError, match="update.json is missing") as info:
        TwinStore.open(store.path)
    _one_line_naming(info.value, store.path)


def test_corrupt_history_entry(store: TwinStore) -> None:
    with store.transaction("k"):
        pass
    entry = store.path / "history" / f"000001-{key_hash('k')}.json"
    entry.write_text("{")
    with pytest.raises(TwinCorruptError) as info:
        store.history()
    assert str(entry) in _one_line_naming(info.value, store.path)


def test_other_user_errors(store: TwinStore) -> None:
    with pytest.raises(TwinKindError, match="is a 'hydrology' twin, not a 'gw' twin") as info:
        TwinStore.open(store.path, kind="gw")
    _one_line_naming(info.value, store.path)
    with pytest.raises(ProductNotFoundError) as info:
        store.product_path("nope.nc")
    assert isinstance(info.value, FileNotFoundError)
    _one_line_naming(info.value, store.path)
    with pytest.raises(ProductNotFoundError, match="invalid product name"):
        store.product_path("../twin.json")
    with pytest.raises(TwinVersionError) as info:
        store.version_dir(1)
    assert isinstance(info.value, LookupError)
    _one_line_naming(info.value, store.path)
    for key in ("", None, 3):
        with pytest.raises(TwinUpdateError, match="key must be a non-empty string"):
            store.transaction(key)  # type: ignore[arg-type]
    txn = store.transaction("k")
    with pytest.raises(TwinUpdateError, match="not been entered"):
        _ = txn.state
    with pytest.raises(TwinUpdateError, match="not active"):
        _ = txn.products_dir


# ---------------------------------------------------------------------------------------------
# status


def test_status_and_format_status(store: TwinStore) -> None:
    status = store.status()
    assert status["dir"] == str(store.path)
    assert (status["kind"], status["version"], status["updates"]) == ("hydrology", 0, 0)
    assert status["last_update"] is None
    assert status["locked"] is False and status["lock_holder"] is None
    text = format_status(store)
    assert "update" in text and "none (only init)" in text

    with store.transaction("sha:abc:2021-02") as txn:
        txn.update_state(cursor="2021-02", model_ref="runs:/r1/model", config_hash="deadbeef")
    status = store.status()
    assert status["version"] == 1 and status["updates"] == 1
    assert status["cursor"] == "2021-02"
    assert status["model_ref"] == "runs:/r1/model"
    assert status["config_hash"] == "deadbeef"
    assert status["last_update"]["key"] == "sha:abc:2021-02"
    assert status["last_update"]["finished"] == store.state.updated
    assert status["extra"] == {"region": "po"}
    json.dumps(status)

    text = format_status(store)
    assert text == format_status(status)
    width = len("config hash")  # the longest label; values start two columns after it
    lines = {line[:width].strip(): line[width + 2 :] for line in text.splitlines()}
    assert lines["twin"] == str(store.path)
    assert lines["kind"] == "hydrology"
    assert lines["version"] == "1 (1 updates)"
    assert lines["cursor"] == "2021-02"
    assert lines["model"] == "runs:/r1/model"
    assert lines["config hash"] == "deadbeef"
    assert lines["last update"].startswith("v1 update key=sha:abc:2021-02 at 20")
    assert lines["lock"] == "free"

    with store.transaction("next"):
        status = store.status()
        assert status["locked"] is True
        assert status["lock_holder"]["pid"] == os.getpid()
        assert "key=next" in status["lock_holder"]["purpose"]
        assert f"held by pid {os.getpid()}" in format_status(store)
    assert store.status()["locked"] is False
