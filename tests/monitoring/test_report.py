"""The Evidently drift report: verdicts, saved files, errors, and no Evidently import until it runs.

Evidently runs twice in this module (one local report, one memory:// report), both module-scoped.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from upath import UPath

from mlops_dagster.errors import DataError
from mlops_dagster.monitoring.report import DriftReportSummary, ReportColumn, run_drift_report

ROOT = Path(__file__).resolve().parents[2]
ROWS = 400


def _frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(7)
    reference = pd.DataFrame(
        {
            "amount": rng.normal(0.0, 1.0, ROWS),
            "channel": rng.choice(["web", "store", "phone"], ROWS, p=[0.6, 0.3, 0.1]),
            "steady": rng.normal(5.0, 2.0, ROWS),
            "only_in_reference": rng.normal(0.0, 1.0, ROWS),
        }
    )
    current = pd.DataFrame(
        {
            "amount": rng.normal(3.0, 1.0, ROWS),  # shifted mean
            "channel": rng.choice(["web", "store", "phone"], ROWS, p=[0.1, 0.3, 0.6]),  # changed mix
            "steady": reference["steady"].sample(frac=1.0, random_state=1).to_numpy(),  # same values
            "only_in_current": rng.normal(0.0, 1.0, ROWS),
        }
    )
    return reference, current


def _no_network(*args: object, **kwargs: object) -> None:
    raise AssertionError(f"the drift report tried the network: {args!r}")


@pytest.fixture(scope="module")
def frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    return _frames()


@pytest.fixture(scope="module")
def local_report(
    frames: tuple[pd.DataFrame, pd.DataFrame], tmp_path_factory: pytest.TempPathFactory
) -> DriftReportSummary:
    reference, current = frames
    out = tmp_path_factory.mktemp("drift") / "nested" / "report"
    with pytest.MonkeyPatch.context() as mp:  # any connection attempt fails the report
        mp.setattr(socket.socket, "connect", _no_network)
        mp.setattr(socket, "create_connection", _no_network)
        mp.setattr(socket, "getaddrinfo", _no_network)
        return run_drift_report(reference, current, out, title="Nightly <drift>")


@pytest.fixture(scope="module")
def memory_report(frames: tuple[pd.DataFrame, pd.DataFrame]) -> DriftReportSummary:
    reference, current = frames
    return run_drift_report(reference, current, UPath("memory://mlops-tests/drift/run-1"), columns=["amount"])


def _by_column(summary: DriftReportSummary) -> dict[str, ReportColumn]:
    return {c.column: c for c in summary.columns}


def test_common_columns_are_tested_and_only_the_changed_ones_drift(local_report: DriftReportSummary) -> None:
    verdicts = _by_column(local_report)
    assert sorted(verdicts) == ["amount", "channel", "steady"]
    assert verdicts["amount"].drifted
    assert verdicts["channel"].drifted
    assert not verdicts["steady"].drifted
    assert local_report.drifted_columns == ["amount", "channel"]


def test_each_verdict_carries_method_score_and_threshold(local_report: DriftReportSummary) -> None:
    verdicts = _by_column(local_report)
    assert verdicts["amount"].method == "K-S p_value"
    assert verdicts["channel"].method == "chi-square p_value"
    for verdict in verdicts.values():
        assert verdict.threshold == pytest.approx(0.05)
        assert verdict.score is not None and 0.0 <= verdict.score <= 1.0
        assert verdict.drifted == (verdict.score < verdict.threshold)  # p-values: drift below threshold
    assert verdicts["steady"].score == pytest.approx(1.0)


def test_share_matches_the_drifted_count(local_report: DriftReportSummary) -> None:
    drifted = sum(c.drifted for c in local_report.columns)
    assert local_report.share_drifted == pytest.approx(drifted / len(local_report.columns))
    assert local_report.dataset_drift is (local_report.share_drifted >= 0.5)
    assert local_report.dataset_drift
    assert (local_report.rows_reference, local_report.rows_current) == (ROWS, ROWS)


def test_html_and_json_are_saved_without_leftovers(local_report: DriftReportSummary) -> None:
    html_path = Path(local_report.html_path)
    assert html_path.name == "report.html"
    page = html_path.read_text(encoding="utf-8")
    assert "amount" in page and "channel" in page
    assert "<title>Nightly &lt;drift&gt;</title>" in page

    assert local_report.json_path is not None
    payload = json.loads(Path(local_report.json_path).read_text(encoding="utf-8"))
    assert {m["config"].get("column") for m in payload["metrics"]} >= {"amount", "channel", "steady"}
    assert sorted(p.name for p in html_path.parent.iterdir()) == ["report.html", "report.json"]


def test_memory_out_dir_and_explicit_columns(memory_report: DriftReportSummary) -> None:
    assert memory_report.html_path == "memory://mlops-tests/drift/run-1/report.html"
    assert [c.column for c in memory_report.columns] == ["amount"]
    assert memory_report.share_drifted == 1.0 and memory_report.dataset_drift
    assert "amount" in UPath(memory_report.html_path).read_text(encoding="utf-8")
    assert memory_report.json_path is not None
    assert json.loads(UPath(memory_report.json_path).read_text(encoding="utf-8"))["metrics"]


@pytest.mark.parametrize("empty", ["reference", "current"])
def test_empty_frame_is_a_data_error_naming_it(
    frames: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path, empty: str
) -> None:
    reference, current = frames
    if empty == "reference":
        reference = reference.iloc[0:0]
    else:
        current = current.iloc[0:0]
    with pytest.raises(DataError, match=f"the {empty} data is empty"):
        run_drift_report(reference, current, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_no_common_column_lists_both_sets(tmp_path: Path) -> None:
    reference = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]})
    current = pd.DataFrame({"c": [1.0, 2.0]})
    with pytest.raises(DataError, match="no column in common") as info:
        run_drift_report(reference, current, tmp_path)
    assert "reference columns: ['a', 'b']" in str(info.value)
    assert "current columns: ['c']" in str(info.value)


def test_requested_column_missing_from_one_frame(
    frames: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path
) -> None:
    reference, current = frames
    with pytest.raises(DataError, match=r"the current data has no column \['only_in_reference'\]"):
        run_drift_report(reference, current, tmp_path, columns=["amount", "only_in_reference"])


def test_importing_the_module_does_not_import_evidently() -> None:
    env = dict(os.environ)
    env.update(BENTOML_DO_NOT_TRACK="true", GX_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1")
    env.pop("PYTHONPATH", None)
    code = "import sys, mlops_dagster.monitoring.report; assert 'evidently' not in sys.modules, 'evidently'"
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_datetime_columns_are_left_out_by_default_and_refused_when_asked(tmp_path: Path) -> None:
    reference = pd.DataFrame({"x": np.arange(50.0), "at": pd.date_range("2026-01-01", periods=50, freq="h")})
    current = reference.assign(at=reference["at"] + pd.Timedelta(days=30))
    summary = run_drift_report(reference, current, tmp_path / "default")
    assert [c.column for c in summary.columns] == ["x"]
    with pytest.raises(DataError, match=r"cannot test drift on 'at' \(date"):
        run_drift_report(reference, current, tmp_path / "asked", columns=["x", "at"])
