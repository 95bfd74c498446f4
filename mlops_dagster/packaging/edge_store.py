"""The edge bundle in BentoML's model store, as `<pipeline>_edge:<version>` (not `bentoml.onnx`, which is
deprecated: the bundle's files are stored as they are, with `bentoml.models.create`). A signed bundle's
`model.sig` travels with it, into the store, the bento that serves it and the published folder."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from mlops_dagster.errors import IntegrityError, PackagingError
from mlops_dagster.packaging.onnx_bundle import (
    MANIFEST_FILE,
    MODEL_FILE,
    SIGNATURE_FILE,
    place_files,
    sha256_hex,
    verify_bundle,
)
from mlops_dagster.registry.store_lock import tag_lock


def _bundle_files(folder: Path, manifest: dict[str, Any]) -> list[str]:
    """The names of a checked bundle's files: those its manifest lists, the manifest, its signature."""
    signed = [SIGNATURE_FILE] if (folder / SIGNATURE_FILE).is_file() else []
    return [*manifest["files"], MANIFEST_FILE, *signed]


def _get(tag: str) -> Any | None:
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        return bentoml.models.get(tag)
    except NotFound:
        return None


def store_bundle_in_bentoml(bundle_dir: str | Path, pipeline: str, version: str) -> str:
    """Copy a verified bundle into the BentoML model store as `<pipeline>_edge:<version>`; returns the tag.

    Idempotent: when the tag exists its files are verified against its manifest and it is kept (stored
    versions are immutable), provided it packages the same champion.

    Raises:
        IntegrityError: the bundle or the stored copy fails its hash check, or the stored copy packages
            a different champion.
        PackagingError: the bundle belongs to another pipeline or version.
    """
    import bentoml

    source = Path(bundle_dir)
    manifest = verify_bundle(source)
    if (manifest["pipeline"], manifest["version"]) != (pipeline, version):
        raise PackagingError(
            f"{source} packages {manifest['pipeline']}:{manifest['version']}, not {pipeline}:{version}"
        )
    tag = f"{pipeline}_edge:{version}"
    with tag_lock(tag):  # one writer per tag across processes; see registry.store_lock
        if _get(tag) is None:
            labels = {"pipeline": pipeline, "target": "edge", "mlops_sha256": manifest["model_sha256"]}
            metadata = {
                "task": manifest["task"],
                "features": manifest["features"],
                "format": manifest["format"],
                "onnx_sha256": manifest["files"][MODEL_FILE],
                "manifest_sha256": sha256_hex((source / MANIFEST_FILE).read_bytes()),
            }
            with bentoml.models.create(tag, labels=labels, metadata=metadata) as bento_model:
                target = Path(bento_model.path)
                for name in _bundle_files(source, manifest):
                    shutil.copyfile(source / name, target / name)
                verify_bundle(target)  # a copy that does not verify aborts the create: nothing is stored
        stored = _get(tag)
    if stored is None:
        raise PackagingError(f"{tag} was not found in the BentoML model store right after saving it")
    stored_manifest = verify_bundle(stored.path)
    if stored_manifest["model_sha256"] != manifest["model_sha256"]:
        raise IntegrityError(
            f"{tag} in the BentoML store packages champion {stored_manifest['model_sha256']}, the bundle at "
            f"{source} packages {manifest['model_sha256']}; refusing to mix them"
        )
    return tag


def store_bundle_for_bento(bundle: str | Path, pipeline: str, version: str, sha256: str) -> dict[str, str]:
    """Store a bundle the cloud bento will serve; returns its tag and the stored `model.onnx` sha256.

    Raises:
        IntegrityError: the bundle (or the copy already stored) packages another model than `sha256`,
            or fails its hash check.
    """
    import bentoml

    manifest = verify_bundle(bundle)
    if manifest.get("model_sha256") != sha256:
        raise IntegrityError(
            f"edge bundle {bundle} packages model sha256 {manifest.get('model_sha256')}, not "
            f"{pipeline}:{version} ({sha256})"
        )
    tag = store_bundle_in_bentoml(bundle, pipeline, version)
    stored_manifest = verify_bundle(bentoml.models.get(tag).path)
    return {"model_tag": tag, "sha256": stored_manifest["files"][MODEL_FILE]}


def export_bundle(source: str | Path, out_dir: str | Path, *, version: str, model_sha256: str) -> Path:
    """Copy a checked bundle (e.g. from the BentoML store) byte for byte to the folder `out_dir`, atomically.

    The source and the copy are verified against the manifest, which must name this champion; BentoML's
    own `model.yaml` is not copied.

    Raises:
        IntegrityError: a file of the source or of the copy is missing or altered, or the bundle
            packages another champion.
    """
    src = Path(source)
    manifest = verify_bundle(src, model_sha256=model_sha256, version=version)
    files = {name: (src / name).read_bytes() for name in _bundle_files(src, manifest)}
    out = place_files(out_dir, files)
    verify_bundle(out, model_sha256=model_sha256, version=version)
    return out
