"""Signed bentos and edge bundles (issue 11 point 6, CONTRACT section 7), checked where they are loaded.

One small model is saved and its edge bundle written under `signing: required` with the second of two
trusted keys (a rotation), once; an unsigned twin is saved under another pipeline name with signing
off. Each test that tampers works on its own copy (or its own pipeline). The loaders under test are the
standalone ones: the edge predictor (`Predictor`, as on a device) and the bento service's load functions;
`load_checked_model` and `load_checked_bundle` are what the service's `__init__` calls in every worker;
one test serves a bento for real (`bentoml serve`), before and after its model is tampered with.
Outgoing connections other than loopback fail the test: signing and checking stay offline.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlops_dagster.environments import activate, select_environment
from mlops_dagster.errors import IntegrityError
from mlops_dagster.packaging import onnx_bundle
from mlops_dagster.packaging.bento import SIGNING_DISTRIBUTIONS, build_bento, service_config
from mlops_dagster.packaging.edge_predictor import (
    SIGNING_VAR,
    Predictor,
    SignatureRefused,
    UnusableKeyError,
)
from mlops_dagster.packaging.parity import load_predictor
from mlops_dagster.packaging.service_template import load_checked_bundle, load_checked_model
from mlops_dagster.registry import signing
from mlops_dagster.registry.signing import SIGNATURE_FILE, SIGNING_KEY_VAR, VERIFY_KEYS_VAR, SignatureError
from mlops_dagster.registry.store import MODEL_FILE, StoredVersion, read_card, save_version
from mlops_dagster.spec.environments import EnvironmentSpec
from mlops_dagster.spec.models import PipelineSpec
from mlops_dagster.training.train import train_candidate

FEATURES = ["tenure", "charges", "plan"]
ROWS = [{"tenure": 12, "charges": 70.5, "plan": "pro"}, {"tenure": 3, "charges": 20.0, "plan": None}]
Keys = dict[str, tuple[Path, Path]]  # name -> (private key, public key)


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any outgoing connection but to this machine fails the test (Sigstore would phone home)."""
    real = socket.socket.connect

    def guarded(self: socket.socket, address: Any) -> Any:
        if isinstance(address, tuple) and address[0] not in ("127.0.0.1", "::1", "localhost"):
            raise AssertionError(f"network connection attempted to {address}")
        return real(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture(autouse=True)
def _no_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no key and no `MLOPS_SIGNING`, whatever the shell has."""
    for var in (SIGNING_KEY_VAR, VERIFY_KEYS_VAR, SIGNING_VAR):
        monkeypatch.delenv(var, raising=False)


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


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    """`old` and `new` (both trusted during a rotation; artifacts are signed with `new`), `stranger`."""
    folder = tmp_path_factory.mktemp("keys")
    return {name: _keypair(folder, name) for name in ("old", "new", "stranger")}


def _policy(mode: str) -> None:
    activate(select_environment([EnvironmentSpec(name="prod", signing=mode)], "prod"))


def _trust(monkeypatch: pytest.MonkeyPatch, *public: Path) -> None:
    monkeypatch.setenv(VERIFY_KEYS_VAR, ",".join(str(k) for k in public))


@dataclass(frozen=True)
class Made:
    """A saved version and its edge bundle, signed or not."""

    stored: StoredVersion
    bundle: Path
    card: dict[str, Any]


def _train() -> tuple[Any, dict[str, Any]]:
    rng = np.random.default_rng(5)
    n = 160
    data = pd.DataFrame(
        {
            "id": np.arange(n),
            "ts": pd.date_range("2026-01-01", periods=n, freq="h"),
            "tenure": rng.integers(0, 60, n).astype(np.int64),
            "charges": rng.uniform(10.0, 90.0, n),
            "plan": rng.choice(np.array(["basic", "pro", None], dtype=object), n),
        }
    )
    data["churned"] = ((data["charges"] > 50) ^ (data["plan"] == "pro")).astype(np.int64)
    spec = PipelineSpec.model_validate(
        {
            "name": "signed_edge",
            "dataset": {
                "source": {"uri": "x.parquet"},
                "entity": "id",
                "timestamp": "ts",
                "label": "churned",
            },
            "model": {
                "task": "classification",
                "estimator": "sklearn.linear_model.LogisticRegression",
                "params": {"max_iter": 500},
                "metric": "roc_auc",
            },
        }
    )
    result = train_candidate(spec, data, FEATURES)
    card = {
        "features": result.features,
        "feature_schema": result.schema,
        "task": "classification",
        "estimator": spec.model.estimator,
    }
    return result.model, card


@pytest.fixture(scope="module")
def model() -> tuple[Any, dict[str, Any]]:
    return _train()


def _make(model: tuple[Any, dict[str, Any]], pipeline: str, where: Path) -> Made:
    """Save the model as `pipeline` and write its bundle, under the active environment's signing."""
    fitted, card = model
    stored = save_version(pipeline, fitted, card, "# {version}")
    bundle = onnx_bundle.write_bundle(
        where,
        onnx_bundle.convert_to_onnx(fitted, card["feature_schema"], "classification"),
        pipeline=pipeline,
        version=stored.version,
        model_sha256=stored.sha256,
        features=FEATURES,
        feature_schema=card["feature_schema"],
        task="classification",
        classes=fitted.classes_,
    )
    return Made(stored, bundle, read_card(pipeline, stored.version))


@pytest.fixture(scope="module")
def signed(model: Any, keys: Keys, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Made]:
    """Made under `signing: required` with the `new` key."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(SIGNING_KEY_VAR, str(keys["new"][0]))
        mp.setenv(VERIFY_KEYS_VAR, str(keys["new"][1]))
        _policy("required")
        try:
            yield _make(model, f"signed_{uuid.uuid4().hex[:8]}", tmp_path_factory.mktemp("signed") / "bundle")
        finally:
            activate(None)


@pytest.fixture(scope="module")
def unsigned(model: Any, tmp_path_factory: pytest.TempPathFactory) -> Made:
    """Made with signing off (the default environment): no `model.sig` anywhere."""
    activate(None)
    return _make(model, f"unsigned_{uuid.uuid4().hex[:8]}", tmp_path_factory.mktemp("unsigned") / "bundle")


def _copy(bundle: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(bundle, tmp_path / "bundle"))


def _verifies_with_model_signing(folder: Path, public: Path) -> bool:
    """The library's own check, independent of ours (files it does not cover, e.g. model.yaml, ignored)."""
    import model_signing.verifying

    config = model_signing.verifying.Config().use_elliptic_key_verifier(public_key=public)
    try:
        config.set_ignore_unsigned_files(True).verify(folder, folder / SIGNATURE_FILE)
    except Exception:  # noqa: BLE001 - a wrong key or a changed file, whichever way the library says it
        return False
    return True


@pytest.fixture
def no_model_read(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records every ONNX session made and every unpickling: a refused artifact is never read as a model."""
    import joblib
    import onnxruntime

    calls: list[str] = []
    session, load = onnxruntime.InferenceSession, joblib.load

    def spy_session(*args: Any, **kwargs: Any) -> Any:
        calls.append("onnx")
        return session(*args, **kwargs)

    def spy_load(*args: Any, **kwargs: Any) -> Any:
        calls.append("joblib")
        return load(*args, **kwargs)

    monkeypatch.setattr(onnxruntime, "InferenceSession", spy_session)
    monkeypatch.setattr(joblib, "load", spy_load)
    return calls


# --- the edge bundle -------------------------------------------------------------------------------------


def test_a_bundle_is_signed_when_it_is_written(signed: Made, unsigned: Made, keys: Keys) -> None:
    assert (signed.bundle / SIGNATURE_FILE).is_file()
    assert _verifies_with_model_signing(signed.bundle, keys["new"][1])
    assert not _verifies_with_model_signing(signed.bundle, keys["old"][1])
    manifest = json.loads((signed.bundle / onnx_bundle.MANIFEST_FILE).read_text())
    assert manifest["signing_required"] is True  # baked: the bundle refuses to load unsigned anywhere
    assert SIGNATURE_FILE not in manifest["files"]  # the signature covers the manifest, not the reverse
    assert not (unsigned.bundle / SIGNATURE_FILE).exists()
    assert "signing_required" not in json.loads((unsigned.bundle / onnx_bundle.MANIFEST_FILE).read_text())


def test_the_edge_predictor_takes_any_listed_key_during_a_rotation(
    signed: Made, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    _trust(monkeypatch, keys["old"][1], keys["new"][1])
    assert len(Predictor(signed.bundle).predict(ROWS)) == 2
    _trust(monkeypatch, keys["new"][1])  # the old key dropped
    assert len(Predictor(signed.bundle).predict(ROWS)) == 2
    _trust(monkeypatch, keys["old"][1], keys["stranger"][1])  # the signing key no longer listed
    with pytest.raises(SignatureRefused, match=rf"was not signed by any key in {VERIFY_KEYS_VAR}") as e:
        Predictor(signed.bundle)
    assert str(keys["old"][1]) in str(e.value) and str(signed.bundle) in str(e.value)


@pytest.mark.parametrize("rewrite_manifest", [False, True], ids=["byte flipped", "manifest rewritten too"])
def test_a_tampered_bundle_is_refused_by_the_edge_predictor(
    signed: Made,
    keys: Keys,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    no_model_read: list[str],
    rewrite_manifest: bool,
) -> None:
    bundle = _copy(signed.bundle, tmp_path)
    model = bundle / onnx_bundle.MODEL_FILE
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01
    model.write_bytes(bytes(data))
    if rewrite_manifest:  # whoever changed the model also fixed its hash: only the signature can tell
        manifest = json.loads((bundle / onnx_bundle.MANIFEST_FILE).read_text())
        manifest["files"][onnx_bundle.MODEL_FILE] = hashlib.sha256(bytes(data)).hexdigest()
        (bundle / onnx_bundle.MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    _trust(monkeypatch, keys["new"][1])
    with pytest.raises(SignatureRefused, match=r"do not match the signature") as e:
        Predictor(bundle)
    assert f"edge bundle {bundle}" in str(e.value) and f"{bundle}/{SIGNATURE_FILE}" in str(e.value)
    assert onnx_bundle.MODEL_FILE in str(e.value)
    assert no_model_read == []


@pytest.mark.parametrize(
    ("environ", "trusted", "refused"),
    [
        pytest.param({}, False, None, id="no keys, not required: loads"),
        pytest.param({}, True, "is not signed", id="keys listed: refused"),
        pytest.param({SIGNING_VAR: "required"}, False, "is not signed", id="required: refused"),
        pytest.param({SIGNING_VAR: "optional"}, True, None, id="optional with keys: loads"),
        pytest.param({SIGNING_VAR: "sometimes"}, False, "is not one of required, optional, off", id="typo"),
    ],
)
def test_an_unsigned_bundle_follows_the_policy_where_it_is_loaded(
    unsigned: Made,
    keys: Keys,
    monkeypatch: pytest.MonkeyPatch,
    environ: dict[str, str],
    trusted: bool,
    refused: str | None,
) -> None:
    for var, value in environ.items():
        monkeypatch.setenv(var, value)
    if trusted:
        _trust(monkeypatch, keys["new"][1])
    if refused is None:
        assert len(Predictor(unsigned.bundle).predict(ROWS)) == 2
        return
    with pytest.raises(SignatureRefused, match=refused) as e:
        Predictor(unsigned.bundle)
    assert "sometimes" in str(e.value) or f"{unsigned.bundle}/{SIGNATURE_FILE} is missing" in str(e.value)


def test_a_bundle_built_under_required_refuses_to_load_unsigned(
    signed: Made, keys: Keys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = _copy(signed.bundle, tmp_path)
    (bundle / SIGNATURE_FILE).unlink()  # stripped: no key is listed here, the manifest still says required
    with pytest.raises(
        SignatureRefused, match=r"is not signed .* its build \(made under `signing: required`\)"
    ):
        Predictor(bundle)
    monkeypatch.setenv(SIGNING_VAR, "off")  # the device's own setting has the last word
    assert len(Predictor(bundle).predict(ROWS)) == 2


def test_an_unusable_verify_key_is_named(
    signed: Made, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "not-a-key.pem"
    bad.write_text("hello")
    _trust(monkeypatch, bad)
    with pytest.raises(UnusableKeyError, match=rf"{VERIFY_KEYS_VAR} lists {bad}, which is not a usable"):
        Predictor(signed.bundle)


def test_the_pipeline_checks_bundles_as_its_environment_says(
    signed: Made, unsigned: Made, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a Dagster process the environment's `signing` decides, not the standalone rule."""
    _trust(monkeypatch, keys["new"][1])
    _policy("off")  # keys listed, but this environment does not sign: its own unsigned bundles pass
    assert onnx_bundle.verify_bundle(unsigned.bundle)["version"] == unsigned.stored.version
    assert load_predictor(unsigned.bundle).predict(ROWS)
    _policy("required")
    with pytest.raises(SignatureError, match=r"is not signed .*environment 'prod' \(signing: required\)"):
        onnx_bundle.verify_bundle(unsigned.bundle)
    with pytest.raises(SignatureError, match="is not signed"):
        load_predictor(unsigned.bundle)
    assert isinstance(SignatureError("x"), IntegrityError)
    assert load_predictor(signed.bundle).predict(ROWS)


def test_publishing_a_bundle_keeps_its_signature(signed: Made, keys: Keys, tmp_path: Path) -> None:
    from mlops_dagster.packaging.edge_store import export_bundle

    out = export_bundle(
        signed.bundle,
        tmp_path / "published",
        version=signed.stored.version,
        model_sha256=signed.stored.sha256,
    )
    assert (out / SIGNATURE_FILE).read_bytes() == (signed.bundle / SIGNATURE_FILE).read_bytes()
    assert _verifies_with_model_signing(out, keys["new"][1])


def test_the_names_agree_with_the_registry() -> None:
    from mlops_dagster.packaging import edge_predictor

    assert edge_predictor.SIGNATURE_FILE == signing.SIGNATURE_FILE == onnx_bundle.SIGNATURE_FILE
    assert edge_predictor.VERIFY_KEYS_VAR == signing.VERIFY_KEYS_VAR
    assert edge_predictor.SIGNING_KEY_VAR == signing.SIGNING_KEY_VAR


# --- the bento ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("runtime", ["sklearn", "onnx"])
def test_a_bento_carries_the_signed_model_it_serves(
    signed: Made, keys: Keys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runtime: str
) -> None:
    import bentoml

    _policy("required")
    _trust(monkeypatch, keys["old"][1], keys["new"][1])
    s = signed.stored
    result = build_bento(
        s.pipeline,
        s.version,
        s.sha256,
        onnx_bundle=signed.bundle if runtime == "onnx" else None,
        build_dir=tmp_path / "build",
    )
    assert (result.runtime, result.signed) == (runtime, True)
    assert {pin.split("==")[0] for pin in result.requirements} >= set(SIGNING_DISTRIBUTIONS)
    bento = bentoml.bentos.get(result.tag)
    assert [str(m.tag) for m in bento.info.models] == [result.served_model_tag]
    served = Path(bentoml.models.get(result.served_model_tag).path)  # what `bentoml serve` loads here
    assert _verifies_with_model_signing(served, keys["new"][1])
    # What ships: `bentoml export` (and an image) copies the model's folder, signature included.
    archive = bentoml.bentos.export_bento(result.tag, str(tmp_path / "bento.bento"))
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "exported", filter="data")
    name, version = result.served_model_tag.split(":")
    assert _verifies_with_model_signing(tmp_path / "exported" / "models" / name / version, keys["new"][1])
    config = json.loads((tmp_path / "exported" / "src" / "bento_config.json").read_text())
    assert config["signing_required"] is True


def _service_config(made: Made, *, sha256: str | None = None, required: bool = False) -> dict[str, Any]:
    s = made.stored
    return service_config(made.card, s.pipeline, s.version, sha256 or s.sha256, signing_required=required)


def test_the_service_loads_a_signed_model_and_refuses_a_tampered_one(
    model: Any, keys: Keys, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_model_read: list[str]
) -> None:
    with monkeypatch.context() as mp:
        mp.setenv(SIGNING_KEY_VAR, str(keys["new"][0]))
        mp.setenv(VERIFY_KEYS_VAR, str(keys["new"][1]))
        _policy("required")
        made = _make(model, f"tampered_{uuid.uuid4().hex[:8]}", tmp_path / "bundle")
        activate(None)
    _trust(monkeypatch, keys["old"][1], keys["new"][1])
    assert load_checked_model(_service_config(made)).predict_proba is not None
    no_model_read.clear()
    path = Path(made.stored.path) / MODEL_FILE
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    # Even a config rewritten for the new bytes does not help: the signature refuses the model.
    config = _service_config(made, sha256=hashlib.sha256(bytes(data)).hexdigest())
    with pytest.raises(RuntimeError, match=rf"model {made.stored.tag}: its files do not match the signature"):
        load_checked_model(config)
    assert no_model_read == []


def test_the_service_refuses_a_tampered_bundle(
    signed: Made, keys: Keys, monkeypatch: pytest.MonkeyPatch, no_model_read: list[str]
) -> None:
    import bentoml

    from mlops_dagster.packaging.edge_store import store_bundle_for_bento

    s = signed.stored
    _policy("required")
    _trust(monkeypatch, keys["new"][1])
    stored = store_bundle_for_bento(signed.bundle, s.pipeline, s.version, s.sha256)
    folder = Path(bentoml.models.get(stored["model_tag"]).path)
    onnx = {**stored, "manifest_sha256": hashlib.sha256((folder / "manifest.json").read_bytes()).hexdigest()}
    config = service_config(signed.card, s.pipeline, s.version, s.sha256, onnx=onnx, signing_required=True)
    activate(None)  # the service runs with no environment
    assert load_checked_bundle(config).predict(ROWS)
    no_model_read.clear()
    readme = folder / onnx_bundle.README_FILE  # any covered file: the README, even
    original = readme.read_bytes()
    readme.write_bytes(original + b"#")
    try:
        with pytest.raises(RuntimeError, match=r"do not match the signature.*refusing to serve it"):
            load_checked_bundle(config)
    finally:
        readme.write_bytes(original)
    assert no_model_read == []


def test_the_service_follows_the_policy_for_an_unsigned_model(
    unsigned: Made, keys: Keys, monkeypatch: pytest.MonkeyPatch, no_model_read: list[str]
) -> None:
    assert load_checked_model(_service_config(unsigned)) is not None  # no keys, not required: as before
    no_model_read.clear()
    with pytest.raises(RuntimeError, match=rf"model {unsigned.stored.tag} is not signed .*its build"):
        load_checked_model(_service_config(unsigned, required=True))
    monkeypatch.setenv(SIGNING_VAR, "required")
    with pytest.raises(RuntimeError, match=rf"is not signed .*{SIGNING_VAR}=required refuses"):
        load_checked_model(_service_config(unsigned))
    monkeypatch.delenv(SIGNING_VAR)
    _trust(monkeypatch, keys["new"][1])
    with pytest.raises(RuntimeError, match=rf"is not signed .*a loader with {VERIFY_KEYS_VAR} set refuses"):
        load_checked_model(_service_config(unsigned))
    assert no_model_read == []


# --- served ------------------------------------------------------------------------------------------------


def _serve(tag: str, log: Path, *, refused: str = "", timeout: float = 90.0) -> tuple[bool, str]:
    """Start `bentoml serve <tag>` with this process's environment; whether it became ready, and its log.

    Waits until it is ready, exits, logs `refused` (a worker that refuses its model is restarted, the
    server stays up but never ready) or `timeout` passes; stops it (its whole process group) then.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    cmd = [sys.executable, "-m", "bentoml", "serve", tag, "--host", "127.0.0.1", "--port", str(port)]
    env = {**os.environ, "BENTOML_DO_NOT_TRACK": "true", "DO_NOT_TRACK": "1", "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    ready = False
    try:
        deadline = time.monotonic() + timeout
        while not ready and proc.poll() is None and time.monotonic() < deadline:
            if refused and refused in log.read_text(errors="replace"):
                break
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
                    ready = resp.status == 200
            except OSError:
                time.sleep(0.25)
    finally:
        for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
            try:
                os.killpg(proc.pid, sig)
                proc.wait(timeout=wait)
                break
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue
    return ready, log.read_text(errors="replace")


def test_a_served_bento_refuses_a_tampered_model(
    model: Any, keys: Keys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as mp:
        mp.setenv(SIGNING_KEY_VAR, str(keys["new"][0]))
        mp.setenv(VERIFY_KEYS_VAR, str(keys["new"][1]))
        _policy("required")
        made = _make(model, f"served_{uuid.uuid4().hex[:8]}", tmp_path / "bundle")
        s = made.stored
        result = build_bento(s.pipeline, s.version, s.sha256, build_dir=tmp_path / "build")
        activate(None)
    _trust(monkeypatch, keys["old"][1], keys["new"][1])
    ready, log = _serve(result.tag, tmp_path / "good.log")
    assert ready, log[-4000:]
    path = Path(s.path) / MODEL_FILE
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    refusal = f"model {s.tag}: its files do not match the signature"
    ready, log = _serve(result.tag, tmp_path / "tampered.log", refused=refusal)
    assert not ready
    assert refusal in log, log[-4000:]
