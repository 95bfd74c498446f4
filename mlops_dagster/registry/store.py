"""Immutable, content-addressed model versions in BentoML's model store.

A version is the sha256 of the serialized model: the tag is `<pipeline>:<first 32 hex digits>`, the full
digest is kept in the model's labels and in its model card, and nothing is loaded unless the bytes on
disk hash to it. BentoML is imported inside the functions (and honours `$BENTOML_HOME`).
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops_dagster.errors import IntegrityError, RegistryError
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


def save_version(
    pipeline: str,
    model: Any,
    card: dict[str, Any],
    card_markdown: str,
    extra_files: dict[str, bytes] | None = None,
) -> StoredVersion:
    """Store a model once under its content hash; saving the same bytes again returns the same version.

    `extra_files` (the drift profile, a reference sample) are stored with the model and their sha256s
    recorded in the card under `files`, so they are checked like the model itself when read.

    The model directory is written by `bentoml.models.create`, which only moves it into the store when
    the block finishes, so a failure leaves no half-written version.
    """
    import bentoml

    data = serialize(model)
    digest = sha256_hex(data)
    version = digest[:VERSION_DIGITS]
    tag = f"{pipeline}:{version}"
    with tag_lock(tag):  # another process saving the same bytes finishes first; see store_lock
        existing = _get(tag)
        if existing is not None:
            verify(existing, digest)
            return StoredVersion(pipeline, version, digest, str(existing.path))
        card = {
            **card,
            "version": version,
            "sha256": digest,
            "bentoml_tag": tag,
            "files": {name: sha256_hex(content) for name, content in (extra_files or {}).items()},
        }
        with bentoml.models.create(
            tag, labels={"mlops_sha256": digest, "pipeline": pipeline}, metadata={"model_file": MODEL_FILE}
        ) as bento_model:
            target = Path(bento_model.path)
            (target / MODEL_FILE).write_bytes(data)
            for name, content in (extra_files or {}).items():
                (target / name).write_bytes(content)
            (target / CARD_JSON).write_text(json.dumps(card, indent=2, sort_keys=True, default=str))
            (target / CARD_MARKDOWN).write_text(
                card_markdown.replace("{version}", version).replace("{sha256}", digest)
            )
        stored = _get(tag)
    if stored is None:
        raise RegistryError(f"model {tag} was not found in the BentoML store right after saving it")
    return StoredVersion(pipeline, version, digest, str(stored.path))


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
    """
    import joblib

    bento_model = _get(f"{pipeline}:{version}")
    if bento_model is None:
        raise RegistryError(f"model version {pipeline}:{version} is not in the BentoML model store")
    return joblib.load(io.BytesIO(verify(bento_model, sha256)))


def read_card(pipeline: str, version: str) -> dict[str, Any]:
    bento_model = _get(f"{pipeline}:{version}")
    if bento_model is None:
        raise RegistryError(f"model version {pipeline}:{version} is not in the BentoML model store")
    return json.loads((Path(bento_model.path) / CARD_JSON).read_text())


def card_path(pipeline: str, version: str) -> Path:
    bento_model = _get(f"{pipeline}:{version}")
    if bento_model is None:
        raise RegistryError(f"model version {pipeline}:{version} is not in the BentoML model store")
    return Path(bento_model.path) / CARD_MARKDOWN


def read_file(pipeline: str, version: str, name: str) -> bytes:
    """A file stored with a version, after checking it against the sha256 in the version's card.

    Raises:
        RegistryError: the version or the file is unknown.
        IntegrityError: the file's bytes do not match the card.
    """
    card = read_card(pipeline, version)
    expected = card.get("files", {}).get(name)
    if expected is None:
        raise RegistryError(f"model version {pipeline}:{version} has no file {name!r} recorded in its card")
    path = card_path(pipeline, version).parent / name
    if not path.exists():
        raise IntegrityError(f"model {pipeline}:{version}: {path} is missing")
    data = path.read_bytes()
    if sha256_hex(data) != expected:
        raise IntegrityError(
            f"model {pipeline}:{version}: sha256 of {path} is {sha256_hex(data)}, the card "
            f"says {expected}; refusing to use it"
        )
    return data
