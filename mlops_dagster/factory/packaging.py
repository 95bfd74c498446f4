"""Packaging assets: `<p>/bento` (cloud) and `<p>/edge_bundle` (ONNX, with a blocking parity check).

Both follow the champion: they depend on it and carry `AutomationCondition.eager()`, so a promotion or
rollback (a new champion data version) makes them stale and the automation sensor rebuilds them; the
retrain job includes them too. Each is versioned by the champion it packages.

Both convert the champion to ONNX and compare it with the champion on its holdout (`_onnx_candidate`):
the edge bundle is written only when parity holds, and the bento serves the ONNX model with
onnxruntime only when parity holds (`serving.cloud_runtime: auto`, the default, falls back to sklearn
and says why; `onnx` fails instead; `sklearn` never converts).
"""

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from mlops_dagster.errors import PackagingError, RegistryError
from mlops_dagster.factory.dataset import IO_MANAGER_KEY
from mlops_dagster.factory.keys import Meta, bento_key, champion_key, edge_bundle_key, training_set_key
from mlops_dagster.factory.versions import code_version
from mlops_dagster.spec.models import PipelineSpec

PARITY_CHECK = "onnx_parity"


def _champion(context: dg.AssetExecutionContext, spec: PipelineSpec) -> Any:
    from mlops_dagster.registry.records import current_champion

    champion = current_champion(context.instance, spec.name)
    if champion is None:
        raise RegistryError(f"{spec.name}: there is no champion to package yet")
    return champion


@dataclass(frozen=True)
class _OnnxCandidate:
    """The champion converted to ONNX, written as a bundle in a staging folder, and its parity result."""

    onnx_bytes: bytes
    bundle: Path
    bundle_args: dict[str, Any]
    parity: Any  # ParityResult

    @property
    def parity_metadata(self) -> dict[str, Any]:
        p = self.parity
        return {
            Meta.PARITY_ROWS: p.n_rows,
            Meta.LABEL_AGREEMENT: p.label_agreement,
            Meta.MAX_PROBA_DIFF: p.max_proba_diff,
            Meta.MAX_REL_ERR: p.max_rel_err,
        }


def _onnx_candidate(
    spec: PipelineSpec, champion: Any, training_set: pd.DataFrame, staging: Path
) -> _OnnxCandidate:
    """Convert the champion, write the bundle under `staging` and check it against the champion.

    Raises:
        PackagingError: no ONNX converter fits the champion's estimator.
    """
    from mlops_dagster.packaging.onnx_bundle import convert_to_onnx, write_bundle
    from mlops_dagster.packaging.parity import check_parity
    from mlops_dagster.registry.store import load_version, read_card

    model = load_version(spec.name, champion.version, champion.sha256)
    card = read_card(spec.name, champion.version)
    features, schema, task = list(card["features"]), dict(card["feature_schema"]), card["task"]
    onnx_bytes = convert_to_onnx(model, schema, task)
    bundle_args: dict[str, Any] = {
        "pipeline": spec.name,
        "version": champion.version,
        "model_sha256": champion.sha256,
        "features": features,
        "feature_schema": schema,
        "task": task,
        "classes": [*getattr(model, "classes_", [])] or None,
    }
    bundle = write_bundle(staging / "bundle", onnx_bytes, **bundle_args)
    holdout = _holdout(training_set, card, spec.dataset.timestamp)
    tolerances = spec.serving.parity
    parity = check_parity(
        model,
        bundle,
        holdout,
        features,
        task,
        label_tolerance=tolerances.label_agreement,
        proba_atol=tolerances.proba_atol,
        rtol=tolerances.rtol,
    )
    return _OnnxCandidate(onnx_bytes, bundle, bundle_args, parity)


def _cloud_runtime(
    spec: PipelineSpec, champion: Any, training_set: pd.DataFrame | None, staging: Path
) -> tuple[Path | None, str, dict[str, Any]]:
    """(the bundle to serve or None, why this runtime, parity metadata) per `serving.cloud_runtime`.

    Raises:
        PackagingError: `cloud_runtime: onnx` and the champion cannot be converted or fails parity.
    """
    wanted = spec.serving.cloud_runtime
    if wanted == "sklearn" or training_set is None:
        return None, "serving.cloud_runtime is sklearn", {}
    try:
        candidate = _onnx_candidate(spec, champion, training_set, staging)
    except PackagingError as e:
        if wanted == "onnx":
            raise
        return None, f"no ONNX runtime: {e}", {}
    if candidate.parity.passed:
        why = "ONNX parity with the champion holds on its holdout"
        return candidate.bundle, why, candidate.parity_metadata
    why = f"ONNX parity with the champion failed: {str(candidate.parity.details)[:500]}"
    if wanted == "onnx":
        raise PackagingError(f"{spec.name}: serving.cloud_runtime is onnx, but {why}")
    return None, why, candidate.parity_metadata


def build_bento_asset(spec: PipelineSpec) -> dg.AssetsDefinition:
    convert = spec.serving.cloud_runtime != "sklearn"

    @dg.asset(
        key=bento_key(spec.name),
        group_name=spec.name,
        description=(
            f"BentoML bento serving the `{spec.name}` champion (request schema from its features, "
            "version headers, /healthz; onnxruntime when ONNX parity holds), with its generated "
            "Dockerfile and pinned requirements."
        ),
        kinds={"bentoml", "docker"},
        owners=list(spec.owners),
        ins={"training_set": dg.AssetIn(key=training_set_key(spec.name))} if convert else {},
        deps=[champion_key(spec.name)],
        automation_condition=dg.AutomationCondition.eager(),
        required_resource_keys={IO_MANAGER_KEY} if convert else set(),
        code_version=code_version(spec.serving, "bento"),
    )
    def _bento(context: dg.AssetExecutionContext, **inputs: Any) -> dg.MaterializeResult:
        from mlops_dagster.packaging.bento import build_bento

        champion = _champion(context, spec)
        with tempfile.TemporaryDirectory(prefix=f"{spec.name}-bento-") as staging:
            bundle, why, parity = _cloud_runtime(spec, champion, inputs.get("training_set"), Path(staging))
            if bundle is None and convert:
                context.log.warning(f"{spec.name}: the bento serves sklearn: {why}")
            result = build_bento(
                spec.name,
                champion.version,
                champion.sha256,
                onnx_bundle=bundle,
                workers=spec.serving.workers,
            )
        if not result.containerized:
            context.log.warning(f"{result.tag}: containerize skipped: {result.containerize_note}")
        return dg.MaterializeResult(
            metadata={
                Meta.BENTO_TAG: result.tag,
                Meta.VERSION: champion.version,
                Meta.RUNTIME: result.runtime,
                Meta.RUNTIME_NOTE: why,
                Meta.SERVED_MODEL: result.served_model_tag,
                Meta.WORKERS: result.workers,
                Meta.BENTO_PATH: dg.MetadataValue.path(str(result.path)),
                Meta.DOCKERFILE: dg.MetadataValue.path(str(result.dockerfile_path)),
                Meta.SIZE_BYTES: int(result.size_bytes),
                Meta.API_SCHEMA: dg.MetadataValue.json(result.api_schema),
                Meta.CONTAINERIZED: bool(result.containerized),
                Meta.CONTAINERIZE_NOTE: result.containerize_note,
                **{k: v for k, v in parity.items() if v is not None},
            },
            data_version=dg.DataVersion(str(result.tag)),
        )

    return _bento


def _holdout(training_set: pd.DataFrame, card: dict[str, Any], timestamp: str) -> pd.DataFrame:
    cutoff = (card.get("holdout") or {}).get("cutoff")
    return training_set[training_set[timestamp] >= pd.Timestamp(cutoff)] if cutoff else training_set


def build_edge_bundle_asset(spec: PipelineSpec) -> dg.AssetsDefinition:
    key = edge_bundle_key(spec.name)
    check = dg.AssetCheckSpec(
        PARITY_CHECK,
        asset=key,
        blocking=True,
        description="ONNX predictions equal the champion's on its holdout",
    )

    @dg.asset(
        key=key,
        group_name=spec.name,
        description=(
            f"Self-contained ONNX bundle of the `{spec.name}` champion for edge devices (model.onnx, "
            "manifest with sha256s, an onnxruntime+numpy predictor), also in the BentoML store."
        ),
        kinds={"onnx", "bentoml"},
        owners=list(spec.owners),
        ins={"training_set": dg.AssetIn(key=training_set_key(spec.name))},
        deps=[champion_key(spec.name)],
        check_specs=[check],
        output_required=False,
        automation_condition=dg.AutomationCondition.eager(),
        required_resource_keys={IO_MANAGER_KEY},
        code_version=code_version(spec.serving, "edge"),
    )
    def _edge_bundle(context: dg.AssetExecutionContext, training_set: pd.DataFrame) -> Iterator[Any]:
        from mlops_dagster.packaging.edge_store import store_bundle_in_bentoml
        from mlops_dagster.packaging.onnx_bundle import write_bundle

        champion = _champion(context, spec)
        final = Path(str(getattr(context.resources, IO_MANAGER_KEY).asset_dir(key))) / champion.version
        with tempfile.TemporaryDirectory(prefix=f"{spec.name}-edge-") as staging:
            candidate = _onnx_candidate(spec, champion, training_set, Path(staging))
            parity = candidate.parity
            metadata = {**candidate.parity_metadata, Meta.VERSION: champion.version}
            if parity.passed:
                # Written atomically over any bundle of this version; other versions stay as they are.
                final = write_bundle(final, candidate.onnx_bytes, **candidate.bundle_args)
                tag = store_bundle_in_bentoml(final, spec.name, champion.version)
                size = sum(p.stat().st_size for p in final.iterdir() if p.is_file())
                yield dg.MaterializeResult(
                    metadata={
                        Meta.BUNDLE: dg.MetadataValue.path(str(final)),
                        Meta.BENTO_MODEL: tag,
                        Meta.SIZE_BYTES: size,
                        **metadata,
                    },
                    data_version=dg.DataVersion(champion.version),
                )
            else:
                context.log.error(
                    f"{spec.name}: ONNX parity failed for {champion.version}; the previous "
                    f"bundle stays in place: {parity.details}"
                )
        yield dg.AssetCheckResult(
            check_name=PARITY_CHECK,
            passed=bool(parity.passed),
            severity=dg.AssetCheckSeverity.ERROR,
            description=None if parity.passed else str(parity.details)[:1000],
            metadata={**{k: v for k, v in metadata.items() if v is not None}},
        )

    return _edge_bundle


def packaging_assets(spec: PipelineSpec) -> list[dg.AssetsDefinition]:
    targets = set(spec.serving.targets)
    return [
        *([build_bento_asset(spec)] if "cloud" in targets else []),
        *([build_edge_bundle_asset(spec)] if "edge" in targets else []),
    ]
