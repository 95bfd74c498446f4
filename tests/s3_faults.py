"""A fault-injecting HTTP proxy in front of a local S3 (moto) on 127.0.0.1, for storage tests.

Requests are numbered in arrival order, reads (GET, HEAD) and writes (PUT, POST, DELETE) each in
their own sequence, so that the faults hit both whatever their mix. The schedule is fixed by
`FaultPlan`, never random:

- every `every`-th read and every `every`-th write is answered `503` with an S3-style XML error body
  (`<Code>SlowDown</Code>`, as S3 answers when it sheds load) and is *not* forwarded, so the store
  never sees it;
- the first GET of an object (no query string) at or after read number `drop_after` whose key
  contains `drop_match` and whose answer has at least `drop_min_bytes` of body is forwarded, then
  answered with its status line, its headers (with the full Content-Length) and half its body, and the
  connection is closed: one connection dropped mid-response, exactly once;
- `fail_all=True` answers every request `503` (an unusable store).

The proxy counts what it relayed and what it injected, split into reads (GET, HEAD) and writes (PUT,
POST, DELETE), so a test can show the faults really hit both. Requests and answers are relayed with
their headers unchanged (the Host header included, so request signatures still match) except the
hop-by-hop ones and Content-Length, which is recomputed: a chunked request body is sent upstream
whole, and each client connection keeps one upstream connection to moto.
"""

from __future__ import annotations

import http.client
import socket
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

READS = frozenset({"GET", "HEAD"})
WRITES = frozenset({"PUT", "POST", "DELETE"})
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "upgrade", "expect"}


@dataclass(frozen=True)
class FaultPlan:
    """What to inject. The default injects nothing (a pass-through proxy)."""

    every: int = 0  # answer every N-th read and every N-th write 503 (0: never)
    drop_after: int = 0  # drop one GET answer mid-body, at or after this read number (0: never)
    drop_match: str = ".parquet"
    drop_min_bytes: int = 256
    fail_all: bool = False
    code: str = "SlowDown"


def error_body(code: str, resource: str, request_id: str) -> bytes:
    """The XML body S3 sends with an error status."""
    message = (
        "Please reduce your request rate." if code == "SlowDown" else "Service is unable to handle request."
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message>"
        f"<Resource>{resource}</Resource><RequestId>{request_id}</RequestId></Error>"
    ).encode()


def kind(method: str) -> str:
    """`read` or `write`, by HTTP method."""
    return "read" if method in READS else "write"


@dataclass
class FaultLog:
    """What the proxy saw and did (read it after the requests have finished)."""

    requests: Counter[str] = field(default_factory=Counter)  # by `read` / `write`
    injected_503: list[tuple[int, str, str]] = field(default_factory=list)  # (number, method, path)
    dropped: list[tuple[int, str, str]] = field(default_factory=list)

    def injected_by_kind(self) -> Counter[str]:
        return Counter(kind(method) for _, method, _ in self.injected_503)

    @property
    def total(self) -> int:
        return sum(self.requests.values())


class FaultyProxy:
    """A threaded HTTP proxy on 127.0.0.1 that relays to `upstream` and injects the faults of `plan`."""

    def __init__(self, upstream: str, plan: FaultPlan) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.plan = plan
        self.log = FaultLog()
        self._lock = threading.Lock()
        self._numbers: Counter[str] = Counter()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.proxy = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, name="s3-fault-proxy", daemon=True)

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FaultyProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    # Decisions, taken under the lock so that each numbering is one sequence across threads.

    def arrive(self, method: str, path: str) -> tuple[int, bool]:
        """Number this request in its sequence (reads or writes); True when it must be answered 503."""
        with self._lock:
            self._numbers[kind(method)] += 1
            n, plan = self._numbers[kind(method)], self.plan
            self.log.requests[kind(method)] += 1
            fail = plan.fail_all or (plan.every > 0 and n % plan.every == 0)
            if fail:
                self.log.injected_503.append((n, method, path))
            return n, fail

    def claim_drop(self, n: int, method: str, path: str, size: int) -> bool:
        """True (once) when this answer is the one to cut mid-body."""
        plan = self.plan
        if method != "GET" or not plan.drop_after or n < plan.drop_after:
            return False
        url = urlsplit(path)
        if url.query or plan.drop_match not in url.path or size < plan.drop_min_bytes:
            return False
        with self._lock:
            if self.log.dropped:
                return False
            self.log.dropped.append((n, method, path))
            return True


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ThreadingHTTPServer
    _upstream: http.client.HTTPConnection | None = None

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes: without this, Nagle's algorithm and the client's
        # delayed ACK hold every answer for ~40 ms, which would slow the clean loop, not only the faulty one.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass

    def do_GET(self) -> None:
        self._relay()

    do_HEAD = do_PUT = do_POST = do_DELETE = do_GET

    @property
    def proxy(self) -> FaultyProxy:
        return self.server.proxy  # type: ignore[attr-defined, no-any-return]

    def _relay(self) -> None:
        body = self._read_body()
        n, fail = self.proxy.arrive(self.command, self.path)
        if fail:
            self._send_503(n)
            return
        status, reason, headers, data = self._forward(body)
        if self.proxy.claim_drop(n, self.command, self.path, len(data)):
            self._send(status, reason, headers, data[: len(data) // 2], length=len(data))
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._send(status, reason, headers, data, length=None if self.command == "HEAD" else len(data))

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _forward(self, body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
        for attempt in (1, 2):  # a kept-alive upstream connection may have been closed by moto
            if self._upstream is None:
                self._upstream = http.client.HTTPConnection(*self.proxy.upstream, timeout=60)
            conn = self._upstream
            try:
                conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for name, value in self.headers.items():
                    if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                        conn.putheader(name, value)
                if body or self.command in WRITES:
                    conn.putheader("Content-Length", str(len(body)))
                conn.endheaders(body or None)
                response = conn.getresponse()
                data = response.read()
            except (ConnectionError, http.client.HTTPException):
                conn.close()
                self._upstream = None
                if attempt == 2:
                    raise
                continue
            headers = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP]
            return response.status, response.reason, headers, data
        raise AssertionError("unreachable")

    def _send(
        self, status: int, reason: str, headers: list[tuple[str, str]], data: bytes, *, length: int | None
    ) -> None:
        self.send_response_only(status, reason)
        for name, value in headers:
            if length is None or name.lower() != "content-length":
                self.send_header(name, value)
        if length is not None:
            self.send_header("Content-Length", str(length))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _send_503(self, n: int) -> None:
        request_id = f"FAULT-{kind(self.command)}-{n:06d}"
        data = error_body(self.proxy.plan.code, urlsplit(self.path).path, request_id)
        headers = [("Content-Type", "application/xml"), ("x-amz-request-id", request_id)]
        self._send(503, "Service Unavailable", headers, data, length=len(data))


@contextmanager
def faulty_proxy(upstream: str, plan: FaultPlan | None = None) -> Iterator[FaultyProxy]:
    """Run a `FaultyProxy` in front of `upstream` for the duration of the block."""
    proxy = FaultyProxy(upstream, plan or FaultPlan()).start()
    try:
        yield proxy
    finally:
        proxy.stop()


# --------------------------------------------------------------------------------------------------
# The demo loop on a storage root (shared by tests/e2e/test_s3_faults.py and benchmarks/s3_loop.py)

FIRST, LAST, BAD = "2026-01-01", "2026-01-08", "2026-01-05"
LOOP_ENVIRONMENT = "s3-loop"
PARQUET_ASSETS = ("churn/dataset", "features/customer_activity", "churn/training_set")
LOOP_ASSETS = (
    *PARQUET_ASSETS,
    *(f"churn/{n}" for n in ("candidate", "champion", "edge_bundle", "drift_report")),
)


@dataclass
class LoopRun:
    """The runs of one demo loop and the instance that recorded them."""

    instance: Any
    quarantined: Any  # the run the quality incident stopped (expected to fail)
    held: list[str]  # the files of its quarantine entry, listed right after that run
    runs: list[Any]  # every other run, in order (each expected to succeed)

    def failures(self) -> list[str]:
        """One line per failed step of the runs expected to succeed."""
        return [
            f"{run.run_id}: {event.step_key}: {event.step_failure_data.error}"
            for run in self.runs
            for event in run.all_events
            if event.is_step_failure
        ]


def run_demo_loop(
    project: Path, storage: str, *, first: str = FIRST, last: str = LAST, bad: str = BAD
) -> LoopRun:
    """The demo loop in an environment whose storage root is `storage` (e.g. `s3://bucket/root`).

    A quality incident quarantined, then released by good data for the day; every day's dataset
    partition; the feature group, training set, candidate, champion (model mirrored under the root)
    and edge bundle; the last day's drift report. One in-process run per partition, as the sensors
    launch them, on a fresh ephemeral instance. The demo's landing files go to `$MLOPS_DEMO_DATA`
    (local: they are the outside world); everything the library keeps goes under `storage`.
    """
    import dagster as dg
    from upath import UPath

    from assets import feed
    from mlops_dagster import build_definitions
    from mlops_dagster.spec.environments import EnvironmentSpec

    env = EnvironmentSpec(name=LOOP_ENVIRONMENT, storage=storage)
    defs = build_definitions(project / "pipelines", environment=env.name, environments=[env])
    instance = dg.DagsterInstance.ephemeral()
    key = dg.AssetKey

    def materialize(keys: list[Any], partition: str | None = None) -> Any:
        return dg.materialize(
            list(defs.assets),
            selection=keys,
            instance=instance,
            resources=defs.resources,
            partition_key=partition,
            raise_on_error=False,
        )

    dataset = [key(["churn", "dataset"])]
    feed.write_batch("churn", bad, "quality_incident")
    quarantined = materialize(dataset, bad)
    entry = UPath(storage) / "data" / ".quarantine" / "churn" / "dataset" / bad
    entry.fs.invalidate_cache(entry.path)
    held = sorted(p.name for p in entry.iterdir()) if entry.exists() else []
    feed.write_batch("churn", bad, "normal")
    runs = [materialize(dataset, day.isoformat()) for day in _days(first, last)]
    loop = [key(["features", "customer_activity"])]
    loop += [key(["churn", name]) for name in ("training_set", "candidate", "champion", "edge_bundle")]
    runs.append(materialize(loop))
    runs.append(materialize([key(["churn", "drift_report"])], last))
    return LoopRun(instance, quarantined, held, runs)


def _days(first: str, last: str) -> Iterator[date]:
    day, end = date.fromisoformat(first), date.fromisoformat(last)
    while day <= end:
        yield day
        day += timedelta(days=1)


@dataclass(frozen=True)
class Materialization:
    asset: str  # "churn/dataset"
    partition: str | None
    data_version: str | None
    row_count: int | None


def materializations(
    instance: Any, assets: Iterable[str] = PARQUET_ASSETS
) -> dict[tuple[str, str | None], Materialization]:
    """The latest materialization of each (asset, partition), with its data version and row count."""
    import dagster as dg

    out: dict[tuple[str, str | None], Materialization] = {}
    for asset in assets:
        records = instance.fetch_materializations(
            dg.AssetKey(asset.split("/")), limit=1000, ascending=True
        ).records
        for record in records:
            event = record.asset_materialization
            row_count = event.metadata.get("dagster/row_count")
            out[(asset, event.partition)] = Materialization(
                asset,
                event.partition,
                (event.tags or {}).get("dagster/data_version"),
                None if row_count is None else int(row_count.value),
            )
    return out
