"""The packaging assets in the graph: built by the retrain job, following the champion."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from mlops_dagster import build_definitions
from mlops_dagster.registry import records
from mlops_dagster.spec.loader import load_specs

ROOT = Path(__file__).resolve().parents[2]

K = dg.AssetKey


def _meta(instance: dg.DagsterInstance, key: dg.AssetKey) -> dict:
    event = instance.get_latest_materialization_event(key)
    assert event is not None, f"{key} not materialized"
    return {k: getattr(v, "value", v) for k, v in event.asset_materialization.metadata.items()}


@pytest.fixture
def packaged(demo_defs, helpers):  # type: ignore[no-untyped-def]
    instance = dg.DagsterInstance.ephemeral()
    assert helpers.range(demo_defs, instance, [K(["churn", "dataset"])], "2026-01-01", "2026-01-08").success
    assert demo_defs.resolve_job_def("churn__retrain").execute_in_process(instance=instance).success
    return demo_defs, instance


def test_retrain_packages_the_champion_for_cloud_and_edge(packaged):  # type: ignore[no-untyped-def]
    defs, instance = packaged
    champion = records.current_champion(instance, "churn")
    bento = _meta(instance, K(["churn", "bento"]))
    assert bento["mlops/version"] == champion.version
    assert str(bento["mlops/bento_tag"]).startswith(f"churn:{champion.version}")
    assert Path(bento["mlops/dockerfile"]).exists()
    assert bento["mlops/containerized"] is False and "Docker" in bento["mlops/containerize_note"]
    assert "rows" in bento["mlops/api_schema"]["properties"]
    # The champion converts and passes parity, so the bento serves it with onnxruntime.
    assert bento["mlops/runtime"] == "onnx", bento["mlops/runtime_note"]
    assert bento["mlops/served_model"] == f"churn_edge:{champion.version}"
    assert bento["mlops/label_agreement"] >= 0.999 and bento["mlops/workers"] == 1
    edge = _meta(instance, K(["churn", "edge_bundle"]))
    bundle = Path(edge["mlops/bundle"])
    assert {p.name for p in bundle.iterdir()} >= {"model.onnx", "manifest.json", "predictor.py"}
    assert edge["mlops/label_agreement"] >= 0.999
    check = instance.get_latest_asset_check_evaluation_record(
        dg.AssetCheckKey(K(["churn", "edge_bundle"]), "onnx_parity")
    )
    assert check is not None and check.event.dagster_event.event_specific_data.passed
    event = instance.get_latest_materialization_event(K(["churn", "edge_bundle"]))
    assert event.asset_materialization.tags["dagster/data_version"] == champion.version


def test_packaging_follows_the_champion(demo_defs):  # type: ignore[no-untyped-def]
    graph = demo_defs.resolve_asset_graph()
    for key in (K(["churn", "bento"]), K(["churn", "edge_bundle"])):
        node = graph.get(key)
        assert K(["churn", "champion"]) in node.parent_keys
        assert node.automation_condition is not None  # rebuilt when the champion's version changes
    job = demo_defs.resolve_job_def("churn__retrain")
    assert {K(["churn", "bento"]), K(["churn", "edge_bundle"])} <= set(job.asset_layer.executable_asset_keys)


def test_failing_parity_keeps_the_previous_bundle(packaged, monkeypatch):  # type: ignore[no-untyped-def]
    from mlops_dagster.packaging import parity

    defs, instance = packaged
    before = _meta(instance, K(["churn", "edge_bundle"]))
    files = {p.name: p.read_bytes() for p in Path(before["mlops/bundle"]).iterdir()}
    real = parity.check_parity

    def failing(*args, **kwargs):  # type: ignore[no-untyped-def]
        result = real(*args, **kwargs)
        return parity.ParityResult(
            passed=False,
            n_rows=result.n_rows,
            label_agreement=0.5,
            max_proba_diff=0.4,
            max_rel_err=None,
            details={"forced": "mismatch"},
        )

    monkeypatch.setattr(parity, "check_parity", failing)
    result = dg.materialize(
        list(defs.assets),
        selection=[K(["churn", "edge_bundle"])],
        instance=instance,
        resources=defs.resources,
        raise_on_error=False,
    )
    assert not result.success  # the blocking check failed the step
    after = _meta(instance, K(["churn", "edge_bundle"]))
    assert after == before  # no new materialization
    assert {p.name: p.read_bytes() for p in Path(before["mlops/bundle"]).iterdir()} == files


def _failing_parity(monkeypatch):  # type: ignore[no-untyped-def]
    from mlops_dagster.packaging import parity

    real = parity.check_parity

    def failing(*args, **kwargs):  # type: ignore[no-untyped-def]
        result = real(*args, **kwargs)
        return parity.ParityResult(False, result.n_rows, 0.5, 0.4, None, {"forced": "mismatch"})

    monkeypatch.setattr(parity, "check_parity", failing)


def _with_serving(**update: object) -> dg.Definitions:
    """The demo's definitions with churn's `serving` fields replaced."""
    specs = []
    for spec in load_specs(ROOT / "pipelines"):
        if spec.name == "churn":
            spec = spec.model_copy(update={"serving": spec.serving.model_copy(update=update)})
        specs.append(spec)
    return build_definitions(*specs)


def _with_runtime(runtime: str) -> dg.Definitions:
    return _with_serving(cloud_runtime=runtime)


def _materialize_bento(defs: dg.Definitions, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        list(defs.assets),
        selection=[K(["churn", "bento"])],
        instance=instance,
        resources=defs.resources,
        raise_on_error=False,
    )


def test_bento_falls_back_to_sklearn_when_parity_fails_unless_onnx_is_required(packaged, monkeypatch):  # type: ignore[no-untyped-def]
    defs, instance = packaged
    _failing_parity(monkeypatch)
    assert _materialize_bento(defs, instance).success
    bento = _meta(instance, K(["churn", "bento"]))
    champion = records.current_champion(instance, "churn")
    assert bento["mlops/runtime"] == "sklearn" and bento["mlops/served_model"] == f"churn:{champion.version}"
    assert "ONNX parity with the champion failed" in bento["mlops/runtime_note"]
    assert bento["mlops/label_agreement"] == 0.5

    result = _materialize_bento(_with_runtime("onnx"), instance)
    assert not result.success
    failure = result.failure_data_for_node("churn__bento")
    assert failure is not None and "serving.cloud_runtime is onnx, but ONNX parity" in str(failure.error)
    assert _meta(instance, K(["churn", "bento"])) == bento  # nothing new recorded


def test_sklearn_runtime_never_converts(packaged, monkeypatch):  # type: ignore[no-untyped-def]
    from mlops_dagster.packaging import onnx_bundle

    _, instance = packaged
    defs = _with_runtime("sklearn")
    node = defs.resolve_asset_graph().get(K(["churn", "bento"]))
    assert K(["churn", "training_set"]) not in node.parent_keys

    def no_conversion(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("converted to ONNX with cloud_runtime: sklearn")

    monkeypatch.setattr(onnx_bundle, "convert_to_onnx", no_conversion)
    assert _materialize_bento(defs, instance).success
    bento = _meta(instance, K(["churn", "bento"]))
    assert (bento["mlops/runtime"], bento["mlops/runtime_note"]) == (
        "sklearn",
        "serving.cloud_runtime is sklearn",
    )


def test_parity_tolerances_come_from_the_spec(packaged):  # type: ignore[no-untyped-def]
    """ONNX computes in float32: demanding exact probabilities fails parity, with the spec's numbers."""
    from mlops_dagster.spec.models import ParitySpec

    _, instance = packaged
    before = _meta(instance, K(["churn", "edge_bundle"]))
    strict = _with_serving(parity=ParitySpec(label_agreement=1.0, proba_atol=0.0))
    result = dg.materialize(
        list(strict.assets),
        selection=[K(["churn", "edge_bundle"])],
        instance=instance,
        resources=strict.resources,
        raise_on_error=False,
    )
    assert not result.success  # the blocking parity check failed
    check = instance.get_latest_asset_check_evaluation_record(
        dg.AssetCheckKey(K(["churn", "edge_bundle"]), "onnx_parity")
    )
    evaluation = check.event.dagster_event.event_specific_data
    assert evaluation.passed is False
    assert "'proba_atol': 0.0" in evaluation.description
    assert "'label_tolerance': 1.0" in evaluation.description
    assert _meta(instance, K(["churn", "edge_bundle"])) == before  # the previous bundle stays

    # The bento, under the same spec, falls back to sklearn and says why.
    assert _materialize_bento(strict, instance).success
    bento = _meta(instance, K(["churn", "bento"]))
    assert bento["mlops/runtime"] == "sklearn" and "parity" in bento["mlops/runtime_note"]
