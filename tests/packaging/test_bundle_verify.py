"""The edge bundle is checked whole before any of it is used, and its predictor refuses non-finite numbers.

One small logistic-regression bundle is written per module; each test tampers with its own copy.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlops_dagster.errors import IntegrityError
from mlops_dagster.packaging import check_parity, convert_to_onnx, load_predictor, verify_bundle, write_bundle
from mlops_dagster.packaging.edge_predictor import BundleIntegrityError, Predictor, load_verified_predictor
from mlops_dagster.registry.store import serialize, sha256_hex
from mlops_dagster.spec.models import PipelineSpec
from mlops_dagster.training.train import holdout_for, train_candidate

FEATURES = ["tenure", "charges", "plan"]
Trained = tuple[Any, pd.DataFrame, dict[str, str], str]  # model, holdout, feature schema, model sha256


@pytest.fixture(scope="module")
def trained() -> Trained:
    rng = np.random.default_rng(3)
    n = 200
    data = pd.DataFrame(
        {
            "id": np.arange(n),
            "ts": pd.date_range("2026-01-01", periods=n, freq="h"),
            "tenure": rng.integers(0, 100, n).astype(np.int64),
            "charges": rng.uniform(10.0, 90.0, n),
            "plan": rng.choice(np.array(["basic", "pro", None], dtype=object), n),
        }
    )
    data["churned"] = ((data["charges"] > 50) ^ (data["plan"] == "pro")).astype(np.int64)
    spec = PipelineSpec.model_validate(
        {
            "name": "verify_edge",
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
    return (
        result.model,
        holdout_for(data, "ts", result.cutoff),
        result.schema,
        sha256_hex(serialize(result.model)),
    )


@pytest.fixture(scope="module")
def original(trained: Trained, tmp_path_factory: pytest.TempPathFactory) -> Path:
    model, _, schema, digest = trained
    return write_bundle(
        tmp_path_factory.mktemp("verify") / "bundle",
        convert_to_onnx(model, schema, "classification"),
        pipeline="verify_edge",
        version=digest[:32],
        model_sha256=digest,
        features=FEATURES,
        feature_schema=schema,
        task="classification",
        classes=model.classes_,
    )


@pytest.fixture
def bundle(original: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "bundle"
    shutil.copytree(original, copy)
    return copy


def _append_marker(bundle: Path, marker: Path) -> None:
    """What an attacker with write access to the store does: one line more in predictor.py."""
    with (bundle / "predictor.py").open("a") as f:
        f.write(f"\nimport pathlib; pathlib.Path({str(marker)!r}).write_text('ran')\n")


def _rehash_manifest(bundle: Path) -> None:
    """...and, to pass a check against the manifest alone, the manifest rewritten to match."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"]["predictor.py"] = hashlib.sha256((bundle / "predictor.py").read_bytes()).hexdigest()
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def test_a_tampered_predictor_never_runs(bundle: Path, trained: Trained, tmp_path: Path) -> None:
    model, holdout, _, _ = trained
    recorded = hashlib.sha256((bundle / "manifest.json").read_bytes()).hexdigest()
    marker = tmp_path / "marker"
    _append_marker(bundle, marker)
    with pytest.raises(BundleIntegrityError, match=r"sha256 of .*predictor\.py is .*refusing the bundle"):
        load_verified_predictor(bundle)
    with pytest.raises(IntegrityError, match=r"predictor\.py"):
        load_predictor(bundle)
    with pytest.raises(IntegrityError, match=r"predictor\.py"):
        check_parity(model, bundle, holdout, FEATURES, "classification")
    _rehash_manifest(bundle)  # a consistent bundle now: only the recorded manifest hash tells
    with pytest.raises(BundleIntegrityError, match=r"sha256 of .*manifest\.json is .*recorded with"):
        load_verified_predictor(bundle, manifest_sha256=recorded)
    assert not marker.exists()


def test_the_checked_bytes_are_the_ones_that_run(original: Path) -> None:
    predictor = load_verified_predictor(
        original, manifest_sha256=hashlib.sha256((original / "manifest.json").read_bytes()).hexdigest()
    )
    assert type(predictor).__module__.startswith("_mlops_edge_predictor_")  # the bundle's own class
    assert predictor.predict({"tenure": 3, "charges": 70.0, "plan": "basic"}) in ([0], [1])
    assert not (original / "__pycache__").exists()  # nothing was imported from the folder


@pytest.mark.parametrize("name", ["numpy.py", "sitecustomize.py", "notes.txt"])
def test_a_file_the_manifest_does_not_name_is_refused(name: str, bundle: Path) -> None:
    (bundle / name).write_text("print('hello')\n")
    with pytest.raises(BundleIntegrityError, match=f"bundle file .*{name} is not named in manifest.json"):
        Predictor(bundle)
    with pytest.raises(IntegrityError, match=name):
        verify_bundle(bundle)
    with pytest.raises(BundleIntegrityError, match=name):
        load_verified_predictor(bundle)


def test_python_cache_and_bentoml_record_are_tolerated(bundle: Path) -> None:
    (bundle / "__pycache__").mkdir()
    (bundle / "__pycache__" / "predictor.cpython-311.pyc").write_bytes(b"\0")
    (bundle / "model.yaml").write_text("name: verify_edge_edge\n")
    assert Predictor(bundle).predict({}) in ([0], [1])
    assert verify_bundle(bundle)["pipeline"] == "verify_edge"


def test_the_bundle_must_package_the_expected_model(bundle: Path) -> None:
    manifest = verify_bundle(bundle)
    assert Predictor(bundle, model_sha256=manifest["model_sha256"], version=manifest["version"]).features
    with pytest.raises(BundleIntegrityError, match="model_sha256 is .*expected '0000"):
        Predictor(bundle, model_sha256="0" * 64)
    with pytest.raises(IntegrityError, match="version is .*expected 'v0'"):
        verify_bundle(bundle, version="v0")


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
@pytest.mark.parametrize("value", [math.inf, -math.inf, 1e39, np.float64(-1e300)])
def test_infinite_or_too_large_numbers_are_refused_naming_the_feature(original: Path, value: Any) -> None:
    predictor = Predictor(original)
    good = {"tenure": 3, "charges": 70.0, "plan": "basic"}
    with pytest.raises(ValueError, match=r"^numeric feature 'charges' is .*only finite numbers"):
        predictor.predict({**good, "charges": value})
    with pytest.raises(ValueError, match=r"^row 1, numeric feature 'tenure' is "):
        predictor.predict_proba([good, {**good, "tenure": value}])
    # NaN and None stay what they always were: a missing value, imputed as in training.
    assert predictor.predict([{**good, "charges": math.nan}, {**good, "charges": None}]) in (
        [0, 0],
        [0, 1],
        [1, 0],
        [1, 1],
    )


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e309"])
def test_the_command_line_refuses_non_finite_json_naming_the_field(original: Path, literal: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSTARTUP")}
    rows = f'[{{"tenure": 3, "charges": 1, "plan": null}}, {{"tenure": 3, "charges": {literal}}}]'
    proc = subprocess.run(
        [sys.executable, "-I", "-B", str(original / "predictor.py"), "-"],
        input=rows,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert f"row 1, field 'charges': {literal} is not a finite number" in proc.stderr
    assert proc.stdout == ""
