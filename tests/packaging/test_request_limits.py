"""The bento's HTTP edge without a bento: `ModelInfoMiddleware` under a real uvicorn on 127.0.0.1 (both of
uvicorn's HTTP implementations), short 400 answers, and client errors logged at INFO.

The served bento is tested end to end in test_bento_served.py; this file pins the same behaviour on
the ASGI layer alone, fast, for every request framing.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from mlops_dagster.packaging.service_http import (
    SHOWN_ERRORS,
    ClientErrorLogFilter,
    ModelInfoMiddleware,
    install_client_error_logging,
    readable_400,
)

CAP = 4096
START_TIMEOUT = 60.0


class EchoApp:
    """Reads the whole body as an app does and answers its size; counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.calls += 1
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        payload = json.dumps({"received": len(body)}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


class Served:
    def __init__(self, http: str) -> None:
        import uvicorn

        self.app = EchoApp()
        wrapped = ModelInfoMiddleware(
            self.app, version="v1", sha256="abc", info={"max_rows": 10}, max_body_bytes=CAP
        )
        config = uvicorn.Config(
            wrapped, host="127.0.0.1", port=0, http=http, lifespan="off", log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.servers[0].sockets[0].getsockname()[1])


@pytest.fixture(params=["h11", "httptools"])
def served(request: pytest.FixtureRequest) -> Iterator[Served]:
    served = Served(request.param)
    served.thread.start()
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not served.server.started:
            assert served.thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        yield served
    finally:
        served.server.should_exit = True
        served.thread.join(START_TIMEOUT)


def _answer(sock: socket.socket) -> tuple[int, dict[str, str], Any, bool]:
    """Status, headers and JSON body of one answer, and whether the server closed the connection then."""
    response = http.client.HTTPResponse(sock)
    response.begin()
    body = json.loads(response.read())
    headers = {k.lower(): v for k, v in response.getheaders()}
    return response.status, headers, body, sock.recv(1) == b""


def _chunked_head(extra: bytes = b"") -> bytes:
    return b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n" + extra + b"\r\n"


def test_a_chunked_body_past_the_cap_gets_413_without_reading_on(served: Served) -> None:
    with socket.create_connection(("127.0.0.1", served.port), timeout=60) as sock:
        sock.sendall(_chunked_head())
        left = CAP + 1
        while left:
            size = min(left, 1000)
            left -= size
            # The body never ends (no final chunk, not even the last chunk's CRLF): only a server that
            # stops at the cap answers, and it has read every byte sent, so it closes cleanly.
            sock.sendall(b"%x\r\n%s%s" % (size, b"x" * size, b"\r\n" if left else b""))
        status, headers, body, closed = _answer(sock)
    assert status == 413
    assert body["error"] == (
        f"request body is over the limit of {CAP} bytes; send at most 10 rows per request"
    )
    assert headers["x-model-version"] == "v1" and headers["connection"] == "close"
    assert closed
    assert served.app.calls == 0


def test_a_chunked_body_at_the_cap_reaches_the_app_whole(served: Served) -> None:
    with socket.create_connection(("127.0.0.1", served.port), timeout=60) as sock:
        sock.sendall(_chunked_head(b"Connection: close\r\n"))
        for size in (1, CAP // 2, CAP - CAP // 2 - 1):
            sock.sendall(b"%x\r\n%s\r\n" % (size, b"y" * size))
        sock.sendall(b"0\r\n\r\n")
        status, headers, body, _ = _answer(sock)
    assert (status, body) == (200, {"received": CAP})
    assert headers["x-model-sha256"] == "abc"


@pytest.mark.parametrize(("declared", "status"), [(CAP + 1, 413), (CAP, 200)])
def test_content_length_is_checked_before_reading(served: Served, declared: int, status: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=60)
    try:
        conn.putrequest("POST", "/predict")
        conn.putheader("Content-Length", str(declared))
        conn.endheaders()
        if status == 200:
            conn.send(b"z" * declared)
        response = conn.getresponse()
        body = json.loads(response.read())
    finally:
        conn.close()
    assert response.status == status
    assert body == {"received": CAP} if status == 200 else f"is {declared} bytes" in body["error"]


def test_a_400_with_many_errors_stays_small() -> None:
    detail = [
        {
            "type": "extra_forbidden",
            "loc": ["body", "rows", 0, f"k{i}"],
            "msg": "Extra inputs are not permitted",
        }
        for i in range(150_000)
    ]
    answer = readable_400(json.dumps({"error": "150000 validation errors", "detail": detail}).encode())
    assert len(json.dumps(answer)) < 2000
    assert answer["error"] == (
        "invalid request (150000 errors): "
        + "; ".join(f"body.rows[0].k{i}: Extra inputs are not permitted" for i in range(SHOWN_ERRORS))
        + f"; and {150_000 - SHOWN_ERRORS} more"
    )
    assert answer["error_count"] == 150_000 and answer["detail"] == detail[:SHOWN_ERRORS]
    garbage = readable_400(b"<html>" + b"A" * 1_000_000)
    assert len(garbage["error"]) <= 500 and garbage["error"].startswith("<html>AAA")
    assert readable_400(b'[{"error": "Content-Type not supported"}]') == {
        "error": "Content-Type not supported"
    }


def _records_of(logger: logging.Logger, exc: BaseException) -> list[logging.LogRecord]:
    """What BentoML's `log_exception` logs for `exc`, after the filter."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger.addHandler(handler)
    try:
        try:
            raise exc
        except BaseException:
            logger.error("Exception on %s [%s]", "/predict", "POST", exc_info=True)
    finally:
        logger.removeHandler(handler)
    return records


def test_client_errors_are_logged_at_info_without_a_traceback() -> None:
    from bentoml.exceptions import BentoMLException, InvalidArgument
    from pydantic import BaseModel, ValidationError

    class Row(BaseModel):
        age: float

    logger = logging.getLogger("tests.request_limits.bentoml")
    logger.setLevel(logging.INFO)
    logger.addFilter(ClientErrorLogFilter())
    try:
        Row.model_validate({"age": "old"})
    except ValidationError as e:
        invalid = e
    [record] = _records_of(logger, invalid)
    assert (record.levelno, record.exc_info, record.exc_text) == (logging.INFO, None, None)
    assert record.getMessage() == (
        "client error 400: Exception on /predict [POST]: "
        "invalid request (1 error): age: Input should be a valid number, unable to parse string as a number"
    )
    [record] = _records_of(logger, InvalidArgument("bad value"))
    assert record.levelno == logging.INFO and "client error 400" in record.getMessage()
    for server_error in (RuntimeError("boom"), BentoMLException("broken")):
        [record] = _records_of(logger, server_error)
        assert record.levelno == logging.ERROR and record.exc_info is not None  # unchanged
    logger.setLevel(logging.WARNING)  # INFO is off: the client error is not logged at all
    assert _records_of(logger, InvalidArgument("quiet")) == []


def test_installing_the_filter_twice_adds_it_once() -> None:
    install_client_error_logging()
    install_client_error_logging()
    for name in ("bentoml._internal.server.http_app", "bentoml.serve"):
        filters = logging.getLogger(name).filters
        assert sum(isinstance(f, ClientErrorLogFilter) for f in filters) == 1
