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


def _with_serving(random_state: int = 201, **update: object) -> dg.Definitions:
    """The demo with churn's `serving` fields replaced, its model seeded so its versions are this file's."""
    specs = []
    for spec in load_specs(ROOT / "pipelines"):
        if spec.name == "churn":
            params = {**spec.model.params, "random_state": random_state}
            spec = spec.model_copy(
                update={
                    "model": spec.model.model_copy(update={"params": params}),
                    "serving": spec.serving.model_copy(update=update),
                }
            )
        specs.append(spec)
    return build_definitions(*specs)


@pytest.fixture
def packaged(storage, helpers):  # type: ignore[no-untyped-def]
    defs, instance = _with_serving(), dg.DagsterInstance.ephemeral()
    assert helpers.range(defs, instance, [K(["churn", "dataset"])], "2026-01-01", "2026-01-08").success
    assert defs.resolve_job_def("churn__retrain").execute_in_process(instance=instance).success
    return defs, instance


def test_retrain_packages_the_champion_for_cloud_and_edge(packaged):  # type: ignore[no-untyped-def]
    defs, instance = packaged
    champion = records.current_champion(instance, "churn")
    bento = _meta(instance, K(["churn", "bento"]))
    assert bento["mlops/version"] == champion.version
    assert str(bento["mlops/bento_tag"]).startswith(f"churn:{champion.version}")
    assert Path(bento["mlops/dockerfile"]).exists()
    # serving.containerize is off by default: the bento and its Dockerfile are the deliverable.
    assert bento["mlops/containerized"] is False
    assert bento["mlops/containerize_note"].startswith("containerize=False")
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
        assert node.parent_keys == {K(["churn", "champion"])}  # no training set: nothing is compared here
    assert demo_defs.resolve_sensor_def("churn__packaging_sensor") is not None
    job = demo_defs.resolve_job_def("churn__retrain")
    assert {K(["churn", "bento"]), K(["churn", "edge_bundle"])} <= set(job.asset_layer.executable_asset_keys)


def test_a_tampered_stored_bundle_is_not_published(packaged):  # type: ignore[no-untyped-def]
    """The edge bundle and the bento verify the checked bundle's hashes; the previous bundle stays."""
    import bentoml

    defs, instance = packaged
    before = _meta(instance, K(["churn", "edge_bundle"]))
    files = {p.name: p.read_bytes() for p in Path(before["mlops/bundle"]).iterdir()}
    stored = Path(bentoml.models.get(_meta(instance, K(["churn", "champion"]))["mlops/onnx_model"]).path)
    original = (stored / "model.onnx").read_bytes()
    (stored / "model.onnx").write_bytes(original + b"tampered")
    try:
        for key, node in (
            (K(["churn", "edge_bundle"]), "churn__edge_bundle"),
            (K(["churn", "bento"]), "churn__bento"),
        ):
            result = dg.materialize(
                list(defs.assets),
                selection=[key],
                instance=instance,
                resources=defs.resources,
                raise_on_error=False,
            )
            assert not result.success
            failure = result.failure_data_for_node(node)
            assert failure is not None and "model.onnx" in str(failure.error)
    finally:
        (stored / "model.onnx").write_bytes(original)
    assert _meta(instance, K(["churn", "edge_bundle"])) == before  # no new materialization
    assert {p.name: p.read_bytes() for p in Path(before["mlops/bundle"]).iterdir()} == files


def _materialize_bento(defs: dg.Definitions, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        list(defs.assets),
        selection=[K(["churn", "bento"])],
        instance=instance,
        resources=defs.resources,
        raise_on_error=False,
    )


def test_sklearn_runtime_never_converts(packaged, monkeypatch):  # type: ignore[no-untyped-def]
    from mlops_dagster.packaging import onnx_bundle

    _, instance = packaged
    defs = _with_serving(cloud_runtime="sklearn")

    def no_conversion(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("converted to ONNX with cloud_runtime: sklearn")

    monkeypatch.setattr(onnx_bundle, "convert_to_onnx", no_conversion)
    assert _materialize_bento(defs, instance).success
    bento = _meta(instance, K(["churn", "bento"]))
    assert (bento["mlops/runtime"], bento["mlops/runtime_note"]) == (
        "sklearn",
        "serving.cloud_runtime is sklearn",
    )


def test_parity_tolerances_come_from_the_spec(storage, helpers):  # type: ignore[no-untyped-def]
    """float32 ONNX cannot match exact probabilities: the parity gate fails, with the spec's numbers."""
    from mlops_dagster.spec.models import ParitySpec

    strict = _with_serving(random_state=202, parity=ParitySpec(label_agreement=1.0, proba_atol=0.0))
    instance = dg.DagsterInstance.ephemeral()
    assert helpers.range(strict, instance, [K(["churn", "dataset"])], "2026-01-01", "2026-01-08").success
    assert strict.resolve_job_def("churn__retrain").execute_in_process(instance=instance).success
    assert records.current_champion(instance, "churn") is None  # the only candidate failed parity
    kept = records.decision_history(instance, "churn", limit=1)[0]
    failed = [r for r in kept.reasons if r.startswith("FAIL")]
    assert len(failed) == 1 and failed[0].startswith("FAIL onnx parity on ")
    assert "(min 1.0)" in failed[0] and "(max 0.0)" in failed[0]
    for key in (K(["churn", "bento"]), K(["churn", "edge_bundle"])):
        assert instance.get_latest_materialization_event(key) is None  # nothing packaged
