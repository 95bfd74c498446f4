"""The champion as an edge bundle: ONNX model, manifest, standalone predictor, hash-checked.

`convert_to_onnx` turns the fitted sklearn pipeline into ONNX (one input per feature column),
`write_bundle` writes the self-contained folder atomically, `check_parity` (parity.py) compares it with
the champion, and `edge_store.store_bundle_in_bentoml` keeps it in the BentoML store as `<pipeline>_edge`.
With signing on (the environment's `signing`, `registry.signing`) the bundle is signed when it is
written (`model.sig`, over every other file, the manifest included), and every check here checks the
signature too, as the environment says.
skl2onnx, onnx, sklearn and bentoml are imported inside the functions that use them.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from mlops_dagster.errors import IntegrityError, PackagingError
from mlops_dagster.io.storage import replace_local_folder

MODEL_FILE = "model.onnx"
MANIFEST_FILE = "manifest.json"
PREDICTOR_FILE = "predictor.py"
README_FILE = "README.txt"
SIGNATURE_FILE = "model.sig"  # as edge_predictor.SIGNATURE_FILE and registry.signing.SIGNATURE_FILE
# Opset 17 with ai.onnx.ml 3 loads in onnxruntime 1.13 and later: old runtimes on devices keep working.
TARGET_OPSET: dict[str, int] = {"": 17, "ai.onnx.ml": 3}
# Covered by tests/packaging/test_onnx_bundle.py; most other sklearn estimators convert too.
EDGE_ESTIMATORS = (
    "GradientBoostingClassifier",
    "GradientBoostingRegressor",
    "HistGradientBoostingClassifier",
    "HistGradientBoostingRegressor",
    "LinearRegression",
    "LogisticRegression",
    "RandomForestClassifier",
    "RandomForestRegressor",
    "Ridge",
)
_TASKS = ("classification", "regression")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def text_columns(feature_schema: Mapping[str, str]) -> list[str]:
    """The columns fed as strings: everything but non-bool numbers, the split `_pipeline` trains with."""
    import pandas as pd

    def numeric(dtype: str) -> bool:
        try:
            resolved = pd.api.types.pandas_dtype(dtype)
        except TypeError:
            return False
        return pd.api.types.is_numeric_dtype(resolved) and not pd.api.types.is_bool_dtype(resolved)

    return [col for col, dtype in feature_schema.items() if not numeric(dtype)]


def _qualname(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _final_estimator(model: Any) -> Any:
    return model.steps[-1][1] if hasattr(model, "steps") else model


def _walk(estimator: Any) -> Iterator[Any]:
    """The estimator and every fitted step below it (Pipeline steps, ColumnTransformer transformers)."""
    if estimator is None or isinstance(estimator, str):  # "drop" / "passthrough"
        return
    yield estimator
    for _, step in getattr(estimator, "steps", []):
        yield from _walk(step)
    for _, transformer, _ in getattr(estimator, "transformers_", []):
        yield from _walk(transformer)


def _unsupported(name: str, version: str) -> PackagingError:
    return PackagingError(
        f"{name} has no ONNX converter in skl2onnx {version}, so the champion cannot be packaged for the "
        f"edge target. Estimators that package: {', '.join(EDGE_ESTIMATORS)} (and most other sklearn "
        "estimators); set model.estimator to one of them or remove 'edge' from serving.targets"
    )


def _missing_as_empty(encoder: Any, columns: list[str]) -> None:
    """Rename the encoder's None/NaN category to "": the value the predictor sends for a missing text."""
    import numpy as np

    renamed = []
    for column, categories in zip(columns, encoder.categories_, strict=False):
        values = list(categories)
        missing = [v is None or (isinstance(v, float) and v != v) for v in values]
        if any(missing) and "" in values:
            raise PackagingError(
                f"column {column!r} has both '' and a missing value among its categories; the edge "
                "predictor sends '' for missing text, so map '' to None (or a real value) before training"
            )
        if any(missing):
            categories = np.array(
                ["" if m else v for v, m in zip(values, missing, strict=True)], dtype=object
            )
        renamed.append(categories)
    encoder.categories_ = renamed


def _onnx_ready_copy(model: Any, text: set[str]) -> Any:
    """A copy of the fitted pipeline whose text branches skl2onnx can convert with identical results.

    `prepare_frame` hands the champion None for a missing text value. sklearn's most-frequent imputer
    (missing_values=NaN) leaves None alone and the one-hot encoder treats it as a category of its own,
    while skl2onnx only converts string imputers whose missing value is a string. So in the copy the
    text imputer becomes the identity it is in practice, and the None category becomes "".
    """
    import numpy as np
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder

    prepared = copy.deepcopy(model)
    for node in _walk(prepared):
        for _, branch, columns in getattr(node, "transformers_", []):
            cols = [columns] if isinstance(columns, str) else list(columns) if columns is not None else []
            if not cols or not all(isinstance(c, str) and c in text for c in cols):
                continue
            steps = branch.steps if hasattr(branch, "steps") else [("", branch)]
            for i, (name, step) in enumerate(steps):
                if isinstance(step, SimpleImputer) and not isinstance(step.missing_values, str):
                    steps[i] = (name, FunctionTransformer().fit(np.empty((1, len(cols)), dtype=object)))
                elif isinstance(step, OneHotEncoder):
                    _missing_as_empty(step, cols)
    return prepared


def convert_to_onnx(model: Any, feature_schema: dict[str, str], task: str) -> bytes:
    """Convert the fitted champion pipeline to ONNX bytes, one `[None, 1]` input per feature column.

    Numeric columns are float inputs (missing = NaN), the others string inputs (missing = "");
    classifiers output `label` and a plain `probabilities` tensor (no ZipMap), regressors `variable`.

    Args:
        model: the fitted sklearn Pipeline (`prepare` ColumnTransformer + `model` estimator).
        feature_schema: feature column -> pandas dtype, in feature order (the model card's schema).
        task: "classification" or "regression".

    Raises:
        PackagingError: no ONNX converter for a step (the message names it and lists what works),
            a classifier without `predict_proba`, or a conversion failure.
    """
    import google.protobuf
    import skl2onnx

    # Private, kept here alone: the class -> converter map, by type. The public
    # `supported_converters()` lists alias names (LogisticRegression appears as LinearClassifier).
    from skl2onnx._supported_operators import sklearn_operator_name_map
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType
    from skl2onnx.common.exceptions import MissingConverter, MissingShapeCalculator

    if task not in _TASKS:
        raise PackagingError(f"task must be one of {_TASKS}, got {task!r}")
    for step in _walk(model):
        if type(step) not in sklearn_operator_name_map:
            raise _unsupported(_qualname(step), skl2onnx.__version__)
    estimator = _final_estimator(model)
    if task == "classification" and not hasattr(estimator, "predict_proba"):
        raise PackagingError(
            f"{_qualname(estimator)} has no predict_proba; the edge bundle of a classifier serves "
            f"probabilities, so use one of {', '.join(n for n in EDGE_ESTIMATORS if 'Classifier' in n)} "
            "or LogisticRegression"
        )
    for node in _walk(model):
        for _, transformer, columns in getattr(node, "transformers_", []):
            if isinstance(transformer, str) and transformer == "drop":
                continue
            unknown = [
                c for c in ([columns] if isinstance(columns, str) else columns) if c not in feature_schema
            ]
            if unknown:
                raise PackagingError(f"the model reads columns {unknown} that feature_schema does not list")
    text = set(text_columns(feature_schema))
    prepared = _onnx_ready_copy(model, text)
    initial_types = [
        (col, StringTensorType([None, 1]) if col in text else FloatTensorType([None, 1]))
        for col in feature_schema
    ]
    options = {id(_final_estimator(prepared)): {"zipmap": False}} if task == "classification" else None
    try:
        onx = skl2onnx.convert_sklearn(
            prepared,
            initial_types=initial_types,
            options=options,
            target_opset=dict(TARGET_OPSET),
            # The default graph name is a random uuid; a fixed one makes the same model give the same bytes.
            name=f"mlops_edge_{type(estimator).__name__}",
        )
    except (MissingConverter, MissingShapeCalculator) as e:
        raise _unsupported(_qualname(estimator), skl2onnx.__version__) from e
    except Exception as e:  # skl2onnx raises RuntimeError, NotImplementedError, TypeError, ...
        hint = ""
        if int(google.protobuf.__version__.split(".")[0]) >= 7:
            hint = f"; protobuf {google.protobuf.__version__} is installed and skl2onnx needs protobuf<7"
        raise PackagingError(
            f"skl2onnx {skl2onnx.__version__} could not convert the {_qualname(estimator)} pipeline: "
            f"{type(e).__name__}: {e}{hint}"
        ) from e
    return bytes(onx.SerializeToString())


def _graph_io(onnx_bytes: bytes) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, int], str]:
    import onnx

    model = onnx.load_model_from_string(onnx_bytes)

    def describe(value: Any) -> dict[str, Any]:
        tensor = value.type.tensor_type
        return {
            "name": value.name,
            "type": onnx.TensorProto.DataType.Name(tensor.elem_type).lower(),
            "shape": [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim],
        }

    opset = {imp.domain or "ai.onnx": int(imp.version) for imp in model.opset_import}
    producer = f"{model.producer_name} {model.producer_version}".strip()
    return (
        [describe(v) for v in model.graph.input],
        [describe(v) for v in model.graph.output],
        opset,
        producer,
    )


def build_manifest(
    onnx_bytes: bytes,
    *,
    pipeline: str,
    version: str,
    model_sha256: str,
    features: Sequence[str],
    feature_schema: Mapping[str, str],
    task: str,
    classes: Sequence[Any] | None = None,
) -> dict[str, Any]:
    """The bundle's manifest.json without its `files` hashes (pure but for reading the ONNX graph).

    Raises:
        PackagingError: features, schema and ONNX inputs disagree, or a classifier has no classes.
    """
    from mlops_dagster.packaging.edge_predictor import BUNDLE_FORMAT

    if task not in _TASKS:
        raise PackagingError(f"task must be one of {_TASKS}, got {task!r}")
    inputs, outputs, opset, producer = _graph_io(onnx_bytes)
    by_name = {i["name"]: i for i in inputs}
    if set(features) != set(feature_schema) or set(features) != set(by_name):
        raise PackagingError(
            f"features {list(features)}, feature_schema {list(feature_schema)} and the ONNX inputs "
            f"{list(by_name)} must name the same columns"
        )
    for item in inputs:
        item["missing"] = "" if item["type"] == "string" else "NaN"
        item["dtype"] = feature_schema[item["name"]]
    labels = None
    if task == "classification":
        if classes is None or len(classes) == 0:
            raise PackagingError("a classification bundle needs `classes` (the estimator's classes_)")
        labels = [c.item() if hasattr(c, "item") else c for c in classes]
        roles = ["prediction", "probabilities"]
    else:
        roles = ["prediction"]
    if len(outputs) < len(roles):
        raise PackagingError(f"a {task} model needs {len(roles)} ONNX outputs, this one has {outputs}")
    for output, role in zip(outputs, roles, strict=False):
        output["role"] = role
    return {
        "format": BUNDLE_FORMAT,
        "pipeline": pipeline,
        "version": version,
        "model_sha256": model_sha256,
        "task": task,
        "features": list(features),
        "feature_schema": {c: feature_schema[c] for c in features},
        "inputs": [by_name[c] for c in features],
        "outputs": outputs,
        "classes": labels,
        "model_file": MODEL_FILE,
        "opset": opset,
        "producer": producer,
    }


def _readme(manifest: dict[str, Any]) -> str:
    return (
        f"Edge bundle of the {manifest['pipeline']} {manifest['task']} model, version {manifest['version']}"
        f" (champion sha256 {manifest['model_sha256']}).\n"
        "Needs only Python 3.9+ with onnxruntime and numpy: `pip install onnxruntime numpy` (and, to "
        "check a signed bundle's model.sig against the PEM public keys in MLOPS_VERIFY_KEYS, "
        "`pip install model-signing pyopenssl`).\n"
        "Copy the whole folder to the device; manifest.json lists the inputs and the sha256 of every file.\n"
        'Python: `from predictor import Predictor; p = Predictor("<folder>"); p.predict({"col": value})`.\n'
        "Shell: `python predictor.py rows.json` (a JSON object or list; null or absent = missing value).\n"
    )


def write_bundle(
    out_dir: str | Path,
    onnx_bytes: bytes,
    *,
    pipeline: str,
    version: str,
    model_sha256: str,
    features: Sequence[str],
    feature_schema: Mapping[str, str],
    task: str,
    classes: Sequence[Any] | None = None,
) -> Path:
    """Write the bundle folder `out_dir` (model.onnx, manifest.json, predictor.py, README.txt, and
    model.sig when the environment's signing asks for it) atomically (`place_files`); returns it.
    `onnx_bytes` come from `convert_to_onnx`; pipeline, version and model_sha256 are the champion's
    identity; features in model order; classes: the classifier's `classes_`. Under `signing: required`
    the manifest says so (`signing_required`): the bundle then refuses to load unsigned anywhere.

    Raises:
        PackagingError: the inputs disagree (see `build_manifest`).
        SigningConfigError: the environment needs a signature and `MLOPS_SIGNING_KEY` is unset or unusable.
    """
    from mlops_dagster.packaging import edge_predictor
    from mlops_dagster.registry.signing import policy, sign_files

    manifest = build_manifest(
        onnx_bytes,
        pipeline=pipeline,
        version=version,
        model_sha256=model_sha256,
        features=features,
        feature_schema=feature_schema,
        task=task,
        classes=classes,
    )
    files = {
        MODEL_FILE: onnx_bytes,
        PREDICTOR_FILE: Path(edge_predictor.__file__).read_bytes(),
        README_FILE: _readme(manifest).encode("utf-8"),
    }
    manifest["files"] = {name: sha256_hex(data) for name, data in sorted(files.items())}
    if policy() == "required":
        manifest["signing_required"] = True
    files[MANIFEST_FILE] = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode("utf-8")
    signature = sign_files(files, f"{pipeline}:{version}", kind="edge bundle", unsigned=frozenset())
    return place_files(out_dir, {**files, **({SIGNATURE_FILE: signature} if signature else {})})


def place_files(out_dir: str | Path, files: Mapping[str, bytes]) -> Path:
    """Write a bundle's files (manifest included, and its signature when signed) as the folder `out_dir`,
    atomically.

    Written under a temporary name next to `out_dir`, then renamed: readers see the old folder or the new.
    A folder already holding this manifest and signature (or none) is kept when its files match.
    """
    from mlops_dagster.packaging import edge_predictor

    out = Path(out_dir)

    def same(name: str) -> bool:
        return (out / name).is_file() and (out / name).read_bytes() == files[name]

    signed = SIGNATURE_FILE in files
    if same(MANIFEST_FILE) and (same(SIGNATURE_FILE) if signed else not (out / SIGNATURE_FILE).exists()):
        try:
            edge_predictor.verify_bundle(out, signing=("off", "the same manifest and signature"))
            return out
        except edge_predictor.BundleIntegrityError:
            pass  # damaged: rewrite it
    replace_local_folder(out, lambda tmp: [(tmp / name).write_bytes(data) for name, data in files.items()])
    return out


def verify_bundle(
    bundle_dir: str | Path, *, model_sha256: str | None = None, version: str | None = None
) -> dict[str, Any]:
    """Check the whole bundle and return its manifest; nothing in it is run or loaded.

    Every file the manifest names must match its sha256, and the folder may hold nothing else (but
    its `model.sig`, Python's `__pycache__` and, in the BentoML store, BentoML's `model.yaml`); the
    signature is checked as the environment's `signing` says. Given `model_sha256` or `version`, the
    manifest must name that champion.

    Raises:
        IntegrityError: the manifest is missing, or a file is missing, altered or unexpected, or the
            bundle packages another champion.
        SignatureError: the signing policy refuses the bundle (unsigned, changed, unknown key).
        SigningConfigError: a key in `MLOPS_VERIFY_KEYS` cannot be used.
    """
    from mlops_dagster.packaging import edge_predictor
    from mlops_dagster.registry.signing import host_policy, refusals

    try:
        with refusals():
            return edge_predictor.verify_bundle(
                bundle_dir, model_sha256=model_sha256, version=version, signing=host_policy()
            )
    except edge_predictor.BundleIntegrityError as e:
        raise IntegrityError(str(e)) from e
