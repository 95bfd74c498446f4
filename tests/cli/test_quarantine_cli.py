"""`mlops-dagster quarantine list|show`: held batches, read from the data root under DAGSTER_HOME.

Entries are written directly with `Quarantine(root).hold(...)` in a fresh DAGSTER_HOME (the `storage`
fixture), one holding a frame and one raw bytes; the last test quarantines a real bad batch of the demo
by materializing its dataset partition.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from mlops_dagster import build_definitions
from mlops_dagster.cli import main
from mlops_dagster.io.parquet import ParquetIOManager
from mlops_dagster.io.quarantine import Quarantine

ROOT = Path(__file__).resolve().parents[2]
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
RUN_ID = "0ba6a0bf-eba6-4a72-b5fc-d43021359ab6"
RAW = b"customer_id,event_time\n1,not a time\n"

CHURN_REPORT = {
    "reasons": [
        "mlops_schema_guard: column `customer_id` (entity): 2 null value(s)",
        "expect_column_values_to_be_in_set__plan: expect_column_values_to_be_in_set failed on column "
        "`plan`: 1 unexpected (20.00%)",
    ],
    "failed_checks": ["mlops_schema_guard", "expect_column_values_to_be_in_set__plan"],
    "passed_checks": ["expect_column_values_to_be_between__tenure_months"],
    "run_id": RUN_ID,
    "checks": {
        "mlops_schema_guard": {
            "mlops/problems": ["column `customer_id` (entity): 2 null value(s)"],
            "mlops/schema": {"customer_id": "float64"},
            "mlops/champion_version": "",
            "mlops/partition": "2026-01-05",
        },
        "expect_column_values_to_be_in_set__plan": {
            "observed_value": {"value": None},
            "unexpected_count": 1,
            "unexpected_percent": 20.0,
            "unexpected_sample": ["platinum"],
            "gx_result": {"element_count": 5},
            "mlops/partition": "2026-01-05",
        },
        "expect_column_values_to_be_between__tenure_months": {
            "observed_value": {"value": 42.5},
            "unexpected_count": 0,
            "unexpected_percent": 0.0,
            "unexpected_sample": [],
            "gx_result": {},
            "mlops/partition": "2026-01-05",
        },
    },
}


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def held(storage: Path) -> Path:
    """Three entries under $DAGSTER_HOME/mlops/data: a frame (churn, partitioned), raw bytes (demand,
    partitioned) and a frame of an unpartitioned feature group; returns the data root."""
    root = Path(str(ParquetIOManager().root()))
    assert root == storage / "mlops" / "data"
    quarantine = Quarantine(ParquetIOManager().root())
    frame = pd.DataFrame(
        {
            "customer_id": [1.0, None, 3.0, None, 5.0],
            "plan": ["basic", "premium", "platinum", "basic", "standard"],
            "tenure_months": [1, 2, 3, 4, 5],
        }
    )
    quarantine.hold(dg.AssetKey(["churn", "dataset"]), "2026-01-05", CHURN_REPORT, frame=frame)
    quarantine.hold(
        dg.AssetKey(["demand", "dataset"]),
        "2026-01-06",
        {"reasons": ["cannot parse timestamps in column `event_time`"], "run_id": RUN_ID},
        raw=RAW,
        raw_suffix=".csv",
    )
    quarantine.hold(
        dg.AssetKey(["features", "customer_activity"]),
        None,
        {
            "reasons": ["expect_column_values_to_not_be_null__calls_30d: 3 unexpected (1.00%)"],
            "failed_checks": ["expect_column_values_to_not_be_null__calls_30d"],
            "passed_checks": [],
            "run_id": RUN_ID,
            "checks": {"expect_column_values_to_not_be_null__calls_30d": {"unexpected_count": 3}},
        },
        frame=pd.DataFrame({"customer_id": [1, 2], "calls_30d": [None, 4.0]}),
    )
    return root


# ------------------------------------------------------------------------------------------------
# list
# ------------------------------------------------------------------------------------------------


def test_list_all(held: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(["quarantine", "list"], capsys)
    assert code == 0, err
    assert out.startswith("3 batch(es) in quarantine")
    lines = out.splitlines()
    churn = next(line for line in lines if line.strip().startswith("churn/dataset"))
    assert "2026-01-05" in churn and "UTC" in churn
    assert "mlops_schema_guard, expect_column_values_to_be_in_set__plan" in churn
    assert "mlops_schema_guard: column `customer_id` (entity): 2 null value(s)" in churn
    demand = next(line for line in lines if line.strip().startswith("demand/dataset"))
    assert "2026-01-06" in demand and "cannot parse timestamps" in demand
    features = next(line for line in lines if line.strip().startswith("features/customer_activity"))
    assert "  -  " in features and "expect_column_values_to_not_be_null__calls_30d" in features


def _assets(out: str) -> list[str]:
    """The ASSET column of `quarantine list`."""
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.strip().startswith("ASSET"))
    return [line.split()[0] for line in lines[header + 1 :] if line.startswith("  ")]


def test_list_name_filters(held: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(["quarantine", "list", "churn"], capsys)
    assert code == 0, err
    assert out.startswith("1 batch(es) in quarantine for churn")
    assert _assets(out) == ["churn/dataset"]

    code, out, err = _run(["quarantine", "list", "features"], capsys)
    assert code == 0, err
    assert _assets(out) == ["features/customer_activity"]


def test_list_json(held: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(["quarantine", "list", "--json"], capsys)
    assert code == 0, err
    payload = json.loads(out)
    assert payload["storage"] == str(held) and payload["name"] is None
    by_asset = {e["asset"]: e for e in payload["entries"]}
    assert set(by_asset) == {"churn/dataset", "demand/dataset", "features/customer_activity"}
    churn = by_asset["churn/dataset"]
    assert churn["partition"] == "2026-01-05" and churn["run_id"] == RUN_ID
    assert churn["failed_checks"] == CHURN_REPORT["failed_checks"]
    assert churn["reasons"] == CHURN_REPORT["reasons"] and churn["files"] == ["data.parquet"]
    assert by_asset["demand/dataset"]["files"] == ["source.csv"]
    assert by_asset["features/customer_activity"]["partition"] is None


def test_list_nothing_and_unknown_pipeline(storage: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(["quarantine", "list"], capsys)
    assert code == 0, err
    assert out.startswith("nothing in quarantine")
    code, out, err = _run(["quarantine", "list", "--json"], capsys)
    assert code == 0 and json.loads(out)["entries"] == []

    # a pipeline with data but nothing held
    data = storage / "mlops" / "data" / "churn" / "dataset"
    data.mkdir(parents=True)
    code, out, err = _run(["quarantine", "list", "churn"], capsys)
    assert code == 0, err
    assert out.startswith("nothing in quarantine for churn")

    code, out, err = _run(["quarantine", "list", "nope"], capsys)
    assert code == 1 and out == ""
    assert "unknown pipeline 'nope'" in err and "churn" in err and "Traceback" not in err


# ------------------------------------------------------------------------------------------------
# show
# ------------------------------------------------------------------------------------------------


def test_show_frame(held: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(["quarantine", "show", "churn", "2026-01-05", "--rows", "3"], capsys)
    assert code == 0, err
    assert out.startswith("churn/dataset 2026-01-05: in quarantine, 2 blocking check(s) failed")
    for reason in CHURN_REPORT["reasons"]:
        assert reason in out
    assert RUN_ID in out
    assert str(held / ".quarantine" / "churn" / "dataset" / "2026-01-05") in out
    assert "data.parquet (" in out and "report.json (" in out
    assert "Checks (2 failed, 1 passed)" in out
    checks = out.split("Checks (")[1].split("Data:")[0]
    assert "FAILED  mlops_schema_guard" in checks
    assert "problem: column `customer_id` (entity): 2 null value(s)" in checks
    assert "FAILED  expect_column_values_to_be_in_set__plan" in checks
    assert "unexpected: 1 (20.00%)" in checks and 'sample: ["platinum"]' in checks
    assert "passed  expect_column_values_to_be_between__tenure_months" in checks
    assert "observed: 42.5" in checks and "unexpected: 0 (0.00%)" in checks
    assert "gx_result" not in checks and "mlops/schema" not in checks
    data = out.split("Data:")[1]
    assert data.startswith(" first 3 of 5 row(s), 3 column(s)")
    assert "platinum" in data and "standard" not in data  # rows 1-3 only


def test_show_raw_bytes(held: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(["quarantine", "show", "demand", "2026-01-06"], capsys)
    assert code == 0, err
    assert "cannot parse timestamps in column `event_time`" in out and RUN_ID in out
    raw = held / ".quarantine" / "demand" / "dataset" / "2026-01-06" / "source.csv"
    assert f"Data: the raw source file, not a table: {raw} ({len(RAW)} bytes)" in out
    assert "none ran" in out


def test_show_unpartitioned_feature_group(held: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for partition in (["-"], []):
        argv = ["quarantine", "show", "churn", *partition, "--asset", "features/customer_activity"]
        code, out, err = _run(argv, capsys)
        assert code == 0, err
        assert out.startswith("features/customer_activity -: in quarantine, 1 blocking check(s) failed")
        assert "unexpected: 3" in out and "first 2 of 2 row(s)" in out


def test_show_json(held: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(["quarantine", "show", "churn", "2026-01-05", "--rows", "2", "--json"], capsys)
    assert code == 0, err
    payload = json.loads(out)
    assert payload["asset"] == "churn/dataset" and payload["partition"] == "2026-01-05"
    assert payload["report"]["checks"] == CHURN_REPORT["checks"]
    assert payload["report"]["reasons"] == CHURN_REPORT["reasons"] and payload["report"]["held_at"]
    [data_file] = payload["files"]
    assert data_file["name"] == "data.parquet" and data_file["size"] > 0
    assert payload["data"]["rows_total"] == 5 and list(payload["data"]["columns"]) == [
        "customer_id",
        "plan",
        "tenure_months",
    ]
    assert payload["data"]["rows"] == [
        {"customer_id": 1.0, "plan": "basic", "tenure_months": 1},
        {"customer_id": None, "plan": "premium", "tenure_months": 2},
    ]

    code, out, err = _run(["quarantine", "show", "demand", "2026-01-06", "--json"], capsys)
    assert code == 0, err
    payload = json.loads(out)
    assert payload["data"] is None and payload["files"][0]["size"] == len(RAW)


def test_show_unknown_partition_and_pipeline(held: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(["quarantine", "show", "churn", "2026-02-01"], capsys)
    assert code == 1 and out == ""
    assert "no quarantined batch of churn/dataset partition 2026-02-01 (held: 2026-01-05)" in err
    assert "Traceback" not in err

    code, _, err = _run(["quarantine", "show", "churn"], capsys)
    assert code == 1 and "without a partition" in err and "give a PARTITION" in err

    code, _, err = _run(["quarantine", "show", "churn", "2026-01-05", "--asset", "features/nope"], capsys)
    assert code == 1 and "nothing of features/nope is in quarantine" in err

    code, _, err = _run(["quarantine", "show", "nope", "2026-01-05"], capsys)
    assert code == 1 and "unknown pipeline 'nope'" in err


# ------------------------------------------------------------------------------------------------
# where the data root comes from
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv", [["quarantine", "list"], ["quarantine", "show", "churn", "2026-01-05", "--json"]]
)
def test_needs_dagster_home(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    code, out, err = _run(argv, capsys)
    assert code == 1 and out == ""
    assert "DAGSTER_HOME is not set" in err and "--storage" in err
    assert "Traceback" not in err


def test_storage_option(
    held: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    code, out, err = _run(["quarantine", "list", "churn", "--storage", str(held)], capsys)
    assert code == 0, err
    assert "churn/dataset" in out and "2026-01-05" in out
    code, out, err = _run(["quarantine", "show", "churn", "2026-01-05", "--storage", str(held)], capsys)
    assert code == 0 and "Checks (2 failed, 1 passed)" in out

    code, out, err = _run(["quarantine", "list", "--storage", str(tmp_path / "missing")], capsys)
    assert code == 1 and "no such folder" in err and "Traceback" not in err


def test_list_loads_no_heavy_library(held: Path) -> None:
    code = (
        "import sys\n"
        "from mlops_dagster.cli import main\n"
        "assert main(['quarantine', 'list']) == 0\n"
        "assert main(['quarantine', 'show', 'churn', '2026-01-05']) == 0\n"
        "heavy = [m for m in ('sklearn', 'bentoml', 'evidently', 'great_expectations', 'onnx', "
        "'onnxruntime') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=dict(os.environ), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "churn/dataset" in done.stdout


# ------------------------------------------------------------------------------------------------
# end to end: the demo's bad batch lands in quarantine
# ------------------------------------------------------------------------------------------------


def test_bad_demo_batch_is_listed(storage: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from assets import feed

    feed.write_batch("churn", "2026-01-03", "quality_incident")
    defs = build_definitions(ROOT / "pipelines")
    with warnings.catch_warnings(), dg.DagsterInstance.get() as instance:
        warnings.simplefilter("ignore")
        result = dg.materialize(
            list(defs.assets),
            selection=[dg.AssetKey(["churn", "dataset"])],
            instance=instance,
            resources=defs.resources,
            run_config=QUIET,
            partition_key="2026-01-03",
            raise_on_error=False,
        )
    assert not result.success

    code, out, err = _run(["quarantine", "list", "churn"], capsys)
    assert code == 0, err
    row = next(line for line in out.splitlines() if line.strip().startswith("churn/dataset"))
    assert "2026-01-03" in row
    assert "mlops_schema_guard" in row and "expect_column_values_to_not_be_null__customer_id" in row

    code, out, err = _run(["quarantine", "show", "churn", "2026-01-03", "--json"], capsys)
    assert code == 0, err
    payload = json.loads(out)
    assert "expect_column_values_to_not_be_null__customer_id" in payload["report"]["failed_checks"]
    assert payload["report"]["run_id"] == result.run_id
    assert payload["data"]["rows_total"] > 0
    null_check = payload["report"]["checks"]["expect_column_values_to_not_be_null__customer_id"]
    assert null_check["unexpected_count"] > 0
