"""ONNX conversion and parity as part of the champion decision, done once per decision.

When a packaging target needs ONNX (`edge` in `serving.targets`, or `cloud` with `cloud_runtime: onnx`),
a version becomes champion only if it converts and its bundle predicts what the model predicts on the
gates' holdout (`required`). With `cloud` alone and `cloud_runtime: auto` the result only chooses the
bento's runtime; with `cloud_runtime: sklearn` and no `edge` nothing is converted.

The checked bundle is kept in the BentoML store as `<pipeline>_edge:<version>` (`edge_store`), and the
bento and the edge bundle reuse it by the champion's version (`checked_bundle`, hashes verified): they
never convert or compare again. A version whose bundle is already stored (a re-promotion, a rollback)
is compared again but not converted again. No ML library is imported at module level.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_dagster.errors import PackagingError
from mlops_dagster.keys import Meta

if TYPE_CHECKING:
    import pandas as pd

    from mlops_dagster.spec.models import PipelineSpec


def onnx_required(spec: PipelineSpec) -> bool:
    """Conversion and parity gate the champion: the edge target, or a cloud bento that must run ONNX."""
    targets, runtime = set(spec.serving.targets), spec.serving.cloud_runtime
    return "edge" in targets or ("cloud" in targets and runtime == "onnx")


def onnx_wanted(spec: PipelineSpec) -> bool:
    """Conversion and parity run in the decision: when required, or for a cloud bento on `auto`."""
    return onnx_required(spec) or ("cloud" in spec.serving.targets and spec.serving.cloud_runtime == "auto")


def edge_tag(pipeline: str, version: str) -> str:
    return f"{pipeline}_edge:{version}"


@dataclass(frozen=True)
class OnnxOutcome:
    """What the decision found about a version's ONNX bundle.

    Attributes:
        passed: the version converted and its bundle passed parity on the holdout.
        required: a failure keeps the version from becoming champion (`onnx_required`).
        reason: one line for `Meta.REASONS` (`pass onnx ...` / `FAIL onnx ...` / `note onnx ...`).
        tag: the checked bundle in the BentoML store when `passed`, else None.
        metadata: parity numbers (`Meta.PARITY_ROWS`, ...) and `Meta.ONNX_MODEL`, for the decision.
        converted: a conversion ran (False when the stored bundle of this version was compared again).
    """

    passed: bool
    required: bool
    reason: str
    tag: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    converted: bool = False


def _verified_stored(pipeline: str, version: str, sha256: str) -> Path | None:
    """The stored bundle of this version after its hash check, or None when there is none."""
    import bentoml
    from bentoml.exceptions import NotFound

    from mlops_dagster.packaging.onnx_bundle import verify_bundle

    try:
        stored = bentoml.models.get(edge_tag(pipeline, version))
    except NotFound:
        return None
    verify_bundle(stored.path, model_sha256=sha256, version=version)
    return Path(stored.path)


def checked_bundle(pipeline: str, version: str, sha256: str) -> Path | None:
    """The parity-checked bundle of a champion in the BentoML store, hashes verified; None if absent.

    Raises:
        IntegrityError: a stored file does not match the manifest, or it packages another model.
    """
    return _verified_stored(pipeline, version, sha256)


def _parity_reason(parity: Any, n_rows: int) -> str:
    d = parity.details
    if parity.label_agreement is not None:
        parts = [
            f"label agreement {parity.label_agreement:.4f} (min {d.get('label_tolerance')})",
            f"max |proba diff| {parity.max_proba_diff:.2g} (max {d.get('proba_atol')})",
        ]
        if d.get("classes_match") is False:
            parts.append("the bundle's classes differ from the model's")
    else:
        parts = [f"max relative error {parity.max_rel_err:.2g} (max {d.get('rtol')})"]
    verdict = "pass" if parity.passed else "FAIL"
    return f"{verdict} onnx parity on {n_rows} holdout rows: {', '.join(parts)}"


def check_version(
    spec: PipelineSpec, record: Any, holdout: pd.DataFrame, *, model: Any | None = None
) -> OnnxOutcome:
    """Convert `record`'s model (unless its bundle is stored), compare on `holdout`, store it if it passes.

    Args:
        spec: the pipeline (targets, runtime, parity tolerances).
        record: the version (`version`, `sha256`) the decision is about.
        holdout: the rows the gates scored the version on.
        model: the loaded sklearn model, when the caller already has it.

    Raises:
        IntegrityError: a stored copy of the model or of its bundle fails its hash check.
        DataError: the holdout is empty or lacks a feature column.
    """
    from mlops_dagster.packaging import onnx_bundle, parity
    from mlops_dagster.packaging.edge_store import store_bundle_in_bentoml
    from mlops_dagster.registry.store import load_version, read_card

    required = onnx_required(spec)
    model = model if model is not None else load_version(spec.name, record.version, record.sha256)
    card = read_card(spec.name, record.version)
    features, schema, task = list(card["features"]), dict(card["feature_schema"]), str(card["task"])
    with tempfile.TemporaryDirectory(prefix=f"{spec.name}-onnx-") as staging:
        bundle = _verified_stored(spec.name, record.version, record.sha256)
        converted = bundle is None
        if bundle is None:
            try:
                onnx_bytes = onnx_bundle.convert_to_onnx(model, schema, task)
                bundle = onnx_bundle.write_bundle(
                    Path(staging) / "bundle",
                    onnx_bytes,
                    pipeline=spec.name,
                    version=record.version,
                    model_sha256=record.sha256,
                    features=features,
                    feature_schema=schema,
                    task=task,
                    classes=[*getattr(model, "classes_", [])] or None,
                )
            except PackagingError as e:
                verdict = "FAIL" if required else "note"
                return OnnxOutcome(False, required, f"{verdict} onnx conversion: {e}", converted=True)
        tolerances = spec.serving.parity
        result = parity.check_parity(
            model,
            bundle,
            holdout,
            features,
            task,
            label_tolerance=tolerances.label_agreement,
            proba_atol=tolerances.proba_atol,
            rtol=tolerances.rtol,
        )
        numbers = {
            Meta.PARITY_ROWS: result.n_rows,
            Meta.LABEL_AGREEMENT: result.label_agreement,
            Meta.MAX_PROBA_DIFF: result.max_proba_diff,
            Meta.MAX_REL_ERR: result.max_rel_err,
        }
        metadata: dict[str, Any] = {k: v for k, v in numbers.items() if v is not None}
        reason = _parity_reason(result, result.n_rows)
        if not result.passed:
            reason = reason if required else reason.replace("FAIL", "note", 1)
            return OnnxOutcome(False, required, reason, metadata=metadata, converted=converted)
        tag = store_bundle_in_bentoml(bundle, spec.name, record.version)  # under the store's tag lock
    metadata[Meta.ONNX_MODEL] = tag
    return OnnxOutcome(True, required, reason, tag=tag, metadata=metadata, converted=converted)
