"""End to end on the demo specs: dataset partitions -> features -> training set -> candidate -> champion."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from mlops_dagster.keys import Meta
from mlops_dagster.registry import records
from mlops_dagster.registry.store import read_card

K = dg.AssetKey


def _meta(instance: dg.DagsterInstance, key: dg.AssetKey) -> dict:
    event = instance.get_latest_materialization_event(key)
    assert event is not None and event.asset_materialization is not None, f"{key} not materialized"
    return {k: getattr(v, "value", v) for k, v in event.asset_materialization.metadata.items()}


@pytest.fixture
def trained(demo_defs, helpers):  # type: ignore[no-untyped-def]
    instance = dg.DagsterInstance.ephemeral()
    for p in ("churn", "demand"):
        assert helpers.range(demo_defs, instance, [K([p, "dataset"])], "2026-01-01", "2026-01-14").success
    for p in ("churn", "demand"):
        result = demo_defs.resolve_job_def(f"{p}__retrain").execute_in_process(instance=instance)
        assert result.success
    return demo_defs, instance


def test_graph_shape(demo_defs):  # type: ignore[no-untyped-def]
    graph = demo_defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == {
        "churn/dataset",
        "churn/training_set",
        "churn/candidate",
        "churn/champion",
        "demand/dataset",
        "demand/training_set",
        "demand/candidate",
        "demand/champion",
        "churn/drift_report",
        "demand/drift_report",
        "churn/bento",
        "demand/bento",
        "churn/edge_bundle",
        "demand/edge_bundle",
        "churn/predictions",
        "churn/feedback",
        "churn/live_performance",
        "features/customer_activity",
    }
    node = graph.get(K(["churn", "training_set"]))
    assert K(["features", "customer_activity"]) in node.parent_keys
    assert graph.get(K(["features", "customer_activity"])).group_name == "features"
    assert graph.get(K(["demand", "champion"])).group_name == "demand"
    for key in graph.get_all_asset_keys():
        assert graph.get(key).code_version, f"{key} has no code version"
    assert graph.get(K(["churn", "dataset"])).partitions_def is not None
    assert {j.name for j in demo_defs.jobs} >= {"churn__retrain", "demand__retrain"}


def test_materializations_carry_metadata_and_versions(trained):  # type: ignore[no-untyped-def]
    _, instance = trained
    ds = _meta(instance, K(["churn", "dataset"]))
    assert ds["dagster/row_count"] == 300  # one partition per run
    assert {c.name for c in ds["dagster/column_schema"].columns} >= {"customer_id", "event_time", "churned"}
    assert "customer_id" in ds[Meta.PREVIEW]
    features = _meta(instance, K(["features", "customer_activity"]))
    assert features["dagster/row_count"] == 14 * 300  # the group reads every partition
    event = instance.get_latest_materialization_event(K(["churn", "training_set"]))
    assert event.asset_materialization.tags["dagster/data_version"]  # content hash recorded
    cand = _meta(instance, K(["churn", "candidate"]))
    assert len(cand[Meta.SHA256]) == 64 and cand[Meta.SHA256].startswith(cand[Meta.VERSION])
    assert cand[Meta.METRICS]["roc_auc"] > 0.7
    assert "mlops/metrics_table" in cand


def test_champion_decision_and_model_card(trained):  # type: ignore[no-untyped-def]
    _, instance = trained
    for pipeline, metric in (("churn", "roc_auc"), ("demand", "r2")):
        champion = records.current_champion(instance, pipeline)
        assert champion is not None and champion.decision == "promote"
        assert any(r.startswith("pass") for r in champion.reasons)
        card = read_card(pipeline, champion.version)
        assert card["sha256"] == champion.sha256
        assert card["metrics"][metric] == pytest.approx(champion.metrics[metric], abs=1e-9)
        for field in (
            "params",
            "training_set_data_version",
            "feature_group_versions",
            "code_version",
            "created_at",
            "holdout",
            "features",
        ):
            assert field in card, field
        assert "customer_activity" in card["feature_group_versions"]
        assert "email" not in card["features"]  # pii never becomes a model feature
        md = Path(_meta(instance, K([pipeline, "champion"]))[Meta.MODEL_CARD])
        assert md.exists() and champion.version in md.read_text()


def test_retraining_same_data_keeps_the_champion(trained):  # type: ignore[no-untyped-def]
    defs, instance = trained
    before = records.champion_history(instance, "churn")
    assert defs.resolve_job_def("churn__retrain").execute_in_process(instance=instance).success
    assert records.champion_history(instance, "churn") == before  # no new champion event
    keep = records.decision_history(instance, "churn")[0]
    assert keep.decision == "keep" and keep.reasons == ["candidate is already the champion"]


def test_failing_gate_records_reasons_and_keeps_champion(trained, storage, tmp_path):  # type: ignore[no-untyped-def]
    from mlops_dagster import build_definitions, load_specs

    _, instance = trained
    champion = records.current_champion(instance, "churn")
    text = (Path(__file__).parents[2] / "pipelines" / "churn.yaml").read_text()
    worse = text.replace("max_iter: 100, random_state: 0", "max_iter: 1, max_depth: 1, random_state: 0")
    worse = worse.replace("min: {roc_auc: 0.70}", "min: {roc_auc: 0.99}")
    folder = tmp_path / "specs"
    folder.mkdir()
    (folder / "churn.yaml").write_text(worse)
    for name in ("demand.yaml", "features.yaml"):
        (folder / name).write_text((Path(__file__).parents[2] / "pipelines" / name).read_text())
    defs = build_definitions(*load_specs(folder))
    assert defs.resolve_job_def("churn__retrain").execute_in_process(instance=instance).success
    assert records.current_champion(instance, "churn") == champion
    keep = records.decision_history(instance, "churn")[0]
    assert keep.decision == "keep"
    assert any(r.startswith("FAIL roc_auc") and "floor 0.99" in r for r in keep.reasons)


def test_tampered_version_is_refused(trained):  # type: ignore[no-untyped-def]
    from mlops_dagster.errors import IntegrityError
    from mlops_dagster.registry.store import MODEL_FILE, load_version

    _, instance = trained
    champion = records.current_champion(instance, "demand")
    card = read_card("demand", champion.version)
    assert card["sha256"] == champion.sha256
    model_file = _model_dir("demand", champion.version) / MODEL_FILE
    original = model_file.read_bytes()
    try:
        model_file.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
        with pytest.raises(IntegrityError, match="refusing to load"):
            load_version("demand", champion.version, champion.sha256)
    finally:
        model_file.write_bytes(original)
    assert load_version("demand", champion.version, champion.sha256) is not None


def _model_dir(pipeline: str, version: str) -> Path:
    import bentoml

    return Path(bentoml.models.get(f"{pipeline}:{version}").path)


def test_demo_summary_does_not_contradict_itself(trained, monkeypatch):  # type: ignore[no-untyped-def]
    """A new champion whose packaging step failed is reported as both, never as a failed retrain."""
    from assets.demo import retrain_outcome
    from mlops_dagster.packaging import bento

    defs, instance = trained

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("disk full")

    monkeypatch.setattr(bento, "build_bento", broken)
    result = dg.materialize(
        list(defs.assets),
        selection=[K(["churn", "bento"])],
        instance=instance,
        resources=defs.resources,
        raise_on_error=False,
    )
    assert not result.success
    lines = retrain_outcome(instance, "churn", result, before=None)  # as if this run had promoted it
    champion = records.current_champion(instance, "churn")
    assert lines[0].startswith(f"churn: champion {champion.version[:12]}") and lines[0].endswith(
        "new champion"
    )
    assert lines[1].startswith("packaging step FAILED (churn__bento: ") and "disk full" in lines[1]
    assert not any("retrain run FAILED" in line for line in lines)
    kept = retrain_outcome(instance, "churn", result, before=champion.version)
    assert len(kept) == 1 and kept[0].startswith("retrain run FAILED") and "champion unchanged" in kept[0]
