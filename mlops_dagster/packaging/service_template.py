"""The BentoML service a cloud bento runs, copied verbatim into the bento's `mlops_bento_runtime` package.

Two runtimes, chosen at build time (`config["runtime"]`):

- `onnx`: the champion's parity-checked edge bundle, stored as `<pipeline>_edge:<version>`, run by the
  bundle's own onnxruntime predictor in an `async` API (a one-row call costs microseconds, so it runs on
  the event loop with no thread hop). Needs onnxruntime, numpy and pydantic only.
- `sklearn`: the pickled champion (`<pipeline>:<version>`) on a pandas frame, in a sync API (BentoML
  runs it in its thread pool). The fallback when the champion has no ONNX converter or parity failed.

The bento must not need `mlops_dagster` (nor Dagster) at serve time, so this module imports only the
standard library and its siblings, copied with it (`service_http`: request limits and error answers;
`edge_predictor`: the bundle check; `prediction_log`, imported only when logging is on), at the top,
and the rest inside the functions that use them. With `serving.prediction_log.enabled`, each worker
queues what `/predict` answers to its own `PredictionLog` (written in the background, counted on
`GET /healthz`, the rest written at shutdown); rows may carry the dataset's entity and timestamp
columns (optional fields, accepted whether logging is on or not when the build recorded their names).
A generated stub (`mlops_bento_service.py`) reads the build's `bento_config.json` and calls
`make_service(config)`; `mlops_dagster.packaging.bento` uses `request_model` to report the API schema,
so the schema in the build's metadata is the one the server validates with. Requests are validated
strictly: a number must be finite and fit a float32 (`NaN`, `Infinity`, `1e309`, `1e39` are a 400
naming the field).

No `from __future__ import annotations` here: BentoML and pydantic read the annotations at run time.
"""

import hashlib
import io
from pathlib import Path
from typing import Any

from .service_http import (
    PREDICT_PATH,
    ModelInfoMiddleware,
    install_client_error_logging,
    max_body_bytes,
)

MODEL_FILE = "model.joblib"
# The largest number a request may carry: the ONNX graph and sklearn's trees compute in float32.
FLOAT32_MAX = 3.4028234663852886e38
BUNDLE_MODEL_FILE = "model.onnx"
RUNTIMES = ("onnx", "sklearn")
KEY_FIELDS = ("entity", "timestamp")  # the request row's attributes for the dataset's entity and timestamp


def field_type(dtype: str) -> Any:
    """The request type of a feature from its pandas dtype string (as recorded in the model card).

    Raises:
        ValueError: for dtypes a JSON request cannot carry (datetimes, complex numbers...).
    """
    name = dtype.strip()
    if name == "bool":
        return bool
    if name == "boolean":
        return bool | None
    if name in ("object", "string", "category") or name.startswith(("string[", "str")):
        return str | None
    lowered = name.lower()
    if lowered.startswith(("int", "uint", "float")):
        return float | None
    raise ValueError(f"feature dtype {dtype!r} has no JSON request type (use numbers, strings or booleans)")


def row_model(features: list[str], schema: dict[str, str], keys: tuple[str, str] | None = None) -> Any:
    """One input row: every feature a required field under its own name, nothing else allowed.

    `keys`, the dataset's entity and timestamp column names (given when the build knows them, see
    `prediction_log`), adds them as optional fields (attributes `entity`, `timestamp`): an entity is
    an integer or a string, a timestamp ISO 8601 text (or epoch seconds). A key that is also a feature
    is that feature.

    Fields are stored under positional names (`f0`, `f1`, ...) with the feature name as alias, so any
    column name works (even `model_id` or `schema`) and validation errors report the feature name.
    Numbers must be finite and fit a float32: JSON `NaN`, `Infinity`, `1e309` and `1e39` fail validation.
    """
    from typing import Annotated

    from pydantic import AfterValidator, ConfigDict, Field, create_model

    bounds = {"minimum": -FLOAT32_MAX, "maximum": FLOAT32_MAX}
    number = Annotated[float, AfterValidator(_fits_float32), Field(json_schema_extra=bounds)]
    fields: dict[str, Any] = {}
    for i, feature in enumerate(features):
        if feature not in schema:
            raise ValueError(f"feature {feature!r} has no dtype in the model card's feature_schema")
        kind = field_type(schema[feature])
        fields[f"f{i}"] = (number | None if kind == float | None else kind, Field(..., alias=feature))
    if keys is not None:
        from datetime import datetime

        entity, timestamp = keys
        if entity not in features:
            fields[KEY_FIELDS[0]] = (int | str | None, Field(None, alias=entity))
        if timestamp not in features:
            fields[KEY_FIELDS[1]] = (
                Annotated[datetime, Field(strict=False)] | None,
                Field(None, alias=timestamp),
            )
    config = ConfigDict(
        extra="forbid", strict=True, populate_by_name=False, protected_namespaces=(), allow_inf_nan=False
    )
    return create_model("Row", __config__=config, **fields)


def _fits_float32(value: float) -> float:
    if abs(value) > FLOAT32_MAX:
        raise ValueError(
            f"{value:g} is out of range: the model computes in float32 (at most {FLOAT32_MAX:.4g})"
        )
    return value


def request_model(config: dict[str, Any]) -> Any:
    """The body of `POST /predict`: `{"rows": [row, ...]}` with 1..`max_rows` rows."""
    from typing import Annotated

    from pydantic import ConfigDict, Field, create_model

    row = row_model(list(config["features"]), dict(config["feature_schema"]), _log_keys(config))
    rows = Annotated[
        list[row],  # type: ignore[valid-type]
        Field(
            min_length=1,
            max_length=int(config["max_rows"]),
            description=f"1 to {config['max_rows']} rows, each with every feature of the model",
        ),
    ]
    return create_model("PredictRequest", __config__=ConfigDict(extra="forbid"), rows=(rows, ...))


def _log_keys(config: dict[str, Any]) -> tuple[str, str] | None:
    """The dataset's entity and timestamp column names, when the build recorded them."""
    settings = config.get("prediction_log")
    return (settings["entity"], settings["timestamp"]) if settings else None


def _log_on(config: dict[str, Any]) -> bool:
    return bool((config.get("prediction_log") or {}).get("enabled"))


def open_prediction_log(config: dict[str, Any]) -> Any:
    """This worker's `PredictionLog` when the build switched logging on (else None); the root baked
    into the build, or `$MLOPS_PREDICTION_LOG_ROOT` when set."""
    keys = _log_keys(config)
    if keys is None or not _log_on(config):
        return None
    from .prediction_log import PredictionLog

    features = list(config["features"])
    attributes = tuple(
        f"f{features.index(k)}" if k in features else name for k, name in zip(keys, KEY_FIELDS, strict=True)
    )
    return PredictionLog.from_settings(config["prediction_log"], row_attributes=attributes)


def response_model(config: dict[str, Any]) -> Any:
    from pydantic import BaseModel, Field

    class PredictResponse(BaseModel):
        predictions: list[Any] = Field(description="One prediction per input row, in order")
        probabilities: list[list[float]] | None = Field(
            None, description="Classifiers: per row, the probability of each class in `classes` order"
        )
        classes: list[Any] | None = Field(None, description="Classifiers: the class labels")
        model_version: str = Field(description="The model version that answered")

    return PredictResponse


def load_checked_model(config: dict[str, Any]) -> Any:
    """Load the bento's model after checking its folder's signature and `model.joblib` against the
    sha256 baked into the build. The folder's files are read once: the bytes checked are the bytes
    unpickled. The signature is checked as `edge_predictor.signing_policy` says (`MLOPS_SIGNING`, the
    build's `signing_required`, `MLOPS_VERIFY_KEYS` where the bento runs).

    Raises:
        RuntimeError: the signature is refused, or the file is missing or its sha256 differs; the
            model is never unpickled then.
    """
    import bentoml
    import joblib

    from .edge_predictor import SignatureRefused, check_signed_files, signing_policy

    folder = Path(bentoml.models.get(config["model_tag"]).path)
    # Every file but BentoML's own record: the version's signature covers them all.
    files = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and p.name != "model.yaml"}
    try:
        policy = signing_policy(bool(config.get("signing_required")))
        check_signed_files(files, f"model {config['model_tag']}", str(folder), policy)
    except SignatureRefused as e:
        raise RuntimeError(f"{e} (the bento serves no model it cannot trust)") from e
    path = folder / MODEL_FILE
    if MODEL_FILE not in files:
        raise RuntimeError(f"model {config['model_tag']}: {path} is missing; refusing to load it")
    data = files[MODEL_FILE]
    actual = hashlib.sha256(data).hexdigest()
    if actual != config["sha256"]:
        raise RuntimeError(
            f"model {config['model_tag']}: sha256 of {path} is {actual}, the bento was built for "
            f"{config['sha256']}; refusing to load it"
        )
    model = joblib.load(io.BytesIO(data))
    return single_threaded(model)


def load_checked_bundle(config: dict[str, Any]) -> Any:
    """The stored edge bundle's own `Predictor`, once the whole bundle is checked against the build.

    Before any bundle code runs: the sha256 of its manifest.json must be the one recorded at build time
    (which pins every file's hash), the manifest must name the build's model version and sha256, the
    signature must pass as for `load_checked_model`, every file must match its hash and the folder
    must hold no file the manifest does not name (but `model.sig`, BentoML's `model.yaml` and an inert
    `__pycache__`). Then the bytes of `predictor.py` that were hashed are run: nothing is imported
    from the store's folder.

    Raises:
        RuntimeError: the stored bundle is not the one the bento was built with (naming the file or
            field at fault); none of its code has run then.
    """
    import bentoml

    from .edge_predictor import BundleIntegrityError, load_verified_predictor, signing_policy

    stored = bentoml.models.get(config["onnx_model_tag"])
    folder = Path(stored.path)
    try:
        predictor = load_verified_predictor(
            folder,
            manifest_sha256=config["bundle_manifest_sha256"],
            model_sha256=config["sha256"],
            version=config["version"],
            signing=signing_policy(bool(config.get("signing_required"))),
        )
    except BundleIntegrityError as e:
        raise RuntimeError(f"model {config['onnx_model_tag']}: {e}; refusing to serve it") from e
    manifest = predictor.manifest
    problems = []
    onnx_sha256 = (manifest.get("files") or {}).get(BUNDLE_MODEL_FILE)
    if onnx_sha256 != config["onnx_sha256"]:
        built_for = config["onnx_sha256"]
        problems.append(f"its {BUNDLE_MODEL_FILE} has sha256 {onnx_sha256}, built for {built_for}")
    if list(manifest.get("features") or []) != list(config["features"]):
        problems.append(f"its features {manifest.get('features')} are not {config['features']}")
    if problems:
        raise RuntimeError(
            f"model {config['onnx_model_tag']} at {folder}: " + "; ".join(problems) + "; refusing to serve it"
        )
    return predictor


def predict_rows_onnx(
    predictor: Any, rows: list[Any], config: dict[str, Any], log: Any = None
) -> dict[str, Any]:
    """The `/predict` answer from the ONNX bundle: one model run, labels and probabilities together;
    queued to the prediction `log` when there is one."""
    records = [row.model_dump(by_alias=True) for row in rows]
    out: dict[str, Any] = {"model_version": config["version"]}
    if config.get("task") == "classification":
        out["predictions"], out["probabilities"] = predictor.predict_with_proba(records)
        out["classes"] = list(predictor.classes)
    else:
        out["predictions"] = predictor.predict(records)
    if log is not None:  # queued, never waited for; `log` never raises
        log.log(
            records,
            out["predictions"],
            out.get("probabilities"),
            version=out["model_version"],
            classes=out.get("classes"),
        )
    return out


def single_threaded(model: Any) -> Any:
    """Set every `n_jobs` parameter (nested ones too) to 1: one request, one core."""
    get_params = getattr(model, "get_params", None)
    if get_params is None:
        return model
    n_jobs = {k: 1 for k in get_params(deep=True) if k == "n_jobs" or k.endswith("__n_jobs")}
    if n_jobs:
        model.set_params(**n_jobs)
    return model


def to_frame(rows: list[Any], features: list[str], schema: dict[str, str]) -> Any:
    """The DataFrame the model was trained on: numeric columns float64 (None -> NaN), strings as str/None."""
    import pandas as pd

    records = [row.model_dump(by_alias=True) for row in rows]
    frame = pd.DataFrame.from_records(records, columns=features)
    for feature in features:
        if field_type(schema[feature]) == float | None:
            frame[feature] = pd.to_numeric(frame[feature], errors="raise").astype("float64")
        elif field_type(schema[feature]) == str | None:
            frame[feature] = frame[feature].astype(object).where(frame[feature].notna(), None)
    return frame


def predict_rows(model: Any, rows: list[Any], config: dict[str, Any], log: Any = None) -> dict[str, Any]:
    """The `/predict` answer from the sklearn model; queued to the prediction `log` when there is one."""
    features, schema = list(config["features"]), dict(config["feature_schema"])
    frame = to_frame(rows, features, schema)
    out: dict[str, Any] = {
        "predictions": model.predict(frame).tolist(),
        "model_version": config["version"],
    }
    if config.get("task") == "classification" and hasattr(model, "predict_proba"):
        out["probabilities"] = model.predict_proba(frame).tolist()
        classes = getattr(model, "classes_", None)
        out["classes"] = None if classes is None else list(classes.tolist())
    if log is not None:
        log.log(
            rows,
            out["predictions"],
            out.get("probabilities"),
            version=out["model_version"],
            classes=out.get("classes"),
        )
    return out


def service_info(config: dict[str, Any]) -> dict[str, Any]:
    """What `GET /version` and `GET /healthz` report about the served model."""
    runtime = config.get("runtime", "sklearn")
    return {
        "pipeline": config["pipeline"],
        "model_version": config["version"],
        "model_sha256": config["sha256"],
        "model_tag": config["model_tag"],
        "task": config["task"],
        "features": list(config["features"]),
        "max_rows": int(config["max_rows"]),
        "max_body_bytes": max_body_bytes(config),
        "runtime": runtime,
        "served_model_tag": config["onnx_model_tag"] if runtime == "onnx" else config["model_tag"],
    }


def make_service(config: dict[str, Any]) -> Any:
    """The `@bentoml.service` class for one model version, described by the build's config."""
    import bentoml

    runtime = config.get("runtime", "sklearn")
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime {runtime!r} is not one of {', '.join(RUNTIMES)}")
    request_cls = request_model(config)
    response_cls = response_model(config)
    info = service_info(config)

    api = bentoml.api(route=PREDICT_PATH, input_spec=request_cls, output_spec=response_cls, batchable=False)
    logs: list[Any] = []  # this worker's prediction log (one service instance per worker), for /healthz

    class LogOwner:
        """Opens the worker's prediction log (when the build switched it on); writes the rest at shutdown."""

        log: Any = None

        def open_log(self) -> None:
            self.log = open_prediction_log(config)
            if self.log is not None:
                logs.append(self.log)

        @bentoml.on_shutdown
        def close_prediction_log(self) -> None:
            if self.log is not None:
                self.log.close()

    if runtime == "onnx":

        class ModelService(LogOwner):
            def __init__(self) -> None:
                self.model = load_checked_bundle(config)
                self.open_log()

            @api
            async def predict(self, rows: list[Any]) -> Any:
                return response_cls(**predict_rows_onnx(self.model, rows, config, self.log))

    else:

        class ModelService(LogOwner):  # type: ignore[no-redef]
            def __init__(self) -> None:
                self.model = load_checked_model(config)
                self.open_log()

            @api
            def predict(self, rows: list[Any]) -> Any:
                return response_cls(**predict_rows(self.model, rows, config, self.log))

    ModelService.__name__ = ModelService.__qualname__ = config["service_class"]
    envs = [{"name": k, "value": v} for k, v in dict(config.get("envs", {})).items()]
    service = bentoml.service(
        name=config["service_name"],
        workers=int(config.get("workers", 1)),
        traffic={"timeout": 60},
        envs=envs,
    )(ModelService)
    install_client_error_logging()
    service.add_asgi_middleware(
        ModelInfoMiddleware,
        version=config["version"],
        sha256=config["sha256"],
        info=info,
        max_body_bytes=max_body_bytes(config),
        stats=(lambda: logs[-1].stats() if logs else {"enabled": True}) if _log_on(config) else None,
    )
    return service
