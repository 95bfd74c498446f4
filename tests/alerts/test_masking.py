"""Secrets are masked by value in every form they come back in: raw, JSON-escaped, URL-encoded or decoded,
as `user:pass@` in a URL, and however short.

The unit tests feed `scrub` each form; the end-to-end tests make a real receiver on 127.0.0.1 echo the
request it got (JSON-escaped, as API servers do in their error bodies) and read the notifier's log.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote, quote_plus

import pytest

from mlops_dagster.alerts import Alert, Notifier
from mlops_dagster.alerts.delivery import scrub

ALERT = Alert(title="churn/dataset 2026-01-05: 1 quality check failed", text="nulls", severity="error")
SPECIAL = 'tök/"en&<x>'  # every character JSON or a URL escapes
SHORT = "k9"


def _go_json(text: str) -> str:
    """A string as Go's encoding/json writes it inside quotes: `&<>` escaped, non-ASCII kept."""
    inner = json.dumps(text, ensure_ascii=False)[1:-1]
    return inner.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


FORMS = {
    "raw": lambda s: s,
    "JSON, ASCII": lambda s: json.dumps(s)[1:-1],
    "JSON, escaped slash": lambda s: json.dumps(s)[1:-1].replace("/", "\\/"),
    "JSON, upper-case \\u": lambda s: json.dumps(s)[1:-1].replace("\\u00f6", "\\u00F6"),
    "JSON, Go": _go_json,
    "URL-encoded": lambda s: quote(s, safe=""),
    "URL-encoded, lower-case hex": lambda s: re.sub(
        "%[0-9A-F]{2}", lambda m: m[0].lower(), quote(s, safe="")
    ),
    "form-encoded": lambda s: quote_plus(s + " x", safe="")[: -len("+x")],
    "Python repr": lambda s: repr(s)[1:-1],
}


@pytest.mark.parametrize("secret", [SPECIAL, SHORT, "p@ss word"])
@pytest.mark.parametrize("form", sorted(FORMS))
def test_a_token_is_masked_in_every_form(form: str, secret: str) -> None:
    echoed = FORMS[form](secret)
    text = f'HTTP 401: {{"detail": "bad token {echoed}", "hint": "check it"}}'
    masked = scrub(text, ["https://hooks.example.com/services/T0/B0/pathsecret", secret])
    assert echoed not in masked and "***" in masked, masked
    assert masked.startswith("HTTP 401") and '"hint": "check it"' in masked  # the rest is kept


@pytest.mark.parametrize(
    ("url", "hidden"),
    [
        ("https://bot:pw@hooks.example.com/hook", ["bot:pw", "pw", "bot"]),  # short user and password
        ("https://t0ken1234@hooks.example.com/hook", ["t0ken1234"]),  # a user name alone is the token
        ("https://hooks.example.com/hook?key=a%2Fb&v=2", ["a/b", "key=a%2Fb&v=2"]),  # `key`: however short
        (
            "https://hooks.example.com/services/T0/B0/pathsecret9",
            ["pathsecret9", "/services/T0/B0/pathsecret9"],
        ),
    ],
)
def test_secret_url_parts_are_masked_in_every_form(url: str, hidden: list[str]) -> None:
    for value in hidden:
        for form in ("raw", "JSON, escaped slash", "URL-encoded"):
            echoed = FORMS[form](value)
            assert echoed not in scrub(f"failed: {echoed}.", [url]), (value, form)
    assert scrub("HTTP 500 at 2026-01-05 v=2", [url]) == "HTTP 500 at 2026-01-05 v=2"  # short parts kept


def test_masking_is_one_pass() -> None:
    """A mask never gets masked again (a secret `*` or `**` does not eat the other masks)."""
    assert scrub("a * b ** c", ["*", "**"]) == "a *** b *** c"


# ------------------------------------------------------------------------------------ end to end


class EchoReceiver:
    """Answers every POST with a 401 whose JSON body echoes the request's Authorization header and path."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                echo = {"auth": self.headers.get("Authorization"), "path": self.path}
                body = json.dumps(echo).replace("/", "\\/").encode()  # PHP-style: every slash escaped
                self.send_response(401)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05})
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def echo() -> Iterator[EchoReceiver]:
    receiver = EchoReceiver()
    try:
        yield receiver
    finally:
        receiver.close()


@pytest.mark.parametrize("token", [SHORT, SPECIAL])
def test_a_token_the_server_echoes_json_escaped_never_reaches_the_log(
    echo: EchoReceiver, token: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"http://127.0.0.1:{echo.port}/hooks/{quote('s3cr/et', safe='')}?sig=xy"
    notifier = Notifier(kind="webhook", url=url, token=token, max_attempts=1, timeout_seconds=5.0)
    with caplog.at_level(logging.DEBUG, logger="mlops_dagster.alerts"):
        assert notifier.send(ALERT) is False
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "HTTP 401" in logged and '"auth": "Bearer ***"' in logged, logged
    for leaked in (token, json.dumps(token)[1:-1], "s3cr", "s3cr%2Fet", "xy"):
        assert leaked not in logged, (leaked, logged)
