"""Model versions as folders of files with a sha256 manifest: the store's mirror, and exports.

BentoML's model store is a local folder (`$BENTOML_HOME`). In a deployment, pods and tasks keep no
disk, and with `k8s_job_executor` the step that trains a candidate and the one that judges it run in
different pods. So every stored version is also written under the environment's storage root:

    <storage root>/models/<pipeline>/<version>/
        model.joblib  model_card.json  model_card.md  <extra files: drift profile, reference sample>
        manifest.json   (written last: {"pipeline", "version", "sha256", "files": {name: sha256}})

and a process that does not find a version in its local store fetches it from there
(`registry.store`). An export (`registry.transfer`) is the same folder with the candidate's record
added to its manifest.

Reading a folder (`read_tree`) trusts nothing before the manifest has been checked against every
byte: a missing manifest, a file it lists that is absent, a file it does not list, or a file whose
sha256 differs is refused, naming the file, before anything is unpickled or stored. A version is
content-addressed, so the model's sha256 must also start with the version named in the manifest, and
the model card must agree with both. A signed version's `model.sig` (`registry.signing`) is one of its
files, listed in the manifest like the others; `fetch` checks it before handing the files on.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from upath import UPath

from mlops_dagster.errors import IntegrityError, RegistryError
from mlops_dagster.io.storage import StorageError, check_root, put_tree
from mlops_dagster.registry.signing import SIGNATURE_FILE, check_files
from mlops_dagster.registry.store import CARD_JSON, CARD_MARKDOWN, MODEL_FILE, VERSION_DIGITS, sha256_hex

MANIFEST = "manifest.json"
MIRROR_FORMAT = "mlops-dagster/model-version"
FORMAT_VERSION = 1
MODELS_FOLDER = "models"
REQUIRED_FILES = (MODEL_FILE, CARD_JSON, CARD_MARKDOWN)

_VERSION = re.compile(rf"^[0-9a-f]{{{VERSION_DIGITS}}}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class VersionFiles:
    """Every file of one model version, already checked against its manifest and its sha256.

    Attributes:
        pipeline: The pipeline the version belongs to.
        version: The version (the first 32 hex digits of `sha256`).
        sha256: The sha256 of `model.joblib`.
        files: File name -> bytes (the model, the card as JSON and Markdown, the extra files).
        manifest: The manifest as read (or as it will be written).
    """

    pipeline: str
    version: str
    sha256: str
    files: Mapping[str, bytes]
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def card(self) -> dict[str, Any]:
        """The model card (JSON)."""
        card = json.loads(self.files[CARD_JSON])
        return card if isinstance(card, dict) else {}

    @property
    def size(self) -> int:
        """Total bytes of the files (the manifest excluded)."""
        return sum(len(b) for b in self.files.values())


def manifest_for(pipeline: str, version: str, sha256: str, files: Mapping[str, bytes]) -> dict[str, Any]:
    """The manifest of a version's files: what `read_tree` checks them against."""
    return {
        "format": MIRROR_FORMAT,
        "format_version": FORMAT_VERSION,
        "pipeline": pipeline,
        "version": version,
        "sha256": sha256,
        "files": {name: sha256_hex(files[name]) for name in sorted(files)},
    }


def publish_tree(target: UPath, files: Mapping[str, bytes], manifest: Mapping[str, Any]) -> UPath:
    """Write `files` and then `manifest.json` as the folder `target` (a local folder or a URL).

    The manifest goes last (`storage.put_tree`): a reader that finds it finds every file, and a
    reader of a half-written folder finds no manifest, hence no version.
    """
    with tempfile.TemporaryDirectory(prefix="mlops-version-") as tmp:
        folder = Path(tmp)
        for name, content in files.items():
            (folder / name).write_bytes(content)
        (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
        return put_tree(folder, target, last=MANIFEST)


def _uncached(path: UPath) -> UPath:
    """`path`, with the file system's listing cache for it dropped (s3fs caches listings and ETags per
    process, and reading an object changed since raises `FileExpired`): a folder is read as it is now."""
    invalidate = getattr(path.fs, "invalidate_cache", None)
    if invalidate is not None:
        invalidate(path.path)
    return path


def _read(source: UPath, name: str, what: str) -> bytes:
    try:
        return (source / name).read_bytes()
    except FileNotFoundError as e:
        raise IntegrityError(f"{what} {source}: {name} is missing") from e
    except OSError as e:
        raise StorageError(f"{what} {source}: cannot read {name} ({type(e).__name__}: {e})") from e


def _load_manifest(source: UPath, what: str) -> dict[str, Any]:
    try:
        manifest = json.loads((source / MANIFEST).read_bytes())
    except FileNotFoundError as e:
        raise IntegrityError(
            f"{what} {source}: {MANIFEST} is missing, so the folder is partial or not a model version; "
            "refusing it"
        ) from e
    except (ValueError, UnicodeDecodeError) as e:
        raise IntegrityError(f"{what} {source}: {MANIFEST} is not valid JSON ({e}); refusing it") from e
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise IntegrityError(f"{what} {source}: {MANIFEST} has no `files` mapping; refusing it")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise IntegrityError(
            f"{what} {source}: {MANIFEST} has format_version {manifest.get('format_version')!r}; this "
            f"mlops-dagster reads {FORMAT_VERSION} (written by another release?)"
        )
    return manifest


def _check_identity(
    source: UPath, manifest: dict[str, Any], pipeline: str, version: str | None, what: str
) -> None:
    where = f"{what} {source / MANIFEST}"
    if manifest.get("pipeline") != pipeline:
        raise RegistryError(
            f"{where} is for pipeline {manifest.get('pipeline')!r}, not {pipeline!r}; refusing it"
        )
    sha, ver = manifest.get("sha256"), manifest.get("version")
    if not isinstance(sha, str) or not _SHA256.match(sha):
        raise IntegrityError(f"{where}: `sha256` {sha!r} is not a sha256 (64 hex digits)")
    if ver != sha[:VERSION_DIGITS]:
        raise IntegrityError(f"{where}: version {ver!r} is not the first {VERSION_DIGITS} digits of {sha}")
    if version is not None and ver != version:
        raise IntegrityError(f"{where}: holds version {ver}, not {version}")


def _listing(source: UPath, what: str) -> set[str]:
    names = set()
    for entry in source.iterdir():
        if entry.name in ("", MANIFEST):
            continue
        if not entry.is_file():
            raise IntegrityError(f"{what} {source}: unexpected folder {entry.name!r} (not in {MANIFEST})")
        names.add(entry.name)
    return names


def read_tree(
    source: UPath, pipeline: str, *, version: str | None = None, what: str = "model version"
) -> VersionFiles:
    """Read and check a version folder written by `publish_tree`; nothing is unpickled.

    Checks, in order: the manifest exists and names `pipeline` (and `version` when given); the folder
    holds exactly the files it lists; each file hashes to its entry; the model hashes to the
    manifest's sha256, whose first digits are the version; the model card names the same version,
    sha256 and extra files.

    Raises:
        IntegrityError: a check failed; the message names the file.
        RegistryError: the manifest is for another pipeline.
        StorageError: a file cannot be read (network, permissions).
    """
    manifest = _load_manifest(_uncached(source), what)
    _check_identity(source, manifest, pipeline, version, what)
    listed: dict[str, Any] = manifest["files"]
    for name, digest in listed.items():
        if not _SAFE_NAME.match(str(name)) or name == MANIFEST:
            raise IntegrityError(
                f"{what} {source}: {MANIFEST} lists {name!r}, which is not a plain file name"
            )
        if not isinstance(digest, str) or not _SHA256.match(digest):
            raise IntegrityError(f"{what} {source}: {MANIFEST} gives {name} the sha256 {digest!r}")
    for name in REQUIRED_FILES:
        if name not in listed:
            raise IntegrityError(f"{what} {source}: {MANIFEST} does not list {name}; refusing it")
    present = _listing(source, what)
    extra = sorted(present - set(listed))
    if extra:
        raise IntegrityError(
            f"{what} {source}: {', '.join(extra)} {'is' if len(extra) == 1 else 'are'} not listed in "
            f"{MANIFEST}; refusing a folder with unlisted files"
        )
    missing = sorted(set(listed) - present)
    if missing:
        raise IntegrityError(f"{what} {source}: {', '.join(missing)} listed in {MANIFEST} but missing")
    files: dict[str, bytes] = {}
    for name in sorted(listed):
        data = _read(source, name, what)
        if sha256_hex(data) != listed[name]:
            raise IntegrityError(
                f"{what} {source}: sha256 of {name} is {sha256_hex(data)}, {MANIFEST} says "
                f"{listed[name]}; the file was changed, refusing it"
            )
        files[name] = data
    sha256, ver = str(manifest["sha256"]), str(manifest["version"])
    if listed[MODEL_FILE] != sha256:
        raise IntegrityError(
            f"{what} {source}: {MODEL_FILE} hashes to {listed[MODEL_FILE]}, but the version is {sha256}"
        )
    _check_card(source, files, pipeline, ver, sha256, what)
    return VersionFiles(pipeline, ver, sha256, files, manifest)


def _check_card(
    source: UPath, files: Mapping[str, bytes], pipeline: str, version: str, sha256: str, what: str
) -> None:
    try:
        card = json.loads(files[CARD_JSON])
    except (ValueError, UnicodeDecodeError) as e:
        raise IntegrityError(f"{what} {source}: {CARD_JSON} is not valid JSON ({e})") from e
    if not isinstance(card, dict):
        raise IntegrityError(f"{what} {source}: {CARD_JSON} is not a JSON object")
    for key, want in (("version", version), ("sha256", sha256), ("pipeline", pipeline)):
        if key in card and card[key] != want:
            raise IntegrityError(f"{what} {source}: {CARD_JSON} says {key} {card[key]!r}, not {want!r}")
    beside = (*REQUIRED_FILES, SIGNATURE_FILE)  # the signature covers the card: it cannot be in it
    extras = {n: sha256_hex(b) for n, b in files.items() if n not in beside}
    recorded = card.get("files") or {}
    if recorded != extras:
        raise IntegrityError(
            f"{what} {source}: the files beside the model ({', '.join(sorted(extras)) or 'none'}) do not "
            f"match those recorded in {CARD_JSON} ({', '.join(sorted(recorded)) or 'none'})"
        )


# -- the store's mirror under the environment's storage root ---------------------------------------


def mirror_path(pipeline: str, version: str) -> UPath | None:
    """`<storage root>/models/<pipeline>/<version>`; None for a name that cannot be a path segment."""
    from mlops_dagster.io.parquet import default_storage_root

    if not _SAFE_NAME.match(pipeline) or not _VERSION.match(version):
        return None
    return UPath(default_storage_root()) / MODELS_FOLDER / pipeline / version


def is_mirrored(pipeline: str, version: str) -> bool:
    """Whether the mirror holds a whole copy of the version (its manifest is written last)."""
    path = mirror_path(pipeline, version)
    if path is None:
        return False
    check_root(path)
    return (_uncached(path) / MANIFEST).exists()


def publish(pipeline: str, version: str, sha256: str, files: Mapping[str, bytes]) -> UPath | None:
    """Write a stored version's files to the mirror (replacing a partial copy); returns where."""
    path = mirror_path(pipeline, version)
    if path is None:
        return None
    check_root(path)
    return publish_tree(path, files, manifest_for(pipeline, version, sha256, files))


def fetch(pipeline: str, version: str) -> VersionFiles | None:
    """The version's files from the mirror, checked (`read_tree`); None when it holds no whole copy.

    Raises:
        IntegrityError: the mirror's copy does not match its manifest (naming the file).
        SignatureError: the signing policy refuses the version (unsigned, changed, unknown key).
    """
    path = mirror_path(pipeline, version)
    if path is None:
        return None
    check_root(path)
    if not (_uncached(path) / MANIFEST).exists():
        return None
    found = read_tree(path, pipeline, version=version, what="model mirror")
    check_files(found.files, f"{pipeline}:{version}", str(path))
    return found
