"""Packaging assets: `<p>/bento` (cloud) and `<p>/edge_bundle` (ONNX, with a blocking parity check).

Both package the current champion and record its version (`Meta.VERSION`); `<p>__packaging_sensor`
(sensors/packaging.py) requests them whenever that version differs from the champion's, and the retrain
job includes them. Neither converts nor compares anything: ONNX conversion and parity are gates of the
champion decision (packaging/onnx_gate.py), which stores the checked bundle as `<p>_edge:<version>` in
the BentoML store and records its tag (`Meta.ONNX_MODEL`). The edge bundle publishes that bundle; the
bento serves it with onnxruntime (`serving.cloud_runtime: auto`, the default, serves sklearn when the
decision found no ONNX bundle for a cloud-only pipeline and says why; `onnx` fails then; `sklearn`
never uses it). Both verify the stored bundle's hashes against the champion first.
"""

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg

from mlops_dagster.errors import PackagingError, RegistryError
from mlops_dagster.factory.compute_tags import asset_op_tags
from mlops_dagster.factory.versions import code_version
from mlops_dagster.keys import IO_MANAGER_KEY, Meta, bento_key, champion_key, edge_bundle_key
from mlops_dagster.spec.models import PipelineSpec

PARITY_CHECK = "onnx_parity"
_PARITY_KEYS = (Meta.PARITY_ROWS, Meta.LABEL_AGREEMENT, Meta.MAX_PROBA_DIFF, Meta.MAX_REL_ERR)


@dataclass(frozen=True)
class _Champion:
    """The champion as its latest `<p>/champion` materialization records it (one read)."""

    version: str
    sha256: str
    run_id: str
    metadata: dict[str, Any]

    @property
    def parity(self) -> dict[str, Any]:
        return {k: self.metadata[k] for k in _PARITY_KEYS if self.metadata.get(k) is not None}

    @property
    def onnx_reason(self) -> str | None:
        """The decision's line on ONNX (`pass onnx ...`, `FAIL onnx ...`, `note onnx ...`), if any."""
        reasons = self.metadata.get(Meta.REASONS) or []
        return next((r for r in reasons if isinstance(r, str) and r.split(" ")[1:2] == ["onnx"]), None)


def _champion(context: dg.AssetExecutionContext, spec: PipelineSpec) -> _Champion:
    event = context.instance.get_latest_materialization_event(champion_key(spec.name))
    mat = event.asset_materialization if event is not None else None
    md = {k: getattr(v, "value", v) for k, v in (mat.metadata.items() if mat is not None else [])}
    if event is None or not md.get(Meta.VERSION):
        raise RegistryError(f"{spec.name}: there is no champion to package yet")
    return _Champion(str(md[Meta.VERSION]), str(md.get(Meta.SHA256) or ""), event.run_id, md)


def _checked_bundle(spec: PipelineSpec, champion: _Champion) -> tuple[Path | None, str]:
    """(the champion's parity-checked bundle in the BentoML store, hashes verified, or None; why).

    Raises:
        PackagingError: the decision recorded a checked bundle that is no longer in the store.
        IntegrityError: the stored bundle does not verify or packages another model.
    """
    from mlops_dagster.packaging.onnx_gate import checked_bundle

    tag = champion.metadata.get(Meta.ONNX_MODEL)
    reason = champion.onnx_reason
    if tag or reason is None:  # reason None: decided before parity was a gate; stored only if it passed
        bundle = checked_bundle(spec.name, champion.version, champion.sha256)
        if bundle is not None:
            how = reason or "parity checked when it was first packaged"
            return bundle, f"ONNX bundle {bundle.name} checked in the champion decision: {how}"
        if tag:
            raise PackagingError(
                f"{spec.name}: the champion decision (run {champion.run_id}) stored {tag}, but it is no "
                "longer in the BentoML store; promote the version again to convert and check it"
            )
    return None, reason or f"no parity-checked ONNX bundle of {champion.version} in the BentoML store"


def build_bento_asset(spec: PipelineSpec) -> dg.AssetsDefinition:
    runtime = spec.serving.cloud_runtime
    log_on = spec.serving.prediction_log.enabled  # the bento logs under the IO manager's root

    @dg.asset(
        key=bento_key(spec.name),
        op_tags=asset_op_tags(spec, "bento"),
        group_name=spec.name,
        description=(
            f"BentoML bento serving the `{spec.name}` champion (request schema from its features, "
            "version headers, /healthz; onnxruntime with the bundle the champion decision checked), "
            "with its generated Dockerfile and pinned requirements."
        ),
        kinds={"bentoml", "docker"},
        owners=list(spec.owners),
        deps=[champion_key(spec.name)],
        required_resource_keys={IO_MANAGER_KEY} if log_on else None,
        code_version=code_version(spec.serving, "bento"),
    )
    def _bento(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        from mlops_dagster.packaging.bento import build_bento
        from mlops_dagster.packaging.prediction_log import settings_for

        champion = _champion(context, spec)
        bundle, why = (None, "serving.cloud_runtime is sklearn")
        if runtime != "sklearn":
            bundle, why = _checked_bundle(spec, champion)
        if bundle is None and runtime == "onnx":
            raise PackagingError(f"{spec.name}: serving.cloud_runtime is onnx, but {why}")
        if bundle is None and runtime != "sklearn":
            context.log.warning(f"{spec.name}: the bento serves sklearn: {why}")
        result = build_bento(
            spec.name,
            champion.version,
            champion.sha256,
            onnx_bundle=bundle,
            workers=spec.serving.workers,
            containerize=spec.serving.containerize,
            prediction_log=settings_for(
                spec, str(getattr(context.resources, IO_MANAGER_KEY).root()) if log_on else None
            ),
        )
        if spec.serving.containerize and not result.containerized:
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
                **(champion.parity if runtime != "sklearn" else {}),
            },
            data_version=dg.DataVersion(str(result.tag)),
        )

    return _bento


def _publish_edge_folder(
    context: dg.AssetExecutionContext, key: dg.AssetKey, bundle: Path, version: str
) -> Any:
    """Publish the checked bundle's files (a local folder) as `<storage root>/<key>/<version>`.

    The one place the edge bundle's final folder is written: local or s3://, through the storage layer.
    """
    from mlops_dagster.io.storage import put_tree
    from mlops_dagster.packaging.onnx_bundle import MANIFEST_FILE

    final = getattr(context.resources, IO_MANAGER_KEY).asset_dir(key) / version  # a UPath
    return put_tree(bundle, final, last=MANIFEST_FILE)


def build_edge_bundle_asset(spec: PipelineSpec) -> dg.AssetsDefinition:
    key = edge_bundle_key(spec.name)
    check = dg.AssetCheckSpec(
        PARITY_CHECK,
        asset=key,
        blocking=True,
        description=(
            "ONNX predictions equal the champion's on its holdout (checked in the champion decision), and "
            "the published files are that bundle's"
        ),
    )

    @dg.asset(
        key=key,
        op_tags=asset_op_tags(spec, "edge_bundle"),
        group_name=spec.name,
        description=(
            f"Self-contained ONNX bundle of the `{spec.name}` champion for edge devices (model.onnx, "
            "manifest with sha256s, an onnxruntime+numpy predictor): the bundle the champion decision "
            "converted and checked, kept in the BentoML store."
        ),
        kinds={"onnx", "bentoml"},
        owners=list(spec.owners),
        deps=[champion_key(spec.name)],
        check_specs=[check],
        required_resource_keys={IO_MANAGER_KEY},
        code_version=code_version(spec.serving, "edge"),
    )
    def _edge_bundle(context: dg.AssetExecutionContext) -> Iterator[Any]:
        from mlops_dagster.packaging.edge_store import export_bundle
        from mlops_dagster.packaging.onnx_bundle import verify_bundle
        from mlops_dagster.packaging.onnx_gate import edge_tag

        champion = _champion(context, spec)
        stored, why = _checked_bundle(spec, champion)
        if stored is None:
            raise PackagingError(
                f"{spec.name}: champion {champion.version} has no parity-checked ONNX bundle to publish "
                f"({why}); the previous edge bundle stays in place"
            )
        with tempfile.TemporaryDirectory(prefix=f"{spec.name}-edge-") as staging:
            local = export_bundle(
                stored, Path(staging) / "bundle", version=champion.version, model_sha256=champion.sha256
            )
            manifest = verify_bundle(local, model_sha256=champion.sha256, version=champion.version)
            size = sum(p.stat().st_size for p in local.iterdir() if p.is_file())
            final = _publish_edge_folder(context, key, local, champion.version)
        yield dg.MaterializeResult(
            metadata={
                Meta.BUNDLE: dg.MetadataValue.path(str(final)),
                Meta.BENTO_MODEL: edge_tag(spec.name, champion.version),
                Meta.SIZE_BYTES: size,
                Meta.VERSION: champion.version,
                **champion.parity,
            },
            data_version=dg.DataVersion(champion.version),
        )
        yield dg.AssetCheckResult(
            check_name=PARITY_CHECK,
            passed=manifest["model_sha256"] == champion.sha256,
            severity=dg.AssetCheckSeverity.ERROR,
            description=why[:1000],
            metadata={**champion.parity, Meta.VERSION: champion.version},
        )

    return _edge_bundle


def packaging_assets(spec: PipelineSpec) -> list[dg.AssetsDefinition]:
    targets = set(spec.serving.targets)
    return [
        *([build_bento_asset(spec)] if "cloud" in targets else []),
        *([build_edge_bundle_asset(spec)] if "edge" in targets else []),
    ]
