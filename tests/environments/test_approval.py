"""`approval: required`: a new champion waits for `registry approve` by an owner; a rollback never waits."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest

from mlops_dagster import build_definitions
from mlops_dagster.audit import read_log
from mlops_dagster.cli import main
from mlops_dagster.keys import Tags
from mlops_dagster.registry import records

ROOT = Path(__file__).resolve().parents[2]
K = dg.AssetKey
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def test_a_promotion_waits_for_an_owner_and_a_rollback_does_not(  # type: ignore[no-untyped-def]
    storage: Path,
    tmp_path: Path,
    helpers,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from assets import feed

    specs = tmp_path / "specs"
    shutil.copytree(ROOT / "pipelines", specs)
    (specs / "environments.yaml").write_text("environments:\n  prod:\n    approval: required\n")
    churn = specs / "churn.yaml"  # no serving targets: the gates alone decide (no ONNX parity), and faster
    churn.write_text(churn.read_text().replace("targets: [cloud, edge, batch]", "targets: [batch]"))
    monkeypatch.setenv("MLOPS_ENV", "prod")
    monkeypatch.chdir(tmp_path)  # no ./definitions.py: the CLI builds from --specs
    cli = ["--specs", str(specs)]
    for day in range(1, 10):
        feed.write_batch("churn", f"2026-04-{day:02d}", "normal")
    defs = build_definitions(specs)
    retrain = defs.resolve_job_def("churn__retrain")
    with dg.DagsterInstance.get() as instance:
        dataset = [K(["churn", "dataset"])]
        assert helpers.range(defs, instance, dataset, "2026-04-01", "2026-04-06", run_config=QUIET).success
        assert retrain.execute_in_process(instance=instance, run_config=QUIET).success
        # the gates passed, but prod requires an approval: nothing moved
        assert records.current_champion(instance, "churn") is None
        [waiting] = records.decision_history(instance, "churn", 10)
        waits = [r for r in waiting.reasons if r.startswith("WAIT approval") and "--by <owner>" in r]
        assert waits, waiting.reasons
        first = waiting.version

    assert main(["registry", "promote", "churn", first, *cli]) == 1
    assert "needs an approval" in capsys.readouterr().err
    assert main(["registry", "approve", "churn", first, "--by", "mallory", *cli]) == 1
    assert (
        "'mallory' may not approve churn: approvers are its owners (team:growth)" in capsys.readouterr().err
    )
    assert (
        main(["registry", "approve", "churn", first, "--by", "team:growth", "--reason", "reviewed", *cli])
        == 0
    )
    capsys.readouterr()
    with dg.DagsterInstance.get() as instance:
        champion = records.current_champion(instance, "churn")
        assert champion is not None and champion.version == first
        run = instance.get_run_by_id(champion.run_id)
        assert run is not None and run.tags[Tags.APPROVED_BY] == "team:growth"
        assert champion.reasons[0] == "approved by team:growth"
    last = read_log("churn")[-1]
    assert (last["action"], last["version"], last["approved_by"]) == ("manual_promote", first, "team:growth")

    # a second version, approved too; then a rollback to the first goes ahead without any approval
    with dg.DagsterInstance.get() as instance:
        assert helpers.range(defs, instance, dataset, "2026-04-07", "2026-04-09", run_config=QUIET).success
        assert retrain.execute_in_process(instance=instance, run_config=QUIET).success
        second = records.latest_candidate(instance, "churn")
    assert second is not None and second.version != first
    assert main(["registry", "approve", "churn", second.version, "--by", "team:growth", *cli]) == 0
    assert main(["registry", "rollback", "churn", "--reason", "live metric fell", *cli]) == 0
    with dg.DagsterInstance.get() as instance:
        assert records.current_champion(instance, "churn").version == first  # type: ignore[union-attr]
    assert read_log("churn")[-1]["action"] == "rollback"
