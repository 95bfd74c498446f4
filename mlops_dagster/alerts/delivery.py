"""POST one JSON body with bounded retries, standard library only; never raises, never shows secrets.

Retried: connection errors, timeouts, HTTP 429 and 5xx (honouring a small `Retry-After`). Not retried:
other 4xx, redirects (never followed, so the `Authorization` header cannot travel to another host) and
malformed requests. The wait before attempt n+1 is exponential with jitter, capped at
`BACKOFF_CAP_SECONDS`.

An optional `deadline` bounds the whole delivery in time (a sensor tick has a timeout): no attempt
starts with less than `MIN_ATTEMPT_SECONDS` left, each attempt's timeout is cut to end by the deadline,
and no retry is waited for when it could not start in time.
"""

from __future__ import annotations

import http.client
import json
import random
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import Message
from email.utils import parsedate_to_datetime
from urllib.parse import parse_qsl, quote, quote_plus, unquote, unquote_plus, urlsplit

BACKOFF_CAP_SECONDS = 10.0
RETRY_AFTER_LIMIT_SECONDS = 10.0  # a larger Retry-After is ignored in favour of the normal backoff
MIN_ATTEMPT_SECONDS = 0.5  # with a deadline: an attempt with less time than this left is not started
_ERROR_BODY_CHARS = 200
URL_PART_MIN_CHARS = 4  # a secret URL's path, query and fragment parts shorter than this are not masked
# ...unless a query (or fragment) parameter's name says it holds a credential: its value is always masked.
_SECRET_KEY = re.compile(r"key|token|secret|sig|pass|pwd|auth|credential|code", re.IGNORECASE)
_MASK = "***"


@dataclass(frozen=True)
class Attempt:
    """What one POST came to: an HTTP status, or none if no response arrived."""

    status: int | None
    reason: str
    retryable: bool
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass(frozen=True)
class Delivery:
    """The outcome of all attempts: `reason` is the last failure ("" when delivered).

    `out_of_time` is True when the deadline stopped it (then `attempts` may be 0: nothing was sent).
    """

    ok: bool
    attempts: int
    status: int | None
    reason: str
    out_of_time: bool = False


def post_json(
    url: str,
    body: bytes,
    *,
    headers: Mapping[str, str],
    timeout: float,
    max_attempts: int,
    backoff_seconds: float,
    on_retry: Callable[[int, Attempt, float], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    deadline: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Delivery:
    """POST `body` to `url` until a 2xx, a non-retryable answer, `max_attempts` attempts, or the deadline.

    `on_retry(attempt_number, attempt, delay)` is called before each wait, e.g. to log it.

    `deadline` is a `clock()` value (by default `time.monotonic()`); None means no time limit. With a
    deadline, an attempt starts only if at least `MIN_ATTEMPT_SECONDS` are left (or `timeout`, if
    smaller: a full attempt), its timeout is `min(timeout, time left)`, and a retry whose wait would leave
    less than that is not waited for. Then the `Delivery` fails with `out_of_time=True` and a reason
    that says the time budget ran out (and why the last attempt failed).
    """
    opener = urllib.request.build_opener(_NoRedirect())
    attempt = Attempt(None, "not attempted", retryable=False)
    floor = min(MIN_ATTEMPT_SECONDS, timeout)
    number = 0
    for number in range(1, max(1, max_attempts) + 1):
        attempt_timeout = timeout
        if deadline is not None:
            left = deadline - clock()
            if left <= 0 or left < floor:
                return _out_of_time(number - 1, attempt, f"{max(0.0, left):.2f}s left for attempt {number}")
            attempt_timeout = min(timeout, left)
        attempt = _post_once(opener, url, body, headers, attempt_timeout)
        if attempt.ok:
            return Delivery(ok=True, attempts=number, status=attempt.status, reason="")
        if not attempt.retryable or number >= max_attempts:
            break
        delay = backoff_delay(number, backoff_seconds, attempt.retry_after)
        if deadline is not None and clock() + delay + floor > deadline:
            return _out_of_time(number, attempt, f"no time left to retry in {delay:.2f}s")
        if on_retry is not None:
            on_retry(number, attempt, delay)
        sleep(delay)
    return Delivery(ok=False, attempts=number, status=attempt.status, reason=attempt.reason)


def _out_of_time(attempts: int, last: Attempt, why: str) -> Delivery:
    reason = f"time budget ran out ({why})"
    if attempts:
        reason += f"; last attempt: {last.reason}"
    return Delivery(ok=False, attempts=attempts, status=last.status, reason=reason, out_of_time=True)


def backoff_delay(
    attempt: int,
    backoff_seconds: float,
    retry_after: float | None = None,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based).

    A server's `Retry-After` of at most `RETRY_AFTER_LIMIT_SECONDS` wins; otherwise
    `backoff_seconds * 2**(attempt-1)`, capped at `BACKOFF_CAP_SECONDS`, with "equal jitter" (a uniform
    draw from the upper half), so concurrent senders spread out but never retry instantly.
    """
    if retry_after is not None and 0 <= retry_after <= RETRY_AFTER_LIMIT_SECONDS:
        return retry_after
    ceiling = min(BACKOFF_CAP_SECONDS, max(0.0, backoff_seconds) * 2 ** min(attempt - 1, 30))
    return ceiling / 2 + rand() * ceiling / 2


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """`Retry-After` as seconds: either delta-seconds ("3") or an HTTP date; None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def redact_url(url: str) -> str:
    """Scheme, host and port only: webhook secrets live in paths (Slack) and query strings.

    "https://hooks.slack.com/services/T0/B0/XXXX" -> "https://hooks.slack.com/***".
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparsable url>"
    hidden = parts.path not in ("", "/") or parts.query or parts.fragment
    return f"{parts.scheme}://{host}{port}" + (f"/{_MASK}" if hidden else "")


def scrub(text: str, secrets: Sequence[str | None]) -> str:
    """`text` with every secret replaced by `***`, in every form a server or a library may echo it.

    A secret is masked by value, however short: raw, JSON-escaped (with or without `\\/` for `/`,
    `\\uXXXX` in either case, `&<>` escaped as Go does), percent-encoded (either hex case, `+` for
    spaces) or decoded, and as Python's `repr` writes it. A secret URL also has its credentials masked
    (`user:pass`, the password, the user name, however short), the values of query parameters named
    like a credential (`key`, `token`, `sig`...), however short, and its path, path segments, query
    string, other query values and fragment (those of at least `URL_PART_MIN_CHARS` characters: a
    URL's short parts, like `v=2`, are rarely secret and masking them would garble every message).
    """
    pieces: set[str] = set()
    for secret in secrets:
        if secret:
            pieces.update(_secret_pieces(secret))
    forms = {form for piece in pieces for form in _escaped_forms(piece)}
    if not forms:
        return text
    pattern = "|".join(re.escape(form) for form in sorted(forms, key=len, reverse=True))
    return re.sub(pattern, _MASK, text)


def _secret_pieces(secret: str) -> set[str]:
    """The secret itself and, for a URL, its credentials and secret-looking parts."""
    pieces = {secret}
    try:
        parts = urlsplit(secret)
        username, password = parts.username, parts.password
    except ValueError:
        return pieces
    if not (parts.scheme and parts.netloc):
        return pieces
    userinfo = parts.netloc.rpartition("@")[0]
    pieces.update(p for p in (userinfo, username, password) if p)  # credentials: masked however short
    derived = [parts.path, parts.query, parts.fragment, *parts.path.split("/")]
    for key, value in [*parse_qsl(parts.query), *parse_qsl(parts.fragment)]:
        if _SECRET_KEY.search(key):
            pieces.add(value)  # `?key=ab`: a credential, however short
        else:
            derived.append(value)
    pieces.update(p for p in derived if len(p) >= URL_PART_MIN_CHARS)
    pieces.discard("")
    return pieces


def _escaped_forms(piece: str) -> set[str]:
    """`piece` as it may appear in a message: raw, URL-encoded or decoded, JSON-escaped, repr'd."""
    plain = {piece, unquote(piece), unquote_plus(piece)}
    encoded = {
        quoted
        for value in plain
        for quoted in (quote(value, safe=""), quote(value), quote_plus(value, safe=""), quote_plus(value))
    }
    forms = plain | encoded
    forms |= {re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), value) for value in forms}
    escaped: set[str] = set()
    for value in forms:
        for ascii_only in (True, False):
            inner = json.dumps(value, ensure_ascii=ascii_only)[1:-1]
            html_safe = inner.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
            for form in (inner, inner.replace("/", "\\/"), html_safe, html_safe.replace("/", "\\/")):
                escaped.add(form)
                escaped.add(re.sub(r"\\u[0-9a-f]{4}", lambda m: "\\u" + m.group(0)[2:].upper(), form))
        escaped.add(repr(value)[1:-1])
    return {form for form in forms | escaped if form}


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Refuse redirects: a 3xx becomes an HTTPError instead of a re-sent request with our headers."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        return None


def _post_once(
    opener: urllib.request.OpenerDirector, url: str, body: bytes, headers: Mapping[str, str], timeout: float
) -> Attempt:
    try:
        request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
        with opener.open(request, timeout=timeout) as response:
            response.read()
            return Attempt(response.status, f"HTTP {response.status}", retryable=False)
    except urllib.error.HTTPError as e:  # a response, but not a 2xx (HTTPError is a URLError: first)
        return _http_error(e)
    except urllib.error.URLError as e:
        if isinstance(e.reason, TimeoutError):
            return Attempt(None, f"timed out after {timeout:.3g}s", retryable=True)
        return Attempt(None, f"connection failed: {e.reason}", retryable=True)
    except TimeoutError:  # connected, but the answer did not come in time
        return Attempt(None, f"timed out after {timeout:.3g}s", retryable=True)
    except (OSError, http.client.HTTPException) as e:  # reset, refused, bad status line...
        return Attempt(None, f"connection failed: {type(e).__name__}: {e}", retryable=True)
    except ValueError as e:  # malformed URL or header: retrying cannot help
        return Attempt(None, f"invalid request: {e}", retryable=False)


def _http_error(e: urllib.error.HTTPError) -> Attempt:
    status = e.code
    try:
        snippet = e.read(_ERROR_BODY_CHARS).decode("utf-8", "replace")
    except Exception:  # the body is only a hint for the log
        snippet = ""
    finally:
        e.close()
    snippet = " ".join(snippet.split())
    reason = f"HTTP {status} {e.reason}".rstrip() + (f": {snippet}" if snippet else "")
    retryable = status == 429 or status >= 500
    headers: Message | None = e.headers
    retry_after = parse_retry_after(headers.get("Retry-After")) if retryable and headers is not None else None
    if status in (301, 302, 303, 307, 308):
        reason += " (redirects are not followed: configure the final URL)"
    return Attempt(status, reason, retryable=retryable, retry_after=retry_after)
