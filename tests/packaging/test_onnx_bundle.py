"""The edge bundle: champion -> ONNX -> self-contained folder -> parity -> BentoML store.

The champions are trained the way the candidate asset trains them (`train_candidate` from a spec) on a
small demo-like frame: numeric columns with NaN, text columns with None (and a NaN in an object column).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlops_dagster.errors import IntegrityError, PackagingError
from mlops_dagster.packaging import (
    check_parity,
    convert_to_onnx,
    load_predictor,
    store_bundle_in_bentoml,
    verify_bundle,
    write_bundle,
)
from mlops_dagster.packaging.edge_predictor import BundleIntegrityError, Predictor
from mlops_dagster.registry.store import load_version, read_card, save_version, serialize, sha256_hex
from mlops_dagster.spec.models import PipelineSpec
from mlops_dagster.training.train import holdout_for, prepare_frame, train_candidate

FEATURES = ["tenure_months", "monthly_charges", "support_calls", "plan", "region"]
BUNDLE_FILES = ["README.txt", "manifest.json", "model.onnx", "predictor.py"]
CASES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "hgb": (
        "classification",
        "sklearn.ensemble.HistGradientBoostingClassifier",
        {"max_iter": 40, "random_state": 0},
    ),
    "logreg": ("classification", "sklearn.linear_model.LogisticRegression", {"max_iter": 2000}),
    "ridge": ("regression", "sklearn.linear_model.Ridge", {"alpha": 1.0}),
    "hgb_regressor": (
        "regression",
        "sklearn.ensemble.HistGradientBoostingRegressor",
        {"max_iter": 40, "random_state": 0},
    ),
    # 20 trees vote 10:10 on some rows: ties that float32 may break the other way.
    "forest": (
        "classification",
        "sklearn.ensemble.RandomForestClassifier",
        {"n_estimators": 20, "random_state": 0},
    ),
}


def _dataset(n: int = 480) -> pd.DataFrame:
    rng = np.random.default_rng(11)
    df = pd.DataFrame(
        {
            "customer_id": np.arange(n),
            "event_time": pd.date_range("2026-01-01", periods=n, freq="h"),
            "tenure_months": rng.integers(0, 120, n).astype(np.int64),
            "monthly_charges": rng.uniform(20.0, 150.0, n),
            "support_calls": rng.poisson(1.5, n).astype(np.int64),
            "plan": rng.choice(np.array(["basic", "standard", "premium", None], dtype=object), n),
            "region": rng.choice(np.array(["north", "south", "east", "west"], dtype=object), n),
        }
    )
    df.loc[::13, "monthly_charges"] = np.nan
    df.loc[5::41, "region"] = np.nan  # NaN in an object column: prepare_frame makes it None
    score = (
        0.02 * df["monthly_charges"].fillna(80)
        - 0.03 * df["tenure_months"]
        + 0.5 * df["support_calls"]
        + (df["plan"] == "basic") * 1.0
        + rng.normal(0, 0.7, n)
    )
    df["churned"] = (score > score.median()).astype(np.int64)
    df["units"] = (
        40 - 0.5 * df["monthly_charges"].fillna(80) + 3 * (df["plan"] == "premium") + rng.normal(0, 2, n)
    ).round(1)
    return df


@dataclass(frozen=True)
class Packaged:
    case: str
    task: str
    model: Any
    schema: dict[str, str]
    holdout: pd.DataFrame
    onnx: bytes
    bundle: Path


def _spec(name: str, task: str, estimator: str, params: dict[str, Any]) -> PipelineSpec:
    return PipelineSpec.model_validate(
        {
            "name": name,
            "dataset": {
                "source": {"uri": "x.parquet"},
                "entity": "customer_id",
                "timestamp": "event_time",
                "label": "churned" if task == "classification" else "units",
            },
            "model": {
                "task": task,
                "estimator": estimator,
                "params": params,
                "metric": "roc_auc" if task == "classification" else "r2",
            },
        }
    )


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return _dataset()


@pytest.fixture(scope="module")
def package(data: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Packaged]:
    """Train, convert and bundle one case, once per module."""
    root = tmp_path_factory.mktemp("bundles")

    @cache
    def build(case: str) -> Packaged:
        task, estimator, params = CASES[case]
        spec = _spec(f"edge_{case}", task, estimator, params)
        result = train_candidate(spec, data, FEATURES)
        onnx_bytes = convert_to_onnx(result.model, result.schema, task)
        digest = sha256_hex(serialize(result.model))
        bundle = write_bundle(
            root / case,
            onnx_bytes,
            pipeline=spec.name,
            version=digest[:32],
            model_sha256=digest,
            features=result.features,
            feature_schema=result.schema,
            task=task,
            classes=getattr(result.model, "classes_", None),
        )
        holdout = holdout_for(data, "event_time", result.cutoff)
        return Packaged(case, task, result.model, result.schema, holdout, onnx_bytes, bundle)

    return build


def _champion_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    spec = _spec("x", "classification", "sklearn.linear_model.LogisticRegression", {})
    frame = pd.DataFrame(rows, columns=FEATURES).assign(churned=0)
    frame["monthly_charges"] = frame["monthly_charges"].astype("float64")
    frame["tenure_months"] = frame["tenure_months"].astype("float64")
    frame["support_calls"] = frame["support_calls"].astype("float64")
    return prepare_frame(spec, frame, FEATURES)[0]


@pytest.mark.parametrize("case", sorted(CASES))
def test_bundle_predicts_what_the_champion_predicts(case: str, package: Callable[[str], Packaged]) -> None:
    if "hgb" in case:
        import google.protobuf

        major = int(google.protobuf.__version__.split(".")[0])
        assert major < 7, (
            f"protobuf {google.protobuf.__version__} is installed: skl2onnx's HistGradientBoosting "
            "conversion breaks with protobuf 7; keep the pin protobuf<7"
        )
    packaged = package(case)
    result = check_parity(packaged.model, packaged.bundle, packaged.holdout, FEATURES, packaged.task)
    print(f"{case}: {result}")
    assert result.passed, result
    assert result.n_rows == len(packaged.holdout) > 50
    if packaged.task == "classification":
        assert result.label_agreement is not None and result.label_agreement >= 0.999
        assert result.max_proba_diff is not None and result.max_proba_diff <= 1e-4
        assert result.details["classes_match"] is True
    else:
        assert result.max_rel_err is not None and result.max_rel_err <= 1e-5
    json.dumps(result.as_dict())  # metadata-ready


def test_parity_fails_for_a_bundle_of_another_model(package: Callable[[str], Packaged]) -> None:
    hgb, logreg = package("hgb"), package("logreg")
    result = check_parity(hgb.model, logreg.bundle, hgb.holdout, FEATURES, "classification")
    assert not result.passed
    assert result.max_proba_diff is not None and result.max_proba_diff > 1e-2
    assert result.details["proba_mismatch_rows"]


def test_manifest_describes_the_bundle(package: Callable[[str], Packaged]) -> None:
    packaged = package("hgb")
    files = sorted(p.name for p in packaged.bundle.iterdir())
    assert files == BUNDLE_FILES
    manifest = json.loads((packaged.bundle / "manifest.json").read_text())
    assert manifest["features"] == FEATURES
    assert manifest["task"] == "classification"
    assert manifest["classes"] == [0, 1]
    assert [(i["name"], i["type"], i["shape"], i["missing"]) for i in manifest["inputs"]] == [
        ("tenure_months", "float", [None, 1], "NaN"),
        ("monthly_charges", "float", [None, 1], "NaN"),
        ("support_calls", "float", [None, 1], "NaN"),
        ("plan", "string", [None, 1], ""),
        ("region", "string", [None, 1], ""),
    ]
    assert [(o["name"], o["role"]) for o in manifest["outputs"]] == [
        ("label", "prediction"),
        ("probabilities", "probabilities"),
    ]
    assert manifest["model_sha256"] == sha256_hex(serialize(packaged.model))
    assert manifest["version"] == manifest["model_sha256"][:32]
    assert manifest["opset"]["ai.onnx"] <= 17 and manifest["opset"]["ai.onnx.ml"] <= 3  # old runtimes load it
    assert manifest["files"] == {
        name: sha256_hex((packaged.bundle / name).read_bytes())
        for name in BUNDLE_FILES
        if name != "manifest.json"
    }
    assert len((packaged.bundle / "README.txt").read_text().splitlines()) == 5
    assert verify_bundle(packaged.bundle) == manifest


def test_conversion_is_deterministic_and_rewriting_a_bundle_is_atomic(
    package: Callable[[str], Packaged], tmp_path: Path
) -> None:
    packaged = package("logreg")
    assert convert_to_onnx(packaged.model, packaged.schema, "classification") == packaged.onnx
    manifest = json.loads((packaged.bundle / "manifest.json").read_text())
    kwargs = {k: manifest[k] for k in ("pipeline", "version", "model_sha256", "features", "task", "classes")}
    target = tmp_path / "out" / "bundle"
    first = write_bundle(target, packaged.onnx, feature_schema=packaged.schema, **kwargs)
    before = (first / "manifest.json").stat().st_mtime_ns
    assert write_bundle(target, packaged.onnx, feature_schema=packaged.schema, **kwargs) == target
    assert (target / "manifest.json").stat().st_mtime_ns == before  # the same bundle is kept, not rewritten
    other = package("hgb")
    hgb_manifest = json.loads((other.bundle / "manifest.json").read_text())
    kwargs = {
        k: hgb_manifest[k] for k in ("pipeline", "version", "model_sha256", "features", "task", "classes")
    }
    write_bundle(target, other.onnx, feature_schema=other.schema, **kwargs)  # another bundle replaces it
    assert verify_bundle(target)["pipeline"] == "edge_hgb"
    assert sorted(p.name for p in target.parent.iterdir()) == ["bundle"]  # no temp or old folder left


def test_predictor_handles_missing_unknown_and_extra_values(package: Callable[[str], Packaged]) -> None:
    packaged = package("hgb")
    predictor = Predictor(packaged.bundle)
    rows: list[dict[str, Any]] = [
        {},  # every value missing
        {"tenure_months": 3, "monthly_charges": None, "support_calls": 4, "plan": None, "region": "nowhere"},
        {"tenure_months": 80, "monthly_charges": float("nan"), "plan": "premium", "region": float("nan")},
        {
            "tenure_months": 12,
            "monthly_charges": 99.5,
            "support_calls": 0,
            "plan": "basic",
            "extra": "ignored",
        },
    ]
    expected = packaged.model.predict_proba(_champion_frame(rows))
    np.testing.assert_allclose(predictor.predict_proba(rows), expected, atol=1e-5)
    assert predictor.predict(rows) == packaged.model.predict(_champion_frame(rows)).tolist()
    for row, proba in zip(rows, expected, strict=True):  # the one-row path gives the batch's answer
        np.testing.assert_allclose(predictor.predict_proba(row)[0], proba, atol=1e-5)
    assert predictor.predict([]) == []
    with pytest.raises(ValueError, match="numeric features"):
        predictor.predict({"tenure_months": "many"})
    regression = Predictor(package("ridge").bundle)
    with pytest.raises(ValueError, match="classification"):
        regression.predict_proba({})
    assert isinstance(regression.predict({})[0], float)


def _isolated_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSTARTUP")}
    return env


def test_predictor_runs_isolated_without_sklearn_or_pandas(package: Callable[[str], Packaged]) -> None:
    packaged = package("hgb")
    device = packaged.bundle.parent / "device_copy"
    shutil.copytree(packaged.bundle, device)  # a bundle stands alone wherever it is copied
    frame = prepare_frame(_spec("x", "classification", "x.y", {}), packaged.holdout.head(20), FEATURES)[0]
    rows = [
        {k: (None if v is None or (isinstance(v, float) and np.isnan(v)) else v) for k, v in row.items()}
        for row in frame.astype(object).to_dict(orient="records")
    ]
    script = (
        "import json, sys\n"
        f"sys.path.insert(0, {str(device)!r})\n"
        "from predictor import Predictor\n"
        f"p = Predictor({str(device)!r})\n"
        "rows = json.loads(sys.stdin.read())\n"
        "out = {'labels': p.predict(rows), 'proba': p.predict_proba(rows), 'one': p.predict(rows[0])}\n"
        "out['loaded'] = sorted({m.split('.')[0] for m in sys.modules} & "
        "{'sklearn', 'pandas', 'scipy', 'skl2onnx', 'mlops_dagster', 'bentoml'})\n"
        "print(json.dumps(out))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-I", "-c", script],
        input=json.dumps(rows),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=device.parent,
        env=_isolated_env(),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["loaded"] == []
    assert out["labels"] == packaged.model.predict(frame).tolist()
    assert out["one"] == out["labels"][:1]
    np.testing.assert_allclose(out["proba"], packaged.model.predict_proba(frame), atol=1e-5)

    cli = subprocess.run(
        [sys.executable, "-I", str(device / "predictor.py"), "-"],
        input=json.dumps(rows[:3]),
        capture_output=True,
        text=True,
        timeout=120,
        env=_isolated_env(),
    )
    assert cli.returncode == 0, cli.stderr[-3000:]
    lines = [json.loads(line) for line in cli.stdout.splitlines()]
    assert [line["prediction"] for line in lines] == out["labels"][:3]


@pytest.mark.parametrize("name", ["model.onnx", "predictor.py", "README.txt", "manifest.json", "missing"])
def test_a_tampered_bundle_is_refused(name: str, package: Callable[[str], Packaged], tmp_path: Path) -> None:
    packaged = package("logreg")
    bundle = tmp_path / "bundle"
    shutil.copytree(packaged.bundle, bundle)
    if name == "manifest.json":  # a manifest edited to point at other bytes
        manifest = json.loads((bundle / name).read_text())
        manifest["files"]["model.onnx"] = "0" * 64
        (bundle / name).write_text(json.dumps(manifest))
    elif name == "missing":
        (bundle / "README.txt").unlink()
    else:
        data = bytearray((bundle / name).read_bytes())
        data[len(data) // 2] ^= 0x01
        (bundle / name).write_bytes(bytes(data))
    with pytest.raises(BundleIntegrityError, match="refusing|missing"):
        Predictor(bundle)
    with pytest.raises(IntegrityError):
        verify_bundle(bundle)
    with pytest.raises(IntegrityError):
        load_predictor(bundle)
    with pytest.raises(IntegrityError):
        check_parity(packaged.model, bundle, packaged.holdout, FEATURES, "classification")


class MajorityClassifier:
    """A hand-written estimator: no ONNX converter exists for it."""

    def fit(self, X: Any, y: Any) -> MajorityClassifier:
        self.classes_ = np.unique(y)
        return self

    def predict(self, X: Any) -> Any:
        return np.full(len(X), self.classes_[0])

    def predict_proba(self, X: Any) -> Any:
        return np.tile([1.0, 0.0], (len(X), 1))


def test_an_estimator_without_converter_is_named(package: Callable[[str], Packaged]) -> None:
    packaged = package("logreg")
    model = packaged.model.__class__(
        [
            ("prepare", packaged.model.named_steps["prepare"]),
            ("model", MajorityClassifier().fit(None, [0, 1])),
        ]
    )
    with pytest.raises(PackagingError) as info:
        convert_to_onnx(model, packaged.schema, "classification")
    message = str(info.value)
    assert "MajorityClassifier" in message
    assert "HistGradientBoostingClassifier" in message and "LogisticRegression" in message
    with pytest.raises(PackagingError, match="task"):
        convert_to_onnx(packaged.model, packaged.schema, "ranking")


def test_store_round_trip_through_bentoml(data: pd.DataFrame, tmp_path: Path) -> None:
    import bentoml

    pipeline = "edge_roundtrip"
    task, estimator, params = CASES["hgb"]
    result = train_candidate(_spec(pipeline, task, estimator, params), data, FEATURES)
    stored = save_version(
        pipeline,
        result.model,
        {"features": result.features, "feature_schema": result.schema, "task": task},
        "# {version}",
    )
    # What the edge asset does: champion from the registry -> ONNX -> bundle -> parity -> store.
    card = read_card(pipeline, stored.version)
    champion = load_version(pipeline, stored.version, stored.sha256)
    onnx_bytes = convert_to_onnx(champion, card["feature_schema"], card["task"])
    bundle = write_bundle(
        tmp_path / "bundle",
        onnx_bytes,
        pipeline=pipeline,
        version=card["version"],
        model_sha256=card["sha256"],
        features=card["features"],
        feature_schema=card["feature_schema"],
        task=card["task"],
        classes=champion.classes_,
    )
    holdout = holdout_for(data, "event_time", result.cutoff)
    assert check_parity(champion, bundle, holdout, card["features"], card["task"]).passed

    tag = store_bundle_in_bentoml(bundle, pipeline, stored.version)
    assert tag == f"{pipeline}_edge:{stored.version}"
    model = bentoml.models.get(tag)
    assert model.info.labels["mlops_sha256"] == stored.sha256
    assert model.info.labels["target"] == "edge"
    assert model.info.metadata["onnx_sha256"] == sha256_hex(onnx_bytes)
    assert sorted(p.name for p in Path(model.path).iterdir() if p.name in BUNDLE_FILES) == BUNDLE_FILES
    rows = holdout[FEATURES].head(5).astype(object).where(holdout[FEATURES].head(5).notna(), None)
    records = rows.to_dict(orient="records")
    assert Predictor(model.path).predict(records) == Predictor(bundle).predict(records)

    assert store_bundle_in_bentoml(bundle, pipeline, stored.version) == tag  # idempotent
    assert bentoml.models.get(tag).info.creation_time == model.info.creation_time
    with pytest.raises(PackagingError, match="not"):
        store_bundle_in_bentoml(bundle, pipeline, "0" * 32)
    stored_readme = Path(model.path) / "README.txt"
    stored_readme.write_text("tampered\n")
    with pytest.raises(IntegrityError):
        store_bundle_in_bentoml(bundle, pipeline, stored.version)


def test_importing_the_packaging_modules_loads_no_ml_library() -> None:
    code = (
        "import sys, mlops_dagster.packaging.onnx_bundle, mlops_dagster.packaging.parity\n"
        "import mlops_dagster.packaging.edge_predictor\n"
        "heavy = {'skl2onnx', 'onnx', 'onnxruntime', 'sklearn', 'bentoml'}\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & heavy))\n"
    )
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        env=_isolated_env(),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"
