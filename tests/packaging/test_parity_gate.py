"""ONNX conversion and parity are gates of the champion decision, run once per decision, and the
packaging reuses the bundle the decision checked (issue 9, points 6 and 15)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from mlops_dagster import build_definitions
from mlops_dagster.registry import records
from mlops_dagster.spec.loader import load_specs

ROOT = Path(__file__).resolve().parents[2]
K = dg.AssetKey
PACKAGING = [K(["churn", "bento"]), K(["churn", "edge_bundle"])]


def _defs(random_state: int, **serving: Any) -> dg.Definitions:
    """The demo with churn's model seeded by `random_state` (a version no other test trains) and its
    `serving` fields replaced."""
    specs = []
    for spec in load_specs(ROOT / "pipelines"):
        if spec.name == "churn":
            model = spec.model.model_copy(
                update={"params": {**spec.model.params, "random_state": random_state}}
            )
            serving_spec = spec.serving.model_copy(update=serving)
            feedback = spec.feedback if "batch" in serving_spec.targets else None  # live scoring needs batch
            spec = spec.model_copy(update={"model": model, "serving": serving_spec, "feedback": feedback})
        specs.append(spec)
    return build_definitions(*specs)


def _meta(instance: dg.DagsterInstance, key: dg.AssetKey) -> dict[str, Any]:
    event = instance.get_latest_materialization_event(key)
    assert event is not None, f"{key.to_user_string()} not materialized"
    return {k: getattr(v, "value", v) for k, v in event.asset_materialization.metadata.items()}


def _counting(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    from mlops_dagster.packaging import onnx_bundle, parity

    calls = {"convert": 0, "parity": 0}
    convert, check = onnx_bundle.convert_to_onnx, parity.check_parity

    def counted_convert(*args: Any, **kwargs: Any) -> Any:
        calls["convert"] += 1
        return convert(*args, **kwargs)

    def counted_check(*args: Any, **kwargs: Any) -> Any:
        calls["parity"] += 1
        return check(*args, **kwargs)

    monkeypatch.setattr(onnx_bundle, "convert_to_onnx", counted_convert)
    monkeypatch.setattr(parity, "check_parity", counted_check)
    return calls


def _failing_parity(monkeypatch: pytest.MonkeyPatch) -> None:
    from mlops_dagster.packaging import parity

    real = parity.check_parity

    def failing(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        details = {**result.details, "label_tolerance": 0.999, "proba_atol": 1e-4}
        return parity.ParityResult(False, result.n_rows, 0.5, 0.4, None, details)

    monkeypatch.setattr(parity, "check_parity", failing)


def _land(defs: dg.Definitions, instance: dg.DagsterInstance, helpers: Any, first: str, last: str) -> None:
    assert helpers.range(defs, instance, [K(["churn", "dataset"])], first, last).success


def _retrain(defs: dg.Definitions, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    return defs.resolve_job_def("churn__retrain").execute_in_process(instance=instance, raise_on_error=False)


def test_one_conversion_and_one_parity_run_per_retrain(storage, helpers, monkeypatch):  # type: ignore[no-untyped-def]
    """Cloud and edge both on: the decision converts and compares once; both packages reuse its bundle."""
    from mlops_dagster.packaging.onnx_bundle import verify_bundle

    defs, instance = _defs(random_state=101), dg.DagsterInstance.ephemeral()
    _land(defs, instance, helpers, "2026-01-01", "2026-01-08")
    calls = _counting(monkeypatch)
    assert _retrain(defs, instance).success
    assert calls == {"convert": 1, "parity": 1}

    champion = records.current_champion(instance, "churn")
    decision = _meta(instance, K(["churn", "champion"]))
    assert decision["mlops/onnx_model"] == f"churn_edge:{champion.version}"
    assert decision["mlops/label_agreement"] >= 0.999
    assert any(r.startswith("pass onnx parity on ") for r in decision["mlops/reasons"])
    bento = _meta(instance, K(["churn", "bento"]))
    assert (bento["mlops/runtime"], bento["mlops/served_model"]) == ("onnx", decision["mlops/onnx_model"])
    edge = _meta(instance, K(["churn", "edge_bundle"]))
    manifest = verify_bundle(edge["mlops/bundle"], model_sha256=champion.sha256, version=champion.version)
    assert edge["mlops/version"] == bento["mlops/version"] == champion.version
    assert manifest["pipeline"] == "churn"

    # Packaging again (as the packaging sensor would) converts and compares nothing.
    rebuilt = dg.materialize(
        list(defs.assets), selection=PACKAGING, instance=instance, resources=defs.resources
    )
    assert rebuilt.success and calls == {"convert": 1, "parity": 1}


def test_a_candidate_failing_parity_is_not_promoted(storage, helpers, monkeypatch):  # type: ignore[no-untyped-def]
    """The gates pass but ONNX parity fails: the champion stays, cloud and edge keep serving it."""
    defs, instance = _defs(random_state=102), dg.DagsterInstance.ephemeral()
    _land(defs, instance, helpers, "2026-01-01", "2026-01-08")
    assert _retrain(defs, instance).success
    first = records.current_champion(instance, "churn")

    _land(defs, instance, helpers, "2026-01-09", "2026-01-16")
    _failing_parity(monkeypatch)
    result = _retrain(defs, instance)
    assert result.success  # a decision to keep is not a failure; the packaging steps are skipped
    second = records.latest_candidate(instance, "churn")
    assert second is not None and second.version != first.version
    assert records.current_champion(instance, "churn").version == first.version
    kept = records.decision_history(instance, "churn", limit=1)[0]
    assert kept.version == second.version and kept.decision == "keep"
    failed = [r for r in kept.reasons if r.startswith("FAIL")]
    assert failed == [
        f"FAIL onnx parity on {_rows(instance)} holdout rows: label agreement 0.5000 (min 0.999), "
        "max |proba diff| 0.4 (max 0.0001)"
    ]
    observation = instance.fetch_observations(K(["churn", "champion"]), limit=1).records[0]
    numbers = observation.asset_observation.metadata
    assert numbers["mlops/label_agreement"].value == 0.5 and numbers["mlops/max_proba_diff"].value == 0.4
    for key in PACKAGING:
        assert _meta(instance, key)["mlops/version"] == first.version  # cloud and edge agree

    # A manual promote of that version goes through the same gate, and says what failed.
    promote = dg.materialize(
        list(defs.assets),
        selection=[K(["churn", "champion"])],
        instance=instance,
        resources=defs.resources,
        run_config={"ops": {"churn__champion": {"config": {"action": "promote", "version": second.version}}}},
        raise_on_error=False,
    )
    assert not promote.success
    failure = promote.failure_data_for_node("churn__champion")
    assert failure is not None and "FAIL onnx parity" in str(failure.user_failure_data.description)
    assert records.current_champion(instance, "churn").version == first.version


def _rows(instance: dg.DagsterInstance) -> int:
    observation = instance.fetch_observations(K(["churn", "champion"]), limit=1).records[0]
    return int(observation.asset_observation.metadata["mlops/rows"].value)


def test_cloud_only_on_sklearn_needs_no_onnx_gate(storage, helpers, monkeypatch):  # type: ignore[no-untyped-def]
    from mlops_dagster.packaging import onnx_bundle, parity

    def never(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("ONNX work for a cloud-only pipeline on cloud_runtime: sklearn")

    monkeypatch.setattr(onnx_bundle, "convert_to_onnx", never)
    monkeypatch.setattr(parity, "check_parity", never)
    defs = _defs(random_state=103, targets=["cloud"], cloud_runtime="sklearn")
    instance = dg.DagsterInstance.ephemeral()
    _land(defs, instance, helpers, "2026-01-01", "2026-01-08")
    assert _retrain(defs, instance).success
    champion = records.current_champion(instance, "churn")
    assert champion is not None and not any("onnx" in r for r in champion.reasons)
    bento = _meta(instance, K(["churn", "bento"]))
    assert (bento["mlops/runtime"], bento["mlops/version"]) == ("sklearn", champion.version)


def test_cloud_only_on_auto_serves_sklearn_when_parity_fails(storage, helpers, monkeypatch):  # type: ignore[no-untyped-def]
    """`auto` with no edge target: parity decides the runtime but does not gate; the bento says why."""
    _failing_parity(monkeypatch)
    defs = _defs(random_state=104, targets=["cloud"])
    instance = dg.DagsterInstance.ephemeral()
    _land(defs, instance, helpers, "2026-01-01", "2026-01-08")
    assert _retrain(defs, instance).success
    champion = records.current_champion(instance, "churn")
    assert champion is not None
    assert any(r.startswith("note onnx parity on ") for r in champion.reasons)
    bento = _meta(instance, K(["churn", "bento"]))
    assert bento["mlops/runtime"] == "sklearn" and bento["mlops/served_model"] == f"churn:{champion.version}"
    assert (
        bento["mlops/runtime_note"].startswith("note onnx parity") and bento["mlops/label_agreement"] == 0.5
    )
