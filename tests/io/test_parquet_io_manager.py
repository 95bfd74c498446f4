"""The Parquet IO manager: local and fsspec (memory:// stands in for s3://) storage, partitions."""

from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from upath import UPath

from mlops_dagster.errors import DataError
from mlops_dagster.io.parquet import ParquetIOManager, write_parquet

DAILY = dg.DailyPartitionsDefinition(start_date="2026-01-01", end_date="2026-01-04")


@dg.asset(partitions_def=DAILY, io_manager_key="mlops_io_manager")
def upstream(context: dg.AssetExecutionContext) -> pd.DataFrame:
    return pd.DataFrame({"day": [context.partition_key] * 2, "x": [1, 2]})


@dg.asset(io_manager_key="mlops_io_manager")
def downstream(upstream: pd.DataFrame) -> pd.DataFrame:
    return upstream.assign(x2=upstream["x"] * 2)


@dg.asset(io_manager_key="mlops_io_manager")
def not_a_frame() -> dict:
    return {"a": 1}


def _run(io: ParquetIOManager, selection, partition=None):  # type: ignore[no-untyped-def]
    return dg.materialize(
        [upstream, downstream, not_a_frame],
        selection=selection,
        partition_key=partition,
        resources={"mlops_io_manager": io},
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


@pytest.mark.parametrize("base", ["local", "memory://mlops-test-bucket/data"])
def test_partitions_round_trip(base: str, tmp_path: Path):
    io = ParquetIOManager(base_path=str(tmp_path / "data") if base == "local" else base)
    for day in ("2026-01-01", "2026-01-03"):
        assert _run(io, [upstream], day).success
    assert (io.asset_dir(dg.AssetKey("upstream")) / "2026-01-01.parquet").exists()
    result = _run(io, [downstream])
    assert result.success
    out = pd.read_parquet((io.path_for(dg.AssetKey("downstream"), None)).open("rb"))
    assert sorted(out["day"].unique()) == ["2026-01-01", "2026-01-03"]  # the missing day is skipped
    assert list(out["x2"]) == [2, 4, 2, 4]


def test_default_root_follows_dagster_home(storage: Path):
    assert str(ParquetIOManager().root()).startswith(str(storage))


def test_nothing_materialized_is_a_clear_error(tmp_path: Path):
    result = _run(ParquetIOManager(base_path=str(tmp_path)), [downstream])
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "none of the 3 requested partitions" in str(failure.step_failure_data.error)


def test_refuses_to_pickle(tmp_path: Path):
    result = _run(ParquetIOManager(base_path=str(tmp_path)), [not_a_frame])
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "never pickles" in str(failure.step_failure_data.error)
    assert not list(tmp_path.rglob("*.parquet"))


def test_a_failed_write_leaves_nothing_behind(tmp_path: Path):
    target = UPath(tmp_path / "k" / "data.parquet")
    write_parquet(pd.DataFrame({"a": [1]}), target)
    before = target.read_bytes()
    with pytest.raises(Exception):  # noqa: B017 - pyarrow's error type for unserialisable objects varies
        write_parquet(pd.DataFrame({"a": [object()]}), target)
    assert target.read_bytes() == before  # the previous version is intact
    assert [p.name for p in (tmp_path / "k").iterdir()] == ["data.parquet"]  # no temp file left


def test_output_must_be_a_frame(tmp_path: Path):
    io = ParquetIOManager(base_path=str(tmp_path))
    ctx = dg.build_output_context(asset_key=dg.AssetKey("x"), partition_key=None)
    io.handle_output(ctx, pd.DataFrame({"a": [1]}))
    with pytest.raises(DataError, match="expected a pandas DataFrame"):
        io.handle_output(ctx, [1, 2])
