"""The HTTP edge of the bento's service: request limits, readable 400s, model headers, quiet client errors.

Copied into the bento next to `service_template` (whose `make_service` installs it), so like it this
module imports only the standard library at the top and needs neither Dagster nor `mlops_dagster`.

- `ModelInfoMiddleware` (ASGI) caps the body of `POST /predict` on the bytes actually received, whatever
  the transfer encoding (`Content-Length` or chunked): past the cap it answers 413 and reads no more.
  It also answers `GET /healthz` (with the worker's prediction-log counters when logging is on) and
  `GET /version`, adds the model version and sha256 headers to every response, and rewrites
  BentoML's 400 answers into a short `error` naming the first bad fields.
- `ClientErrorLogFilter` logs a request the client got wrong (a 4xx) at INFO, in one line without a
  traceback, where BentoML would log an ERROR with the stack.
"""

import json
import logging
from collections.abc import Callable
from typing import Any

MODEL_VERSION_HEADER = "X-Model-Version"
MODEL_SHA256_HEADER = "X-Model-Sha256"
HEALTH_PATH = "/healthz"
VERSION_PATH = "/version"
PREDICT_PATH = "/predict"
SHOWN_ERRORS = 5  # a 400 names at most this many fields, then says how many more there are
ERROR_TEXT_CHARS = 500  # at most this much of a non-JSON error body (or of one message) is sent back
# Where BentoML logs the exceptions of its API handlers (`log_exception`, at ERROR with the traceback).
BENTOML_ERROR_LOGGERS = ("bentoml._internal.server.http_app", "bentoml.serve")


def max_body_bytes(config: dict[str, Any]) -> int:
    """A generous cap on the request body: 256 bytes per feature value plus 64 KiB, for `max_rows` rows."""
    return int(config["max_rows"]) * (len(config["features"]) + 1) * 256 + 65536


def _cut(text: str, limit: int = ERROR_TEXT_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _where(loc: Any) -> str:
    where = ""
    for item in loc if isinstance(loc, (list, tuple)) else []:
        where += f"[{item}]" if isinstance(item, int) else (f".{item}" if where else str(item))
    return where or "body"


def validation_message(detail: list[dict[str, Any]]) -> str:
    """`invalid request (2 errors): rows[0].age: Input should be a valid number; ...` from pydantic's
    error list; the first `SHOWN_ERRORS` are named, the rest counted."""
    parts = [
        f"{_where(error.get('loc'))}: {_cut(str(error.get('msg', 'invalid')), 200)}"
        for error in detail[:SHOWN_ERRORS]
        if isinstance(error, dict)
    ]
    count = len(detail)
    if count > SHOWN_ERRORS:
        parts.append(f"and {count - SHOWN_ERRORS} more")
    return f"invalid request ({count} error{'s' if count != 1 else ''}): " + "; ".join(parts)


def readable_400(body: bytes) -> dict[str, Any]:
    """BentoML's 400 body as a small JSON answer: an `error` naming the first fields at fault, and at
    most `SHOWN_ERRORS` entries of pydantic's `detail` with `error_count` for all of them."""
    try:
        payload = json.loads(body)
    except ValueError:
        return {"error": _cut(body.decode("utf-8", "replace"))}
    if isinstance(payload, list) and len(payload) == 1 and isinstance(payload[0], dict):
        payload = payload[0]  # BentoML answers a list for its own 4xx exceptions
    if not isinstance(payload, dict):
        return {"error": _cut(json.dumps(payload))}
    detail = payload.get("detail")
    if isinstance(detail, list):
        return {
            "error": validation_message(detail),
            "error_count": len(detail),
            "detail": detail[:SHOWN_ERRORS],
        }
    return {"error": _cut(str(payload.get("error", payload)))}


class ModelInfoMiddleware:
    """ASGI middleware: the body cap of `POST /predict`, model headers, `/healthz`, `/version`, short 400s.

    Args:
        app: the ASGI app it wraps.
        version: the model version (header `X-Model-Version`).
        sha256: the model's sha256 (header `X-Model-Sha256`).
        info: what `/version` and `/healthz` report (`max_rows` names the row limit in a 413).
        max_body_bytes: the largest body `POST /predict` accepts, counted on the bytes received.
        stats: when given, `/healthz` reports what it returns as `prediction_log` (this worker's
            counters of rows written, dropped and failed).
    """

    def __init__(
        self,
        app: Any,
        version: str,
        sha256: str,
        info: dict[str, Any],
        max_body_bytes: int,
        stats: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.app = app
        self.stats = stats
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
            if path == HEALTH_PATH and self.stats is not None:
                payload["prediction_log"] = self.stats()
            await self._json(send, 200, payload, head=method == "HEAD")
            return
        if path != PREDICT_PATH:
            await self.app(scope, receive, self._header_send(send))
            return
        size = _content_length(scope)
        if size is not None and size > self.max_body_bytes:
            await self._too_large(send, f"request body is {size} bytes")
            return
        body, over = await self._read_body(receive)
        if over:
            await self._too_large(send, "request body is")
            return
        if body is None:  # the client went away before the body ended: nobody to answer
            return
        await self.app(scope, _replay(body, receive), self._rewriting_send(send))

    async def _read_body(self, receive: Any) -> tuple[bytes | None, bool]:
        """The whole body, counted as it arrives; (None, True) as soon as it passes the cap."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None, False
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None, True
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), False

    async def _too_large(self, send: Any, what: str) -> None:
        message = (
            f"{what} over the limit of {self.max_body_bytes} bytes; "
            f"send at most {self.info['max_rows']} rows per request"
        )
        # `connection: close`: the server closes the connection after this answer instead of reading
        # (and discarding) the rest of the body.
        await self._json(send, 413, {"error": message}, extra=[(b"connection", b"close")])

    def _header_send(self, send: Any) -> Any:
        async def wrapped(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *self.headers]}
            await send(message)

        return wrapped

    def _rewriting_send(self, send: Any) -> Any:
        """Buffer a 400 JSON answer to replace it with a short one naming the fields; pass others on."""
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
            await self._json(send, 400, readable_400(b"".join(chunks)), extra=start.get("headers", []))

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


def _replay(body: bytes, receive: Any) -> Any:
    """An ASGI `receive` that gives the app the body already read, then the server's own messages."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> Any:
        return pending.pop() if pending else await receive()

    return replay


def _content_length(scope: Any) -> int | None:
    for key, value in scope.get("headers", []):
        if key.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def client_error_status(exc: BaseException | None) -> int | None:
    """The 4xx status BentoML answers for `exc` (a pydantic `ValidationError` is a 400); None otherwise."""
    if exc is None:
        return None
    if type(exc).__name__ == "ValidationError" and type(exc).__module__.startswith("pydantic"):
        return 400
    code = getattr(getattr(exc, "error_code", None), "value", None)
    try:
        from bentoml.exceptions import BentoMLException
    except ImportError:
        return None
    if isinstance(exc, BentoMLException) and isinstance(code, int) and 400 <= code < 500:
        return code
    return None


def _exception_summary(exc: BaseException) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors) and type(exc).__name__ == "ValidationError":
        detail = errors(include_context=False, include_input=False)
        return validation_message(detail if isinstance(detail, list) else [])
    return _cut(f"{type(exc).__name__}: {exc}", 300)


class ClientErrorLogFilter(logging.Filter):
    """Turns BentoML's ERROR-with-traceback record of a client error (a 4xx) into one INFO line.

    Records of server errors (5xx, anything else) pass unchanged.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        status = client_error_status(exc)
        if status is None or exc is None:
            return True
        if not logging.getLogger(record.name).isEnabledFor(logging.INFO):
            return False
        logged = record.getMessage()
        record.msg = "client error %d: %s: %s"
        record.args = (status, logged, _exception_summary(exc))
        record.levelno, record.levelname = logging.INFO, logging.getLevelName(logging.INFO)
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True


def install_client_error_logging() -> None:
    """Add `ClientErrorLogFilter` to BentoML's API error loggers (once per process)."""
    for name in BENTOML_ERROR_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, ClientErrorLogFilter) for f in logger.filters):
            logger.addFilter(ClientErrorLogFilter())
