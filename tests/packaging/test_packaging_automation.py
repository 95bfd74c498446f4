"""Declarative automation keeps the packaging on the champion: a new champion makes the bento and the
edge bundle stale and the automation requests them; a decision to keep the champion requests nothing."""

from __future__ import annotations

import dagster as dg

from mlops_dagster.registry import records

K = dg.AssetKey
PACKAGING = [K(["churn", "bento"]), K(["churn", "edge_bundle"])]


def _requested(result: dg.EvaluateAutomationConditionsResult) -> dict[dg.AssetKey, int]:
    return {key: result.get_num_requested(key) for key in PACKAGING}


def _champion(defs: dg.Definitions, instance: dg.DagsterInstance, **config: object) -> None:
    result = dg.materialize(
        list(defs.assets),
        selection=[K(["churn", "champion"])],
        instance=instance,
        resources=defs.resources,
        run_config={"ops": {"churn__champion": {"config": config}}} if config else None,
    )
    assert result.success


def test_packaging_is_requested_when_the_champion_changes(demo_defs, helpers):  # type: ignore[no-untyped-def]
    defs, instance = demo_defs, dg.DagsterInstance.ephemeral()
    assert helpers.range(defs, instance, [K(["churn", "dataset"])], "2026-01-01", "2026-01-08").success
    assert defs.resolve_job_def("churn__retrain").execute_in_process(instance=instance).success
    first = records.current_champion(instance, "churn")
    selection = dg.AssetSelection.assets(*PACKAGING)

    settled = dg.evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=selection)
    settled = dg.evaluate_automation_conditions(
        defs=defs, instance=instance, asset_selection=selection, cursor=settled.cursor
    )
    assert _requested(settled) == {key: 0 for key in PACKAGING}  # packaged in the retrain run

    # A gate decision that keeps the champion is an observation: nothing to rebuild.
    _champion(defs, instance)
    assert records.current_champion(instance, "churn").version == first.version
    kept = dg.evaluate_automation_conditions(
        defs=defs, instance=instance, asset_selection=selection, cursor=settled.cursor
    )
    assert _requested(kept) == {key: 0 for key in PACKAGING}

    # A new champion (a second candidate, promoted by hand through the gates) is a materialization:
    # both packaging assets are requested, once.
    assert helpers.range(defs, instance, [K(["churn", "dataset"])], "2026-01-09", "2026-01-16").success
    trained = dg.materialize(
        list(defs.assets),
        selection=[K(["churn", "training_set"]), K(["churn", "candidate"])],
        instance=instance,
        resources=defs.resources,
    )
    assert trained.success
    second = records.latest_candidate(instance, "churn")
    assert second is not None and second.version != first.version
    _champion(defs, instance, action="promote", version=second.version)
    assert records.current_champion(instance, "churn").version == second.version
    promoted = dg.evaluate_automation_conditions(
        defs=defs, instance=instance, asset_selection=selection, cursor=kept.cursor
    )
    assert _requested(promoted) == {key: 1 for key in PACKAGING}

    # Built (as the automation run would), they are current again: nothing more is requested.
    rebuilt = dg.materialize(
        list(defs.assets), selection=PACKAGING, instance=instance, resources=defs.resources
    )
    assert rebuilt.success
    settled = dg.evaluate_automation_conditions(
        defs=defs, instance=instance, asset_selection=selection, cursor=promoted.cursor
    )
    assert _requested(settled) == {key: 0 for key in PACKAGING}

    # A rollback changes the champion too.
    _champion(defs, instance, action="rollback")
    assert records.current_champion(instance, "churn").version == first.version
    rolled_back = dg.evaluate_automation_conditions(
        defs=defs, instance=instance, asset_selection=selection, cursor=settled.cursor
    )
    assert _requested(rolled_back) == {key: 1 for key in PACKAGING}
