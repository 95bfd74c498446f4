"""Promotion across environments: export a version from one, import it into another as a candidate.

Each environment is its own deployment (its own Dagster instance, model store and storage), so a
version crosses only as files: `export_version` writes the model, its card (JSON and Markdown) and
its drift reference files to a folder or `s3://` prefix, with a `manifest.json` written last that
holds every file's sha256 and the candidate's record (features, estimator, metrics, classes,
dataset schema and profile, drift columns) read from the source instance.

`import_version`, run against the target environment, checks every byte against the manifest and
the model against its content address before anything is stored or unpickled, then stores the
version in the target's model store (and its mirror) and records it as a `<p>/candidate`
materialization of the target instance, with `mlops/trigger: import` and `mlops/imported_from`
(`mlops/environment` stays the environment the version was trained in).
The record has no holdout cutoff: the target's `<p>/champion` splits its own training set by
`model.holdout`, so the version becomes champion there only through that environment's gates, on
that environment's data.

Importing a version the target instance already records as a candidate stores any missing files
again but records nothing: the history shows each version once per arrival, and re-gating an
older candidate is `mlops-dagster registry promote`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
from upath import UPath

from mlops_dagster.errors import IntegrityError, RegistryError
from mlops_dagster.io.storage import check_root
from mlops_dagster.keys import Meta, candidate_key
from mlops_dagster.registry.mirror import MANIFEST, VersionFiles, manifest_for, publish_tree, read_tree

EXPORT_FORMAT = "mlops-dagster/export"
IMPORTED_FROM = Meta.IMPORTED_FROM
IMPORT_TRIGGER = "import"
# dagster's own tag for an event's data version (a candidate's is its model version)
DATA_VERSION_TAG = "dagster/data_version"

# The candidate metadata an export carries, as plain JSON values (`Meta` keys, written once).
RECORD_KEYS = (
    Meta.VERSION,
    Meta.SHA256,
    Meta.FEATURES,
    Meta.ESTIMATOR,
    Meta.METRICS,
    Meta.CLASSES,
    Meta.DATASET_SCHEMA,
    Meta.DATASET_PROFILE,
    Meta.DRIFT_COLUMNS,
    Meta.TRAINING_DATA_VERSION,
    Meta.TRAIN_ROWS,
    Meta.HOLDOUT_ROWS,
    Meta.ENVIRONMENT,  # where the version was trained: kept on the imported record
)
_JSON_KEYS = {
    Meta.FEATURES,
    Meta.METRICS,
    Meta.CLASSES,
    Meta.DATASET_SCHEMA,
    Meta.DATASET_PROFILE,
    Meta.DRIFT_COLUMNS,
}


@dataclass(frozen=True)
class Export:
    """A checked export: the version's files and the candidate record from its manifest."""

    files: VersionFiles
    record: dict[str, Any]
    source: dict[str, Any]
    uri: str

    @property
    def version(self) -> str:
        return self.files.version

    @property
    def sha256(self) -> str:
        return self.files.sha256


@dataclass(frozen=True)
class ImportResult:
    """What `import_version` did.

    Attributes:
        export: The checked export.
        model_path: The version's folder in the target's local model store.
        recorded: True when a candidate materialization was recorded; False when the target
            instance already had the version as a candidate (nothing recorded again).
    """

    export: Export
    model_path: str
    recorded: bool


def _plain(value: Any) -> Any:
    """A metadata value as JSON (dagster's JSON values may hold tuples)."""
    return json.loads(json.dumps(value, default=str))


def _target(uri: str) -> UPath:
    path = UPath(uri)
    check_root(path)
    return path


def export_version(instance: dg.DagsterInstance, pipeline: str, version: str, uri: str) -> Export:
    """Write a candidate version of `pipeline` (its files and record) to the folder or prefix `uri`.

    `uri` must be empty, absent, or an earlier export of the same version (written again whole).

    Raises:
        RegistryError: the version is not a candidate of the instance, or `uri` holds something else.
        IntegrityError: a stored file does not match its sha256.
    """
    from mlops_dagster.environments import active
    from mlops_dagster.registry.records import candidate_metadata
    from mlops_dagster.registry.store import version_files

    md = candidate_metadata(instance, pipeline, version)
    if md is None:
        raise RegistryError(f"{pipeline}: version {version} is not a candidate recorded in this instance")
    sha256 = str(md.get(Meta.SHA256) or "")
    files = version_files(pipeline, version, sha256)  # model and extra files checked against sha256s
    target = _target(uri)
    _refuse_foreign(target, pipeline, version)
    env = active()
    manifest = {
        **manifest_for(pipeline, version, sha256, files),
        "format": EXPORT_FORMAT,
        "exported_at": datetime.now(tz=UTC).isoformat(timespec="seconds"),
        "source": {
            "environment": env.name or "default",
            "branch": env.branch,
            "storage_root": env.storage_root,
            "trigger": md.get(Meta.TRIGGER),
            "holdout_cutoff": md.get(Meta.HOLDOUT_CUTOFF),
        },
        "candidate": {key: _plain(md[key]) for key in RECORD_KEYS if md.get(key) is not None},
    }
    publish_tree(target, files, manifest)
    return Export(
        VersionFiles(pipeline, version, sha256, files, manifest),
        manifest["candidate"],
        manifest["source"],
        uri,
    )


def _refuse_foreign(target: UPath, pipeline: str, version: str) -> None:
    """Never replace a folder that is not an export of this very version (`--to ~` must not wipe ~)."""
    if not target.exists():
        return
    entries = list(target.iterdir()) if target.is_dir() else [target]
    if not entries:
        return
    try:
        manifest = json.loads((target / MANIFEST).read_bytes())
    except (OSError, ValueError):
        manifest = None
    if isinstance(manifest, dict) and (manifest.get("pipeline"), manifest.get("version")) == (
        pipeline,
        version,
    ):
        return
    raise RegistryError(
        f"{target} is not empty and is not an export of {pipeline}:{version}; "
        "export to a new folder or prefix"
    )


def read_export(uri: str, pipeline: str) -> Export:
    """Read and check an export of `pipeline` at `uri` (`mirror.read_tree`, then its record); no side effect.

    Raises:
        IntegrityError: a file is missing, unlisted or changed, the manifest is missing or not an
            export, or its record does not match the files (the message names the file).
        RegistryError: the export is of another pipeline.
        SignatureError: the signing policy refuses the version (unsigned, changed, unknown key).
    """
    from mlops_dagster.registry.signing import check_files

    source = _target(uri)
    if not source.exists():
        raise RegistryError(
            f"no export at {uri}: nothing there (give the folder or prefix `export --to` wrote)"
        )
    files = read_tree(source, pipeline, what="export")
    check_files(files.files, f"{pipeline}:{files.version}", str(source))  # before storing or unpickling
    manifest = files.manifest
    where = f"export {source / MANIFEST}"
    if manifest.get("format") != EXPORT_FORMAT:
        raise IntegrityError(
            f"{where}: format {manifest.get('format')!r} is not {EXPORT_FORMAT!r} "
            "(written by `mlops-dagster registry export`)"
        )
    record = manifest.get("candidate")
    if not isinstance(record, dict):
        raise IntegrityError(f"{where} has no candidate record (`candidate`)")
    for key, want in ((Meta.VERSION, files.version), (Meta.SHA256, files.sha256)):
        if record.get(key) != want:
            raise IntegrityError(f"{where}: candidate {key} is {record.get(key)!r}, the model is {want}")
    features = record.get(Meta.FEATURES)
    if not isinstance(features, list) or not features or not all(isinstance(f, str) for f in features):
        raise IntegrityError(f"{where}: candidate {Meta.FEATURES} must be a non-empty list of column names")
    card_features = files.card.get("features")
    if card_features is not None and list(card_features) != features:
        raise IntegrityError(
            f"{where}: candidate features {features} differ from the model card's {card_features}"
        )
    metrics = record.get(Meta.METRICS, {})
    if not isinstance(metrics, dict) or not all(isinstance(v, int | float) for v in metrics.values()):
        raise IntegrityError(f"{where}: candidate {Meta.METRICS} must map metric names to numbers")
    unknown = sorted(set(record) - set(RECORD_KEYS))
    if unknown:
        raise IntegrityError(
            f"{where}: unknown candidate field(s) {', '.join(unknown)} (an export from a newer "
            "mlops-dagster? import it with that release)"
        )
    source_info = manifest.get("source")
    return Export(files, record, source_info if isinstance(source_info, dict) else {}, uri)


def _metrics_metadata(metrics: dict[str, float]) -> dict[str, Any]:
    """`mlops/metrics` and `mlops/metrics_table`, as the candidate asset writes them."""
    table = dg.TableMetadataValue(
        records=[dg.TableRecord({"metric": k, "value": round(float(v), 6)}) for k, v in metrics.items()],
        schema=dg.TableSchema(columns=[dg.TableColumn("metric", "string"), dg.TableColumn("value", "float")]),
    )
    return {Meta.METRICS: dg.MetadataValue.json(metrics), Meta.METRICS_TABLE: table}


def candidate_event(export: Export, model_card: str) -> dg.AssetMaterialization:
    """The `<p>/candidate` materialization recording an imported version (no holdout cutoff)."""
    record = export.record
    metadata: dict[str, Any] = {}
    for key in RECORD_KEYS:
        if key not in record or key == Meta.METRICS:
            continue
        value = record[key]
        metadata[key] = dg.MetadataValue.json(value) if key in _JSON_KEYS else value
    metadata.update(_metrics_metadata(dict(record.get(Meta.METRICS) or {})))
    metadata[Meta.MODEL_CARD] = dg.MetadataValue.path(model_card)
    metadata[Meta.TRIGGER] = IMPORT_TRIGGER
    metadata[IMPORTED_FROM] = export.uri
    env = record.get(Meta.ENVIRONMENT) or export.source.get("environment")
    if env:
        metadata[Meta.ENVIRONMENT] = str(env)
    return dg.AssetMaterialization(
        asset_key=candidate_key(export.files.pipeline),
        description=f"imported from {export.uri}" + (f" (environment {env})" if env else ""),
        metadata=metadata,
        tags={DATA_VERSION_TAG: export.version},
    )


def import_version(instance: dg.DagsterInstance, pipeline: str, uri: str) -> ImportResult:
    """Check the export at `uri`, store its version here, and record it as a candidate of `pipeline`.

    Nothing is stored or recorded unless every check of `read_export` passes. A version this
    instance already records as a candidate is stored again if missing, but not recorded twice.

    Raises:
        IntegrityError: the export is tampered with or partial (naming the file).
        RegistryError: the export is of another pipeline.
    """
    from mlops_dagster.registry.records import candidate_metadata
    from mlops_dagster.registry.store import CARD_MARKDOWN, store_files

    export = read_export(uri, pipeline)
    stored = store_files(pipeline, export.files.files, export.sha256)
    if candidate_metadata(instance, pipeline, export.version) is not None:
        return ImportResult(export, stored.path, recorded=False)
    instance.report_runless_asset_event(candidate_event(export, str(Path(stored.path) / CARD_MARKDOWN)))
    return ImportResult(export, stored.path, recorded=True)
