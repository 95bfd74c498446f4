"""Signed model versions (issue 11 point 6, CONTRACT section 7): OpenSSF model-signing, EC keys, offline.

Keys are made per test with `cryptography`; the policy is the active environment's `signing`. Every
test runs with outgoing connections refused, so a path that phones home (Sigstore) fails it.
"""

from __future__ import annotations

import json
import socket
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlops_dagster.environments import ActiveEnvironment, activate, select_environment
from mlops_dagster.keys import Meta
from mlops_dagster.registry.mirror import MANIFEST, manifest_for, mirror_path, publish_tree
from mlops_dagster.registry.signing import (
    SIGNATURE_FILE,
    SIGNING_KEY_VAR,
    VERIFY_KEYS_VAR,
    SignatureError,
    SigningConfigError,
)
from mlops_dagster.registry.store import MODEL_FILE, StoredVersion, _get, load_version, save_version
from mlops_dagster.spec.environments import EnvironmentSpec

PROFILE = "drift_profile.json"


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Signing and verifying must not touch the network: any outgoing connection fails the test."""

    def refuse(self: socket.socket, address: Any) -> None:
        raise AssertionError(f"network connection attempted to {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


def _keypair(folder: Path, name: str) -> tuple[Path, Path]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    private, public = folder / f"{name}.pem", folder / f"{name}.pub.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, tuple[Path, Path]]:
    """Three EC key pairs: `a` and `b` (trusted, rotation) and `stranger` (never trusted)."""
    folder = tmp_path / "keys"
    folder.mkdir()
    return {name: _keypair(folder, name) for name in ("a", "b", "stranger")}


@pytest.fixture
def pipeline(storage: Path) -> str:
    return f"signed_{uuid.uuid4().hex[:8]}"


def _policy(mode: str) -> None:
    declared = [EnvironmentSpec(name="prod", signing=mode), EnvironmentSpec(name="dev")]
    activate(select_environment(declared, "prod"))


def _use_keys(monkeypatch: pytest.MonkeyPatch, sign: Path | None, verify: list[Path]) -> None:
    if sign is None:
        monkeypatch.delenv(SIGNING_KEY_VAR, raising=False)
    else:
        monkeypatch.setenv(SIGNING_KEY_VAR, str(sign))
    monkeypatch.setenv(VERIFY_KEYS_VAR, ",".join(str(k) for k in verify))


def _model() -> Any:
    from sklearn.linear_model import LogisticRegression

    X = np.random.default_rng(7).normal(size=(200, 4))
    return LogisticRegression().fit(X, (X[:, 0] + X[:, 1] > 0).astype(int))


def _save(pipeline: str) -> StoredVersion:
    return save_version(
        pipeline,
        _model(),
        {"pipeline": pipeline, "features": ["a", "b", "c", "d"]},
        "# {version}",
        extra_files={PROFILE: json.dumps({"columns": ["a"]}).encode()},
    )


def _load(stored: StoredVersion) -> Any:
    return load_version(stored.pipeline, stored.version, stored.sha256)


@pytest.fixture
def no_unpickling(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records every joblib.load: a refused version must be refused before it is unpickled."""
    import joblib

    calls: list[str] = []
    real = joblib.load

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append("load")
        return real(*args, **kwargs)

    monkeypatch.setattr(joblib, "load", spy)
    return calls


def _drop_local(stored: StoredVersion) -> None:
    import bentoml

    bentoml.models.delete(stored.tag)
    assert _get(stored.tag) is None


def test_a_signed_version_verifies_and_loads(
    pipeline: str, keys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _policy("required")
    _use_keys(monkeypatch, keys["a"][0], [keys["a"][1]])
    stored = _save(pipeline)
    assert (Path(stored.path) / SIGNATURE_FILE).is_file()
    mirror = mirror_path(pipeline, stored.version)
    assert mirror is not None
    assert SIGNATURE_FILE in json.loads((mirror / MANIFEST).read_text())["files"]  # mirrored and listed
    X = np.linspace(-2, 2, 40).reshape(10, 4)
    assert _load(stored).predict_proba(X).shape == (10, 2)


def test_a_flipped_byte_is_refused_before_unpickling(
    pipeline: str, keys: Any, monkeypatch: pytest.MonkeyPatch, no_unpickling: list[str]
) -> None:
    _policy("required")
    _use_keys(monkeypatch, keys["a"][0], [keys["a"][1]])
    stored = _save(pipeline)
    model_file = Path(stored.path) / MODEL_FILE
    data = bytearray(model_file.read_bytes())
    data[len(data) // 2] ^= 0x01
    model_file.write_bytes(bytes(data))
    with pytest.raises(SignatureError, match=rf"{stored.tag}.*do not match the signature") as e:
        _load(stored)
    assert MODEL_FILE in str(e.value) and SIGNATURE_FILE in str(e.value)
    assert no_unpickling == []


def test_a_signature_by_an_unknown_key_is_refused(
    pipeline: str, keys: Any, monkeypatch: pytest.MonkeyPatch, no_unpickling: list[str]
) -> None:
    _policy("optional")  # a bad signature is refused even when signing is optional
    _use_keys(monkeypatch, keys["stranger"][0], [keys["a"][1], keys["b"][1]])
    stored = _save(pipeline)
    with pytest.raises(SignatureError, match=rf"not signed by any key in {VERIFY_KEYS_VAR}") as e:
        _load(stored)
    assert str(keys["a"][1]) in str(e.value) and str(keys["b"][1]) in str(e.value)
    assert no_unpickling == []


def test_key_rotation_any_listed_key_verifies(
    pipeline: str, keys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _policy("required")
    _use_keys(monkeypatch, keys["b"][0], [keys["a"][1], keys["b"][1]])  # signed with the new key
    stored = _save(pipeline)
    assert _load(stored) is not None
    _use_keys(monkeypatch, None, [keys["b"][1]])  # the old key dropped: still verifies
    assert _load(stored) is not None
    _use_keys(monkeypatch, None, [keys["a"][1]])  # only the old key: refused
    with pytest.raises(SignatureError, match="not signed by any key"):
        _load(stored)


def test_required_refuses_an_unsigned_version(
    pipeline: str, keys: Any, monkeypatch: pytest.MonkeyPatch, no_unpickling: list[str]
) -> None:
    _policy("off")
    _use_keys(monkeypatch, keys["a"][0], [keys["a"][1]])
    stored = _save(pipeline)  # `off`: not signed even with a key set
    assert not (Path(stored.path) / SIGNATURE_FILE).exists()
    _policy("required")
    refused = rf"{stored.tag} is not signed .*{SIGNATURE_FILE} is missing"
    with pytest.raises(SignatureError, match=refused) as e:
        _load(stored)
    assert "'prod' (signing: required)" in str(e.value) and SIGNING_KEY_VAR in str(e.value)
    assert no_unpickling == []


def test_required_refuses_a_signed_version_without_verify_keys(
    pipeline: str, keys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _policy("required")
    _use_keys(monkeypatch, keys["a"][0], [])
    stored = _save(pipeline)
    with pytest.raises(SignatureError, match=rf"{VERIFY_KEYS_VAR} is not set"):
        _load(stored)


def test_required_without_a_signing_key_refuses_to_save(
    pipeline: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _policy("required")
    _use_keys(monkeypatch, None, [])
    refused = rf"cannot save model version {pipeline}:.*{SIGNING_KEY_VAR} is not set"
    with pytest.raises(SigningConfigError, match=refused):
        _save(pipeline)
    from mlops_dagster.registry.store import VERSION_DIGITS, serialize, sha256_hex

    assert _get(f"{pipeline}:{sha256_hex(serialize(_model()))[:VERSION_DIGITS]}") is None  # nothing stored


def test_optional_loads_an_unsigned_version(
    pipeline: str, keys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _policy("optional")
    _use_keys(monkeypatch, None, [keys["a"][1]])
    stored = _save(pipeline)
    assert not (Path(stored.path) / SIGNATURE_FILE).exists()
    assert _load(stored) is not None


def test_off_ignores_everything(pipeline: str, keys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _policy("optional")
    _use_keys(monkeypatch, keys["stranger"][0], [keys["a"][1]])
    stored = _save(pipeline)  # signed by a key `a` does not trust: refused unless signing is off
    with pytest.raises(SignatureError):
        _load(stored)
    activate(None)  # the default environment: signing off
    assert _load(stored) is not None
    activate(ActiveEnvironment("dev", EnvironmentSpec(name="dev", signing="off")))
    assert _load(stored) is not None


def test_the_mirror_is_checked_before_the_local_store_takes_it(
    pipeline: str, keys: Any, monkeypatch: pytest.MonkeyPatch, no_unpickling: list[str]
) -> None:
    _policy("required")
    _use_keys(monkeypatch, keys["a"][0], [keys["a"][1]])
    stored = _save(pipeline)
    mirror = mirror_path(pipeline, stored.version)
    assert mirror is not None
    _drop_local(stored)
    assert _load(stored) is not None  # fetched, verified, stored, with its signature
    assert (Path(_get(stored.tag).path) / SIGNATURE_FILE).is_file()
    # a signature by another key, put in the mirror with a consistent manifest: refused, nothing stored
    _drop_local(stored)
    _use_keys(monkeypatch, keys["stranger"][0], [keys["a"][1]])
    from mlops_dagster.registry.signing import sign_files

    files = {p.name: p.read_bytes() for p in Path(mirror).iterdir() if p.name != MANIFEST}
    files[SIGNATURE_FILE] = sign_files(files, stored.tag) or b""
    publish_tree(mirror, files, manifest_for(pipeline, stored.version, stored.sha256, files))
    no_unpickling.clear()
    with pytest.raises(SignatureError, match=rf"{mirror}/{SIGNATURE_FILE} was not signed by any key"):
        _load(stored)
    assert _get(stored.tag) is None
    assert no_unpickling == []


def _write_export(folder: Path, stored: StoredVersion, files: dict[str, bytes]) -> None:
    from mlops_dagster.registry.transfer import EXPORT_FORMAT

    manifest = {
        **manifest_for(stored.pipeline, stored.version, stored.sha256, files),
        "format": EXPORT_FORMAT,
        "candidate": {Meta.VERSION: stored.version, Meta.SHA256: stored.sha256, Meta.FEATURES: list("abcd")},
    }
    publish_tree(folder, files, manifest)  # type: ignore[arg-type]


def test_an_import_checks_the_signature(
    pipeline: str, keys: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from upath import UPath

    from mlops_dagster.registry.store import version_files
    from mlops_dagster.registry.transfer import read_export

    _policy("required")
    _use_keys(monkeypatch, keys["a"][0], [keys["a"][1]])
    stored = _save(pipeline)
    files = version_files(pipeline, stored.version, stored.sha256)
    assert SIGNATURE_FILE in files
    good, unsigned = UPath(tmp_path / "good"), UPath(tmp_path / "unsigned")
    _write_export(good, stored, files)  # type: ignore[arg-type]
    assert read_export(str(good), pipeline).version == stored.version
    _write_export(unsigned, stored, {n: b for n, b in files.items() if n != SIGNATURE_FILE})  # type: ignore[arg-type]
    with pytest.raises(SignatureError, match=rf"is not signed \({unsigned}/{SIGNATURE_FILE} is missing\)"):
        read_export(str(unsigned), pipeline)
    _use_keys(monkeypatch, None, [keys["b"][1]])
    with pytest.raises(SignatureError, match=rf"{good}/{SIGNATURE_FILE} was not signed by any key"):
        read_export(str(good), pipeline)


def test_an_unusable_key_is_named(pipeline: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _policy("optional")
    bad = tmp_path / "not-a-key.pem"
    bad.write_text("hello")
    _use_keys(monkeypatch, bad, [])
    unusable = rf"{SIGNING_KEY_VAR}={bad} is not a usable PEM EC private key"
    with pytest.raises(SigningConfigError, match=unusable):
        _save(pipeline)
    _use_keys(monkeypatch, tmp_path / "missing.pem", [])
    with pytest.raises(SigningConfigError, match=rf"{SIGNING_KEY_VAR}=.*missing.pem is not a file"):
        _save(pipeline)


def test_definitions_do_not_import_model_signing() -> None:
    import subprocess
    import sys

    code = (
        "import sys, mlops_dagster.registry.store, mlops_dagster.registry.mirror; "
        "print('model_signing' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
