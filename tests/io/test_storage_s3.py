"""The storage layer on a real S3 API (moto's server): Parquet, quarantine, folder trees, buckets."""

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from upath import UPath

from mlops_dagster.io.parquet import ParquetIOManager
from mlops_dagster.io.quarantine import Quarantine
from mlops_dagster.io.storage import StorageError, check_root, put_tree, remove_tree
from tests.s3_server import LocalS3, local_s3, moto_server

DAILY = dg.DailyPartitionsDefinition(start_date="2026-01-01", end_date="2026-01-03")


@dg.asset(partitions_def=DAILY, io_manager_key="mlops_io_manager")
def daily(context: dg.AssetExecutionContext) -> pd.DataFrame:
    return pd.DataFrame({"day": [context.partition_key], "x": [1]})


@dg.asset(io_manager_key="mlops_io_manager")
def total(daily: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"days": [len(daily)]})


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def s3(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[LocalS3]:
    monkeypatch.chdir(tmp_path)
    with local_s3(s3_endpoint, monkeypatch, tmp_path) as server:
        yield server


def _run(io: ParquetIOManager, selection, partition=None):  # type: ignore[no-untyped-def]
    return dg.materialize(
        [daily, total],
        selection=selection,
        partition_key=partition,
        resources={"mlops_io_manager": io},
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def test_parquet_round_trip_in_a_bucket(s3: LocalS3, tmp_path: Path):
    bucket = s3.new_bucket()
    io = ParquetIOManager(base_path=f"s3://{bucket}/root")
    for day in ("2026-01-01", "2026-01-02"):
        assert _run(io, [daily], day).success
    assert _run(io, [total]).success
    assert s3.keys(bucket) == [
        "root/daily/2026-01-01.parquet",
        "root/daily/2026-01-02.parquet",
        "root/total/data.parquet",
    ]
    assert pd.read_parquet(io.path_for(dg.AssetKey("total"), None).open("rb"))["days"].tolist() == [2]
    assert not list(tmp_path.rglob("s3:*"))


def test_a_missing_bucket_is_named_and_never_created(s3: LocalS3):
    before = s3.buckets()
    io = ParquetIOManager(base_path="s3://mlops-no-such-bucket/root")
    result = _run(io, [daily], "2026-01-01")
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "bucket 'mlops-no-such-bucket' does not exist" in str(failure.step_failure_data.error)
    assert s3.buckets() == before
    with pytest.raises(StorageError, match="mlops-no-such-bucket"):
        Quarantine.for_io_manager(io)
    assert s3.buckets() == before


def test_quarantine_holds_lists_and_releases_in_a_bucket(s3: LocalS3):
    bucket = s3.new_bucket()
    quarantine = Quarantine.for_io_manager(ParquetIOManager(base_path=f"s3://{bucket}/root"))
    key = dg.AssetKey(["churn", "dataset"])
    frame = pd.DataFrame({"customer_id": [None, 2.0], "tenure": ["x", "5"]})
    quarantine.hold(key, "2026-01-02", {"reasons": ["nulls"]}, frame=frame, raw=b"a,b\n", raw_suffix=".csv")
    [entry] = quarantine.entries(key)
    assert (entry.partition, entry.reasons) == ("2026-01-02", ["nulls"])
    assert quarantine.held_partitions(key) == {"2026-01-02"}
    held = quarantine.read(key, "2026-01-02")
    assert held is not None and len(held) == 2
    prefix = "root/.quarantine/churn/dataset/2026-01-02/"
    assert s3.keys(bucket) == [prefix + n for n in ("data.parquet", "report.json", "source.csv")]
    assert quarantine.release(key, "2026-01-02")
    assert quarantine.entries(key) == [] and s3.keys(bucket) == []
    assert not quarantine.release(key, "2026-01-02")


def _tree(folder: Path, files: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


@pytest.mark.parametrize("where", ["local", "s3"])
def test_put_tree_replaces_the_whole_folder(where: str, s3: LocalS3, tmp_path: Path):
    target = UPath(tmp_path / "out" / "v1") if where == "local" else UPath(f"s3://{s3.new_bucket()}/b/v1")
    put_tree(_tree(tmp_path / "a", {"model": b"1", "old": b"x", "manifest": b"m1"}), target, last="manifest")
    put_tree(_tree(tmp_path / "b", {"model": b"2", "manifest": b"m2"}), target, last="manifest")
    assert sorted(p.name for p in target.iterdir()) == ["manifest", "model"]
    assert (target / "model").read_bytes() == b"2" and (target / "manifest").read_bytes() == b"m2"
    with pytest.raises(StorageError, match="no manifest"):
        put_tree(_tree(tmp_path / "c", {"model": b"3"}), target, last="manifest")
    assert (target / "model").read_bytes() == b"2"  # refused before anything was written
    remove_tree(target)
    assert not target.exists()
    if where == "local":
        assert [p.name for p in (tmp_path / "out").iterdir()] == []  # no temporary folder left


def test_check_root_leaves_local_and_memory_roots_alone(tmp_path: Path):
    check_root(UPath(tmp_path / "not-yet"))
    check_root(UPath("memory://anything/at/all"))
