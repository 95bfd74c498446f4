"""The BentoML service a cloud bento runs, copied verbatim into the bento as `mlops_bento_runtime.py`.

Two runtimes, chosen at build time (`config["runtime"]`):

- `onnx`: the champion's parity-checked edge bundle, stored as `<pipeline>_edge:<version>`, run by the
  bundle's own onnxruntime predictor in an `async` API (a one-row call costs microseconds, so it runs on
  the event loop with no thread hop). Needs onnxruntime, numpy and pydantic only.
- `sklearn`: the pickled champion (`<pipeline>:<version>`) on a pandas frame, in a sync API (BentoML
  runs it in its thread pool). The fallback when the champion has no ONNX converter or parity failed.

The bento must not need `mlops_dagster` (nor Dagster) at serve time, so this module imports only the
standard library at the top, and the rest inside the functions that use them. A generated stub
(`mlops_bento_service.py`) reads the build's `bento_config.json` and calls `make_service(config)`;
`mlops_dagster.packaging.bento` uses `request_model` to report the API schema, so the schema in the
build's metadata is the one the server validates with.

No `from __future__ import annotations` here: BentoML and pydantic read the annotations at run time.
"""

import hashlib
import io
import json
from pathlib import Path
from typing import Any

MODEL_FILE = "model.joblib"
BUNDLE_MODEL_FILE = "model.onnx"
BUNDLE_PREDICTOR_FILE = "predictor.py"
RUNTIMES = ("onnx", "sklearn")
MODEL_VERSION_HEADER = "X-Model-Version"
MODEL_SHA256_HEADER = "X-Model-Sha256"
HEALTH_PATH = "/healthz"
VERSION_PATH = "/version"
PREDICT_PATH = "/predict"


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


def row_model(features: list[str], schema: dict[str, str]) -> Any:
    """One input row: every feature a required field under its own name, nothing else allowed.

    Fields are stored under positional names (`f0`, `f1`, ...) with the feature name as alias, so any
    column name works (even `model_id` or `schema`) and validation errors report the feature name.
    """
    from pydantic import ConfigDict, Field, create_model

    fields: dict[str, Any] = {}
    for i, feature in enumerate(features):
        if feature not in schema:
            raise ValueError(f"feature {feature!r} has no dtype in the model card's feature_schema")
        fields[f"f{i}"] = (field_type(schema[feature]), Field(..., alias=feature))
    config = ConfigDict(extra="forbid", strict=True, populate_by_name=False, protected_namespaces=())
    return create_model("Row", __config__=config, **fields)


def request_model(config: dict[str, Any]) -> Any:
    """The body of `POST /predict`: `{"rows": [row, ...]}` with 1..`max_rows` rows."""
    from typing import Annotated

    from pydantic import ConfigDict, Field, create_model

    row = row_model(list(config["features"]), dict(config["feature_schema"]))
    rows = Annotated[
        list[row],  # type: ignore[valid-type]
        Field(
            min_length=1,
            max_length=int(config["max_rows"]),
            description=f"1 to {config['max_rows']} rows, each with every feature of the model",
        ),
    ]
    return create_model("PredictRequest", __config__=ConfigDict(extra="forbid"), rows=(rows, ...))


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
    """Load the bento's model after checking `model.joblib` against the sha256 baked into the build.

    Raises:
        RuntimeError: the file's sha256 differs; the model is never unpickled then.
    """
    import bentoml
    import joblib

    stored = bentoml.models.get(config["model_tag"])
    path = Path(stored.path) / MODEL_FILE
    data = path.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != config["sha256"]:
        raise RuntimeError(
            f"model {config['model_tag']}: sha256 of {path} is {actual}, the bento was built for "
            f"{config['sha256']}; refusing to load it"
        )
    model = joblib.load(io.BytesIO(data))
    return single_threaded(model)


def load_checked_bundle(config: dict[str, Any]) -> Any:
    """The stored edge bundle's own `Predictor`, after checking it packages the build's champion.

    The predictor checks every bundle file against its manifest when it loads; this also checks that
    the manifest names the champion's sha256 and that `model.onnx` is the file the bento was built with.

    Raises:
        RuntimeError: the stored bundle packages another model, or its ONNX file changed since the build.
    """
    import importlib.util

    import bentoml

    stored = bentoml.models.get(config["onnx_model_tag"])
    folder = Path(stored.path)
    spec = importlib.util.spec_from_file_location("mlops_bundle_predictor", folder / BUNDLE_PREDICTOR_FILE)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"model {config['onnx_model_tag']}: {folder} has no {BUNDLE_PREDICTOR_FILE}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    predictor = module.Predictor(folder)  # refuses a bundle whose files do not match its manifest
    manifest = predictor.manifest
    problems = []
    if manifest.get("model_sha256") != config["sha256"]:
        problems.append(f"it packages model sha256 {manifest.get('model_sha256')}, not {config['sha256']}")
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


def predict_rows_onnx(predictor: Any, rows: list[Any], config: dict[str, Any]) -> dict[str, Any]:
    """The `/predict` answer from the ONNX bundle: one model run, labels and probabilities together."""
    records = [row.model_dump(by_alias=True) for row in rows]
    out: dict[str, Any] = {"model_version": config["version"]}
    if config.get("task") == "classification":
        out["predictions"], out["probabilities"] = predictor.predict_with_proba(records)
        out["classes"] = list(predictor.classes)
    else:
        out["predictions"] = predictor.predict(records)
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


def predict_rows(model: Any, rows: list[Any], config: dict[str, Any]) -> dict[str, Any]:
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
    return out


def validation_message(detail: list[dict[str, Any]]) -> str:
    """`rows[0].age: Input should be a valid number; ...` from pydantic's error list."""
    parts = []
    for error in detail:
        where = ""
        for item in error.get("loc", []):
            where += f"[{item}]" if isinstance(item, int) else (f".{item}" if where else str(item))
        parts.append(f"{where or 'body'}: {error.get('msg', 'invalid')}")
    count = len(detail)
    return f"invalid request ({count} error{'s' if count != 1 else ''}): " + "; ".join(parts)


class ModelInfoMiddleware:
    """ASGI middleware: model version and sha256 headers on every response, `GET /healthz` and
    `GET /version`, and a readable `error` (naming each bad field) on the API's 400 responses."""

    def __init__(
        self, app: Any, version: str, sha256: str, info: dict[str, Any], max_body_bytes: int
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.headers = [
            (MODEL_VERSION_HEADER.lower().encode(), version.encode()),
            (MODEL_SHA256_HEADER.lower().encode(), sha256.encode()),
        ]
        self.info = info

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        path, method = scope.get("path", ""), scope.get("method", "GET")
        if method in ("GET", "HEAD") and path in (HEALTH_PATH, VERSION_PATH):
            payload = {"status": "ok", **self.info} if path == HEALTH_PATH else self.info
            await self._json(send, 200, payload, head=method == "HEAD")
            return
        if path == PREDICT_PATH:
            size = _content_length(scope)
            if size is not None and size > self.max_body_bytes:
                message = (
                    f"request body is {size} bytes, over the limit of {self.max_body_bytes} bytes; "
                    f"send at most {self.info['max_rows']} rows per request"
                )
                await self._json(send, 413, {"error": message})
                return
            await self.app(scope, receive, self._rewriting_send(send))
        else:
            await self.app(scope, receive, self._header_send(send))

    def _header_send(self, send: Any) -> Any:
        async def wrapped(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *self.headers]}
            await send(message)

        return wrapped

    def _rewriting_send(self, send: Any) -> Any:
        """Buffer a 400 JSON answer to replace its `error` with one naming the fields; pass others on."""
        held: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def wrapped(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                if message.get("status") == 400:
                    held["start"] = message
                    return
                await send({**message, "headers": [*message.get("headers", []), *self.headers]})
                return
            if message["type"] != "http.response.body" or "start" not in held:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            start = held.pop("start")
            await self._json(send, 400, _readable(b"".join(chunks)), extra=start.get("headers", []))

        return wrapped

    async def _json(
        self, send: Any, status: int, payload: Any, *, head: bool = False, extra: Any = ()
    ) -> None:
        body = json.dumps(payload).encode()
        kept = [(k, v) for k, v in extra if k.lower() not in (b"content-length", b"content-type")]
        headers = [
            *kept,
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *self.headers,
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if head else body})


def _content_length(scope: Any) -> int | None:
    for key, value in scope.get("headers", []):
        if key.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def max_body_bytes(config: dict[str, Any]) -> int:
    """A generous cap on the request body: 256 bytes per feature value plus 64 KiB, for `max_rows` rows."""
    return int(config["max_rows"]) * (len(config["features"]) + 1) * 256 + 65536


def _readable(body: bytes) -> Any:
    try:
        payload = json.loads(body)
    except ValueError:
        return {"error": body.decode("utf-8", "replace")}
    if isinstance(payload, dict) and isinstance(payload.get("detail"), list):
        return {**payload, "error": validation_message(payload["detail"])}
    return payload


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

    if runtime == "onnx":

        class ModelService:
            def __init__(self) -> None:
                self.model = load_checked_bundle(config)

            @api
            async def predict(self, rows: list[Any]) -> Any:
                return response_cls(**predict_rows_onnx(self.model, rows, config))

    else:

        class ModelService:  # type: ignore[no-redef]
            def __init__(self) -> None:
                self.model = load_checked_model(config)

            @api
            def predict(self, rows: list[Any]) -> Any:
                return response_cls(**predict_rows(self.model, rows, config))

    ModelService.__name__ = ModelService.__qualname__ = config["service_class"]
    envs = [{"name": k, "value": v} for k, v in dict(config.get("envs", {})).items()]
    service = bentoml.service(
        name=config["service_name"],
        workers=int(config.get("workers", 1)),
        traffic={"timeout": 60},
        envs=envs,
    )(ModelService)
    service.add_asgi_middleware(
        ModelInfoMiddleware,
        version=config["version"],
        sha256=config["sha256"],
        info=info,
        max_body_bytes=max_body_bytes(config),
    )
    return service
