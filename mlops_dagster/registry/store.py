"""Immutable, content-addressed model versions in BentoML's model store.

A version is the sha256 of the serialized model: the tag is `<pipeline>:<first 32 hex digits>`, the full
digest is kept in the model's labels and in its model card, and nothing is loaded unless the bytes on
disk hash to it. BentoML is imported inside the functions (and honours `$BENTOML_HOME`).

The local store is a cache of the environment's storage: every stored version is also written to its
mirror, `<storage root>/models/<pipeline>/<version>/` (`registry.mirror`), and a version missing from
the local store (a fresh pod, another executor step) is fetched from there, checked against its
manifest before anything is unpickled or stored.

With signing on (the environment's `signing`, `registry.signing`), a version is signed when it is made
(`model.sig`, stored and mirrored with it) and its signature is checked whenever it is taken from the
local store or the mirror, before its bytes are used.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops_dagster.errors import IntegrityError, RegistryError
from mlops_dagster.registry.signing import SIGNATURE_FILE, check_folder, sign_files
from mlops_dagster.registry.store_lock import tag_lock

MODEL_FILE = "model.joblib"
CARD_JSON = "model_card.json"
CARD_MARKDOWN = "model_card.md"
VERSION_DIGITS = 32


@dataclass(frozen=True)
class StoredVersion:
    pipeline: str
    version: str
    sha256: str
    path: str

    @property
    def tag(self) -> str:
        return f"{self.pipeline}:{self.version}"


def serialize(model: Any) -> bytes:
    import joblib

    buf = io.BytesIO()
    joblib.dump(model, buf)
    return buf.getvalue()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _get(tag: str) -> Any | None:
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        return bentoml.models.get(tag)
    except NotFound:
        return None


def _create(tag: str, pipeline: str, digest: str, files: Mapping[str, bytes]) -> None:
    """Add a version to the local store; call it under `tag_lock(tag)` after `_get(tag)` found nothing.

    `bentoml.models.create` moves the folder into the store only when the block finishes, so a
    failure leaves no half-written version.
    """
    import bentoml

    with bentoml.models.create(
        tag, labels={"mlops_sha256": digest, "pipeline": pipeline}, metadata={"model_file": MODEL_FILE}
    ) as bento_model:
        target = Path(bento_model.path)
        for name, content in files.items():
            (target / name).write_bytes(content)


def stored_model(pipeline: str, version: str) -> Any | None:
    """The version's BentoML model in the local store, fetched from the environment's mirror when missing.

    Its signature is checked first, as the environment's `signing` says (`registry.signing`).

    Returns:
        The `bentoml.Model`, or None when neither the local store nor the mirror holds the version.

    Raises:
        IntegrityError: the mirror's copy does not match its manifest; nothing was stored.
        SignatureError: the version is refused by the signing policy (unsigned, changed, unknown key).
    """
    from mlops_dagster.registry.mirror import fetch

    tag = f"{pipeline}:{version}"
    found = _get(tag)
    if found is not None:
        check_folder(Path(found.path), tag)
        return found
    mirrored = fetch(pipeline, version)  # every sha256 and the signature checked; nothing unpickled
    if mirrored is None:
        return None
    with tag_lock(tag):
        if _get(tag) is None:
            _create(tag, pipeline, mirrored.sha256, mirrored.files)
    return _get(tag)


def _missing(pipeline: str, version: str) -> RegistryError:
    from mlops_dagster.registry.mirror import mirror_path

    mirror = mirror_path(pipeline, version)
    where = f" nor in the model mirror {mirror}" if mirror is not None else ""
    return RegistryError(f"model version {pipeline}:{version} is not in the BentoML model store{where}")


def save_version(
    pipeline: str,
    model: Any,
    card: dict[str, Any],
    card_markdown: str,
    extra_files: dict[str, bytes] | None = None,
) -> StoredVersion:
    """Store a model once under its content hash; saving the same bytes again returns the same version.

    `extra_files` (the drift profile, a reference sample) are stored with the model and their sha256s
    recorded in the card under `files`, so they are checked like the model itself when read. The
    version is also written to the environment's mirror (`registry.mirror`), so a process with
    another local store (another pod) finds it.
    """
    from mlops_dagster.registry.mirror import is_mirrored, publish

    data = serialize(model)
    digest = sha256_hex(data)
    version = digest[:VERSION_DIGITS]
    tag = f"{pipeline}:{version}"
    with tag_lock(tag):  # another process saving the same bytes finishes first; see store_lock
        existing = _get(tag)
        if existing is not None:
            verify(existing, digest)
            if not is_mirrored(pipeline, version):  # stored before the mirror existed, or elsewhere
                publish(pipeline, version, digest, version_files(pipeline, version, digest))
            return StoredVersion(pipeline, version, digest, str(existing.path))
        card = {
            **card,
            "version": version,
            "sha256": digest,
            "bentoml_tag": tag,
            "files": {name: sha256_hex(content) for name, content in (extra_files or {}).items()},
        }
        markdown = card_markdown.replace("{version}", version).replace("{sha256}", digest)
        files = {
            MODEL_FILE: data,
            **(extra_files or {}),
            CARD_JSON: json.dumps(card, indent=2, sort_keys=True, default=str).encode(),
            CARD_MARKDOWN: markdown.encode(),
        }
        signature = sign_files(files, tag)  # None when the environment's signing does not ask for it
        if signature is not None:
            files[SIGNATURE_FILE] = signature
        _create(tag, pipeline, digest, files)
        publish(pipeline, version, digest, files)
        stored = _get(tag)
    if stored is None:
        raise RegistryError(f"model {tag} was not found in the BentoML store right after saving it")
    return StoredVersion(pipeline, version, digest, str(stored.path))


def store_files(pipeline: str, files: Mapping[str, bytes], sha256: str) -> StoredVersion:
    """Store a version whose files were already checked (an import): in the local store and its mirror.

    Idempotent: a version already in the local store is verified and kept as it is.

    Raises:
        IntegrityError: `files` has no model hashing to `sha256`, or the stored copy does not.
        RegistryError: the version cannot be found in the store after saving it.
    """
    from mlops_dagster.registry.mirror import is_mirrored, publish

    if MODEL_FILE not in files or sha256_hex(files[MODEL_FILE]) != sha256:
        raise IntegrityError(
            f"model {pipeline}: {MODEL_FILE} does not hash to {sha256}; refusing to store it"
        )
    version = sha256[:VERSION_DIGITS]
    tag = f"{pipeline}:{version}"
    if SIGNATURE_FILE not in files:  # an export signed at its source keeps that signature
        signature = sign_files(files, tag)
        if signature is not None:
            files = {**files, SIGNATURE_FILE: signature}
    with tag_lock(tag):
        existing = _get(tag)
        if existing is None:
            _create(tag, pipeline, sha256, files)
        else:
            verify(existing, sha256)
        if not is_mirrored(pipeline, version):
            publish(pipeline, version, sha256, files)
        stored = _get(tag)
    if stored is None:
        raise RegistryError(f"model {tag} was not found in the BentoML store right after saving it")
    return StoredVersion(pipeline, version, sha256, str(stored.path))


def verify(bento_model: Any, expected_sha256: str) -> bytes:
    """Return the model bytes after checking them against the recorded digest.

    Raises:
        IntegrityError: if the file is missing or its sha256 differs from the record or the store label.
    """
    path = Path(bento_model.path) / MODEL_FILE
    if not path.exists():
        raise IntegrityError(f"model {bento_model.tag}: {path} is missing")
    data = path.read_bytes()
    actual = sha256_hex(data)
    label = bento_model.info.labels.get("mlops_sha256")
    if actual != expected_sha256 or (label and label != expected_sha256):
        raise IntegrityError(
            f"model {bento_model.tag}: sha256 of {path} is {actual}, the record says "
            f"{expected_sha256}; refusing to load it"
        )
    return data


def load_version(pipeline: str, version: str, sha256: str) -> Any:
    """Load a stored model after verifying its hash.

    Raises:
        RegistryError: the version is not in the store.
        IntegrityError: the stored bytes do not match `sha256`.
        SignatureError: the signing policy refuses the version (checked before reading the model).
    """
    import joblib

    bento_model = stored_model(pipeline, version)
    if bento_model is None:
        raise _missing(pipeline, version)
    return joblib.load(io.BytesIO(verify(bento_model, sha256)))


def read_card(pipeline: str, version: str) -> dict[str, Any]:
    """The model card (JSON) of a stored version.

    Raises:
        RegistryError: the version is neither in the local store nor in the mirror.
    """
    bento_model = stored_model(pipeline, version)
    if bento_model is None:
        raise _missing(pipeline, version)
    return json.loads((Path(bento_model.path) / CARD_JSON).read_text())


def card_path(pipeline: str, version: str) -> Path:
    """The Markdown model card of a stored version, in the local store.

    Raises:
        RegistryError: the version is neither in the local store nor in the mirror.
    """
    bento_model = stored_model(pipeline, version)
    if bento_model is None:
        raise _missing(pipeline, version)
    return Path(bento_model.path) / CARD_MARKDOWN


def read_file(pipeline: str, version: str, name: str) -> bytes:
    """A file stored with a version, after checking it against the sha256 in the version's card.

    Raises:
        RegistryError: the version or the file is unknown.
        IntegrityError: the file's bytes do not match the card.
    """
    bento_model = stored_model(pipeline, version)
    if bento_model is None:
        raise _missing(pipeline, version)
    folder = Path(bento_model.path)
    return _checked_file(folder, json.loads((folder / CARD_JSON).read_text()), pipeline, version, name)


def _checked_file(folder: Path, card: dict[str, Any], pipeline: str, version: str, name: str) -> bytes:
    expected = card.get("files", {}).get(name)
    if expected is None:
        raise RegistryError(f"model version {pipeline}:{version} has no file {name!r} recorded in its card")
    path = folder / name
    if not path.exists():
        raise IntegrityError(f"model {pipeline}:{version}: {path} is missing")
    data = path.read_bytes()
    if sha256_hex(data) != expected:
        raise IntegrityError(
            f"model {pipeline}:{version}: sha256 of {path} is {sha256_hex(data)}, the card "
            f"says {expected}; refusing to use it"
        )
    return data


def version_files(pipeline: str, version: str, sha256: str) -> dict[str, bytes]:
    """Every file of a stored version, the model and the extra files checked against their sha256s
    (and `model.sig` when the version is signed).

    Raises:
        RegistryError: the version is unknown.
        IntegrityError: the model or an extra file does not match its record.
    """
    bento_model = stored_model(pipeline, version)
    if bento_model is None:
        raise _missing(pipeline, version)
    folder = Path(bento_model.path)
    files = {MODEL_FILE: verify(bento_model, sha256)}
    for name in (CARD_JSON, CARD_MARKDOWN):
        if not (folder / name).is_file():
            raise IntegrityError(f"model {pipeline}:{version}: {folder / name} is missing")
        files[name] = (folder / name).read_bytes()
    card = json.loads(files[CARD_JSON])
    for name in card.get("files", {}):
        files[name] = _checked_file(folder, card, pipeline, version, name)
    if (folder / SIGNATURE_FILE).is_file():
        files[SIGNATURE_FILE] = (folder / SIGNATURE_FILE).read_bytes()
    return files
