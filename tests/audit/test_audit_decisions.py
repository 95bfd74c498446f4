"""The loop writes its own audit log: real champion decisions, a quarantined and released batch, an
export and an import, each appended where it happens; the log verifies against the instance."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest

from mlops_dagster import build_definitions
from mlops_dagster.audit import audit_path, read_log, verify_log
from mlops_dagster.cli import main
from mlops_dagster.keys import Tags

ROOT = Path(__file__).resolve().parents[2]
K = dg.AssetKey
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def test_decisions_quarantine_and_release_are_in_a_log_that_verifies(  # type: ignore[no-untyped-def]
    storage: Path, helpers, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from assets import feed

    for day in range(1, 7):
        feed.write_batch("churn", f"2026-03-{day:02d}", "normal")
    defs = build_definitions(ROOT / "pipelines")
    with dg.DagsterInstance.get() as instance:
        dataset = [K(["churn", "dataset"])]
        assert helpers.range(defs, instance, dataset, "2026-03-01", "2026-03-06", run_config=QUIET).success
        retrain = defs.resolve_job_def("churn__retrain")
        assert retrain.execute_in_process(instance=instance, run_config=QUIET).success
        feed.write_batch("churn", "2026-03-07", "quality_incident")
        bad = helpers.range(
            defs, instance, dataset, "2026-03-07", "2026-03-07", run_config=QUIET, raise_on_error=False
        )
        assert not bad.success
        feed.write_batch("churn", "2026-03-07", "normal")
        assert helpers.range(defs, instance, dataset, "2026-03-07", "2026-03-07", run_config=QUIET).success
        tags = {Tags.TRIGGER: "drift"}
        assert retrain.execute_in_process(instance=instance, run_config=QUIET, tags=tags).success

        log = read_log("churn")
        actions = [(r["action"], r.get("partition")) for r in log]  # `extra` fields sit in the record
        assert actions[0][0] == "promote" and log[0]["previous"] is None and log[0]["trigger"] == "manual"
        assert ("quarantine", "2026-03-07") in actions and ("release", "2026-03-07") in actions
        assert actions.index(("quarantine", "2026-03-07")) < actions.index(("release", "2026-03-07"))
        last = log[-1]
        assert last["action"] in ("promote", "keep") and last["trigger"] == "drift" and last["reasons"]
        assert verify_log("churn", instance=instance) == []

    # export then import in another instance: both recorded, each in its own environment's log
    version = log[0]["version"]
    export = storage.parent / "export"
    argv = ["registry", "export", "churn", version, "--to", str(export), "--specs", str(ROOT / "pipelines")]
    assert main(argv) == 0
    assert read_log("churn")[-1]["action"] == "export" and read_log("churn")[-1]["to"] == str(export)
    assert main(["audit", "verify", "churn", "--specs", str(ROOT / "pipelines")]) == 0

    # an edited decision is caught by the command, naming its line
    path = Path(str(audit_path("churn")))
    lines = path.read_text().splitlines()
    record = json.loads(lines[0])
    record["reasons"] = ["approved by nobody"]
    lines[0] = json.dumps(record, sort_keys=True, separators=(",", ":"))
    path.write_text("\n".join(lines) + "\n")
    capsys.readouterr()
    assert main(["audit", "verify", "churn", "--specs", str(ROOT / "pipelines")]) == 1
    assert "line 1" in capsys.readouterr().out
