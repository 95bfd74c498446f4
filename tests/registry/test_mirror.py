"""The model store follows the environment's storage: a version saved by one process (pod) is found by
another with an empty BentoML store, through `<storage root>/models/<pipeline>/<version>/`.

BentoML reads `$BENTOML_HOME` once per process, so the reading side is a subprocess with a fresh
BENTOML_HOME; the storage root (the environment's) is the same. The mirror is checked against its
manifest before anything is unpickled or stored: a changed byte or a missing manifest is refused.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlops_dagster.environments import ActiveEnvironment, activate
from mlops_dagster.io.parquet import default_storage_root
from mlops_dagster.registry.mirror import MANIFEST, mirror_path
from mlops_dagster.registry.store import MODEL_FILE, StoredVersion, save_version, sha256_hex
from mlops_dagster.spec.environments import EnvironmentSpec
from tests.s3_server import LocalS3, local_s3, moto_server

ROOT = Path(__file__).resolve().parents[2]
PROFILE = "drift_profile.json"

# Run in a process with its own BENTOML_HOME: activate the environment, then load the version.
READER = """
import json, sys
from mlops_dagster.environments import ActiveEnvironment, activate
from mlops_dagster.spec.environments import EnvironmentSpec
pipeline, version, sha256, storage = sys.argv[1:5]
if storage:
    activate(ActiveEnvironment("mirrored", EnvironmentSpec(name="mirrored", storage=storage)))
from mlops_dagster.errors import MlopsDagsterError
from mlops_dagster.registry.store import load_version, read_card, read_file, _get
import numpy as np
try:
    model = load_version(pipeline, version, sha256)
except MlopsDagsterError as e:
    print(json.dumps({"error": type(e).__name__, "message": str(e),
                      "stored": _get(f"{pipeline}:{version}") is not None}))
    sys.exit(0)
X = np.linspace(-2, 2, 40).reshape(10, 4)
print(json.dumps({
    "proba": model.predict_proba(X).tolist(),
    "card_version": read_card(pipeline, version)["version"],
    "profile": read_file(pipeline, version, "drift_profile.json").decode(),
    "stored": _get(f"{pipeline}:{version}") is not None,
}))
"""


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
        extra_files={PROFILE: json.dumps({"columns": ["a"], "pipeline": pipeline}).encode()},
    )


def _read_elsewhere(stored: StoredVersion, bentoml_home: Path, storage: str = "") -> dict[str, Any]:
    """Load `stored` in a fresh process whose BentoML store is `bentoml_home` (empty)."""
    env = {**os.environ, "BENTOML_HOME": str(bentoml_home), "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", READER, stored.pipeline, stored.version, stored.sha256, storage],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def _store_of(bentoml_home: Path, stored: StoredVersion) -> list[str]:
    folder = bentoml_home / "models" / stored.pipeline
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.fixture
def pipeline(storage: Path) -> str:
    return f"mirror_{uuid.uuid4().hex[:8]}"


def test_a_saved_version_is_mirrored_under_the_storage_root(pipeline: str, storage: Path) -> None:
    stored = _save(pipeline)
    folder = Path(default_storage_root()) / "models" / pipeline / stored.version
    assert folder == Path(str(mirror_path(pipeline, stored.version)))
    assert folder.is_relative_to(storage)  # the embedded default root: $DAGSTER_HOME/mlops
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["pipeline"] == pipeline and manifest["sha256"] == stored.sha256
    assert set(manifest["files"]) == {MODEL_FILE, "model_card.json", "model_card.md", PROFILE}
    assert sorted(p.name for p in folder.iterdir()) == sorted([*manifest["files"], MANIFEST])
    for name, digest in manifest["files"].items():
        assert sha256_hex((folder / name).read_bytes()) == digest, name
        assert (folder / name).read_bytes() == (Path(stored.path) / name).read_bytes(), name


def test_another_process_with_an_empty_store_loads_through_the_mirror(pipeline: str, tmp_path: Path) -> None:
    stored = _save(pipeline)
    fresh = tmp_path / "other-pod-bentoml"
    assert _store_of(fresh, stored) == []
    got = _read_elsewhere(stored, fresh)
    assert "error" not in got, got
    X = np.linspace(-2, 2, 40).reshape(10, 4)
    assert np.allclose(got["proba"], _model().predict_proba(X))
    assert got["card_version"] == stored.version
    assert json.loads(got["profile"])["pipeline"] == pipeline
    assert stored.version in _store_of(fresh, stored)  # imported into that process's local store
    assert _read_elsewhere(stored, fresh)["stored"]  # and found there the next time


@pytest.mark.parametrize("name", [MODEL_FILE, PROFILE])
def test_a_tampered_mirror_is_refused_before_anything_is_stored(
    pipeline: str, tmp_path: Path, name: str
) -> None:
    stored = _save(pipeline)
    target = Path(str(mirror_path(pipeline, stored.version))) / name
    data = target.read_bytes()
    target.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    fresh = tmp_path / "fresh-bentoml"
    got = _read_elsewhere(stored, fresh)
    assert got["error"] == "IntegrityError", got
    assert f"sha256 of {name} is" in got["message"] and "model mirror" in got["message"]
    assert not got["stored"] and _store_of(fresh, stored) == []


def test_a_partial_mirror_is_not_a_version(pipeline: str, tmp_path: Path) -> None:
    stored = _save(pipeline)
    folder = Path(str(mirror_path(pipeline, stored.version)))
    (folder / MANIFEST).unlink()  # as if the writer died before its last file
    got = _read_elsewhere(stored, tmp_path / "fresh-bentoml")
    assert got["error"] == "RegistryError", got
    assert "not in the BentoML model store nor in the model mirror" in got["message"]
    assert str(folder) in got["message"]
    # saving again (the version is still in this process's store) writes the mirror whole again
    assert _save(pipeline) == stored
    assert (folder / MANIFEST).is_file()
    assert "error" not in _read_elsewhere(stored, tmp_path / "fresh-bentoml-2")


def test_an_unlisted_file_in_the_mirror_is_refused(pipeline: str, tmp_path: Path) -> None:
    stored = _save(pipeline)
    folder = Path(str(mirror_path(pipeline, stored.version)))
    (folder / "extra.pkl").write_bytes(b"not listed")
    got = _read_elsewhere(stored, tmp_path / "fresh-bentoml")
    assert got["error"] == "IntegrityError" and "extra.pkl is not listed in manifest.json" in got["message"]


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def s3(s3_endpoint: str, storage: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[LocalS3]:
    with local_s3(s3_endpoint, monkeypatch, tmp_path) as server:
        yield server


def test_an_s3_mirror_serves_a_process_with_an_empty_store(
    s3: LocalS3, pipeline: str, storage: Path, tmp_path: Path
) -> None:
    bucket = s3.new_bucket()
    root = f"s3://{bucket}/prod"
    activate(ActiveEnvironment("mirrored", EnvironmentSpec(name="mirrored", storage=root)))
    stored = _save(pipeline)
    prefix = f"prod/models/{pipeline}/{stored.version}/"
    assert s3.keys(bucket, prefix) == sorted(
        prefix + n for n in (MANIFEST, MODEL_FILE, "model_card.json", "model_card.md", PROFILE)
    )
    assert not (storage / "mlops").exists()  # nothing under the embedded default root

    fresh = tmp_path / "fresh-bentoml"
    got = _read_elsewhere(stored, fresh, root)
    assert "error" not in got, got
    assert got["card_version"] == stored.version and stored.version in _store_of(fresh, stored)

    # a changed byte in the bucket is refused by a process that has not stored the version yet
    key = prefix + MODEL_FILE
    data = s3.client.get_object(Bucket=bucket, Key=key)["Body"].read()
    s3.client.put_object(Bucket=bucket, Key=key, Body=data[:-1] + bytes([data[-1] ^ 1]))
    other = tmp_path / "another-bentoml"
    got = _read_elsewhere(stored, other, root)
    assert got["error"] == "IntegrityError" and f"sha256 of {MODEL_FILE} is" in got["message"]
    assert f"s3://{bucket}/{prefix.rstrip('/')}" in got["message"]
    assert _store_of(other, stored) == []
