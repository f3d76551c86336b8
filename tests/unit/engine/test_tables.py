from datetime import UTC, datetime

import polars as pl

from sensorstream.engine.tables import TableDecl, VersionedTable

DECL = TableDecl(
    "doors",
    key=("device_id",),
    columns={"district": pl.String()},
    key_types={"device_id": pl.String()},
)


def _ts(second: int) -> datetime:
    return datetime(2024, 1, 1, 0, 0, second, tzinfo=UTC)


def _us(second: int) -> int:
    return int(_ts(second).timestamp() * 1_000_000)


def _records(*rows: tuple[str, int]) -> pl.DataFrame:
    return pl.DataFrame(
        {"device_id": [d for d, _ in rows], "ts": [_ts(s) for _, s in rows]},
        schema={"device_id": pl.String(), "ts": pl.Datetime("us", "UTC")},
    )


def _table() -> VersionedTable:
    table = VersionedTable(DECL)
    table.replace_all(pl.DataFrame({"device_id": ["a", "b"], "district": ["x", "y"]}), _us(10))
    table.upsert(pl.DataFrame({"device_id": ["a"], "district": ["z"]}), _us(20))
    return table


def test_lookup_gives_each_keys_latest_row_and_nulls_for_unknown_keys() -> None:
    out = _table().lookup(_records(("b", 1), ("a", 2), ("q", 3)), ["device_id"])
    assert out["district"].to_list() == ["y", "z", None]


def test_as_of_gives_the_version_valid_at_each_records_time() -> None:
    out = _table().as_of(_records(("a", 25), ("a", 5), ("a", 15), ("b", 30)), ["device_id"], "ts")
    assert out["district"].to_list() == ["z", None, "x", "y"]
    assert out["ts"].to_list() == [_ts(25), _ts(5), _ts(15), _ts(30)]


def test_a_reload_without_a_key_deletes_it_from_then_on() -> None:
    table = _table()
    table.replace_all(pl.DataFrame({"device_id": ["a"], "district": ["z"]}), _us(40))
    assert table.lookup(_records(("b", 50)), ["device_id"])["district"].to_list() == [None]
    assert table.as_of(_records(("b", 39), ("b", 41)), ["device_id"], "ts")[
        "district"
    ].to_list() == ["y", None]


def test_an_unchanged_reload_adds_no_versions() -> None:
    table = _table()
    before = table.height
    table.replace_all(pl.DataFrame({"device_id": ["a", "b"], "district": ["z", "y"]}), _us(50))
    assert table.height == before


def test_eviction_keeps_the_version_valid_at_the_horizon_and_later_ones() -> None:
    table = _table()
    table.evict(_us(25))
    assert table.height == 2  # a@20 and b@10; a@10 can no longer be asked for
    out = table.as_of(_records(("a", 30), ("b", 30)), ["device_id"], "ts")
    assert out["district"].to_list() == ["z", "y"]


def test_a_deleted_key_is_forgotten_once_the_horizon_passes_its_deletion() -> None:
    table = _table()
    table.delete(pl.DataFrame({"device_id": ["b"]}), _us(30))
    table.evict(_us(31))
    assert table.versions["device_id"].to_list() == ["a"]


def test_snapshot_and_restore_keep_every_version() -> None:
    table = _table()
    copy = VersionedTable(DECL)
    copy.restore(table.snapshot())
    assert copy.versions.equals(table.versions)


def test_lookup_against_a_large_table_narrows_by_key() -> None:
    table = VersionedTable(DECL)
    keys = [f"d{i:07d}" for i in range(200_000)]
    table.replace_all(pl.DataFrame({"device_id": keys, "district": keys}), _us(0))
    records = _records(("d0000007", 1), ("nope", 2), ("d0199999", 3))
    assert table.lookup(records, ["device_id"])["district"].to_list() == [
        "d0000007",
        None,
        "d0199999",
    ]
