"""Serving: the edge bundle in process, the cloud bento over HTTP (both runtimes), and the sizes, in one run.

Run from the repo root:

    .venv/bin/python benchmarks/serving.py [--iterations 5000] [--requests 1000] [--duration 20] [--workers 2]
        [--log-rounds 10] [--log-duration 10]

Setup (not timed): three demo-like champions trained the way the candidate asset trains them
(`train_candidate` from a spec) on a seeded frame: HistGradientBoostingClassifier and
LogisticRegression on a churn-like frame (5 numeric + 2 categorical features, NaN/None in some), Ridge
on a demand-like frame (price, promo, plan). Each is converted with `convert_to_onnx` and written as a
bundle with `write_bundle`. The HistGradientBoosting champion is first stored (`save_version`, pipeline
`bench_churn`) and its bundle written for that stored version (its version and sha256), then built twice
(`build_bento`, `--workers` worker processes, no image) in a temporary BentoML store: runtime `onnx`
(`onnx_bundle=` its bundle, run by onnxruntime in an async API: what the pipelines serve by default)
and runtime `sklearn` (the pickle on a pandas frame in a sync API: the fallback).

1. Edge, in process, one row: `Predictor.predict(row_dict)` (and `predict_proba` for classifiers)
   against a bare `onnxruntime.InferenceSession.run` on the same model.onnx with prebuilt inputs (the
   floor) and against the sklearn champion's `predict` / `predict_proba` on a prebuilt 1-row DataFrame.
   Warm-up, then `--iterations` calls each, timed one by one with `time.perf_counter_ns`.
2. Cloud, over HTTP on 127.0.0.1: three servers, one after another (never two at once), each
   `python -m bentoml serve ...` in its own process group, torn down whatever happens:
   - the ceiling, an empty endpoint on the same serving stack: a BentoML service module written at run
     time with the bento service's settings (`@bentoml.service(name=..., workers=..., traffic={"timeout":
     60}, envs=...)` and the same `ModelInfoMiddleware` with the same kwargs), whose one API,
     `POST /empty`, takes no input and returns `{}`; measured with body `{}`;
   - the onnx bento (`bentoml serve <tag>`, the command and environment of
     tests/packaging/test_bento_served.py): `POST /predict`, and BentoML's `GET /livez` (answered
     before the API machinery, a harsher reference);
   - the sklearn bento: `POST /predict`.
   Before timing, each bento's answer to the benchmark row must equal the in-process one (onnx: the
   bundle's `Predictor.predict_with_proba`; sklearn: the champion's `predict` / `predict_proba`): the
   same labels, probabilities within 1e-6. Then, per endpoint: `--requests` one-row requests one after
   another over one reused keep-alive `http.client.HTTPConnection` after 200 warm-up ones (p50/p99);
   and, after 3 s of warm-up load per server, 32 concurrent connections for `--duration` seconds with
   `wrk -t2 -c32` (or, without wrk, 32 Python threads with a keep-alive connection each): requests per
   second and errors (non-2xx answers and socket errors). Targets: `/predict` p50 <= 3 ms at
   concurrency 1; at 32 connections >= 80% of `POST /empty`'s requests per second, with 0 errors. The
   share of `/livez` is information only.
   In process, the service's own steps for the same request body: pydantic validation, then for onnx
   `predict_rows_onnx` with the stored bundle's `Predictor` as `load_checked_bundle` loads it (and its
   `predict_with_proba` alone), for sklearn `to_frame`, the model's `predict` + `predict_proba` and the
   whole `predict_rows`; the response model and its JSON.
   Prediction logging: two more onnx bentos of the same version, built as the bento asset builds them
   (`settings_for(spec, root)`) with `serving.prediction_log.enabled` off and on (default queue and
   flush settings, files under the run's temporary folder), served at the same time with the same
   workers; after a check and 3 s of warm-up load each, 32-connection load alternates between them
   for `--log-rounds` rounds of `--log-duration` seconds, off-on then on-off (requests carry the
   entity and timestamp). Target: the median of the rounds' ratios (req/s with logging on over off,
   each round's pair measured back to back, so a busy machine weighs on both alike) >= 90%, 0
   errors. Then the logging server is
   stopped cleanly and the rows in its Parquet files are counted against its 200 answers; and, in
   process, one `PredictionLog.log` call (what a request pays) is timed.
3. Size: model.onnx and the whole bundle folder against the joblib pickle of each champion; the sklearn
   bento against the pickle, and the onnx bento against the sklearn bento.

OMP_NUM_THREADS=1 is set here as the bento sets it for its server, so sklearn runs single-threaded in
both places; onnxruntime uses 1 intra-op thread (the Predictor's default).
"""

# ruff: noqa: E402  (the environment must be set before bentoml is imported)

import os
import tempfile
from pathlib import Path

_TMP = tempfile.TemporaryDirectory(prefix="mlops-serving-bench-")
ROOT = Path(_TMP.name)
os.environ["BENTOML_HOME"] = str(ROOT / "bentoml")
os.environ["BENTOML_DO_NOT_TRACK"] = "true"
os.environ["DO_NOT_TRACK"] = "1"
os.environ["GX_ANALYTICS_ENABLED"] = "false"
os.environ["OMP_NUM_THREADS"] = "1"

import argparse
import http.client
import json
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version as dist_version
from typing import Any

import numpy as np
import pandas as pd

from mlops_dagster.packaging import convert_to_onnx, write_bundle
from mlops_dagster.packaging.bento import BentoResult, build_bento
from mlops_dagster.packaging.edge_predictor import _NUMPY_TYPES, Predictor
from mlops_dagster.packaging.prediction_log import PredictionLog, settings_for
from mlops_dagster.packaging.service_template import (
    load_checked_bundle,
    max_body_bytes,
    predict_rows,
    predict_rows_onnx,
    request_model,
    response_model,
    service_info,
    to_frame,
)
from mlops_dagster.registry.store import StoredVersion, save_version, serialize, sha256_hex
from mlops_dagster.spec.models import PipelineSpec, PredictionLogSpec
from mlops_dagster.training.train import prepare_frame, train_candidate

CHURN_NUMERIC = ["tenure_months", "monthly_charges", "support_calls", "sessions_7d", "days_since_login"]
CHURN_TEXT = ["plan", "region"]
CHURN_FEATURES = CHURN_NUMERIC + CHURN_TEXT
DEMAND_FEATURES = ["price", "promo", "plan"]
CASES: dict[str, tuple[str, str, dict[str, Any], list[str]]] = {
    "HistGradientBoostingClassifier": (
        "classification",
        "sklearn.ensemble.HistGradientBoostingClassifier",
        {"max_iter": 100, "random_state": 0},  # as pipelines/churn.yaml
        CHURN_FEATURES,
    ),
    "LogisticRegression": (
        "classification",
        "sklearn.linear_model.LogisticRegression",
        {"max_iter": 2000},
        CHURN_FEATURES,
    ),
    "Ridge": ("regression", "sklearn.linear_model.Ridge", {"alpha": 1.0}, DEMAND_FEATURES),
}
CLOUD_CASE = "HistGradientBoostingClassifier"
CLOUD_PIPELINE = "bench_churn"
EDGE_RATIO_TARGET = 1.5  # Predictor / bare onnxruntime
HTTP_P50_TARGET_MS = 3.0
THROUGHPUT_TARGET = 0.80  # /predict req/s over the empty endpoint's
LOGGING_TARGET = 0.90  # /predict req/s with serving.prediction_log on over off
CONCURRENCY = 32
READY_TIMEOUT = 120.0
PROBA_TOLERANCE = 1e-6  # HTTP answer vs in-process answer
REPO_ROOT = Path(__file__).resolve().parents[1]
EMPTY_PATH = "/empty"
EMPTY_MODULE = "bench_empty_service"
EMPTY_CLASS = "EmptyService"
RUNTIME_LABELS = {"onnx": "onnx runtime (the default)", "sklearn": "sklearn runtime (the fallback)"}


# ---------------------------------------------------------------------------------------------- data


def dataset(n: int = 4000) -> pd.DataFrame:
    rng = np.random.default_rng(2026)
    df = pd.DataFrame(
        {
            "customer_id": np.arange(n),
            "event_time": pd.date_range("2026-01-01", periods=n, freq="15min"),
            "tenure_months": rng.integers(0, 120, n).astype(np.int64),
            "monthly_charges": rng.uniform(20.0, 150.0, n),
            "support_calls": rng.poisson(1.5, n).astype(np.int64),
            "sessions_7d": rng.poisson(6.0, n).astype(np.int64),
            "days_since_login": rng.exponential(5.0, n).round(1),
            "plan": rng.choice(np.array(["basic", "standard", "premium", None], dtype=object), n),
            "region": rng.choice(np.array(["north", "south", "east", "west"], dtype=object), n),
            "price": rng.uniform(5.0, 50.0, n).round(2),
            "promo": rng.integers(0, 2, n).astype(np.int64),
        }
    )
    df.loc[::13, "monthly_charges"] = np.nan
    df.loc[::29, "days_since_login"] = np.nan
    df.loc[5::41, "region"] = None
    score = (
        0.02 * df["monthly_charges"].fillna(80)
        - 0.03 * df["tenure_months"]
        + 0.5 * df["support_calls"]
        - 0.1 * df["sessions_7d"]
        + 0.05 * df["days_since_login"].fillna(5)
        + (df["plan"] == "basic") * 1.0
        + rng.normal(0, 0.7, n)
    )
    df["churned"] = (score > score.median()).astype(np.int64)
    df["units"] = (
        60 - 0.8 * df["price"] + 6 * df["promo"] + 3 * (df["plan"] == "premium") + rng.normal(0, 2, n)
    ).round(1)
    return df


def spec_for(name: str, task: str, estimator: str, params: dict[str, Any]) -> PipelineSpec:
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


def plain(value: Any) -> Any:
    """A JSON value as a client sends it: None for missing, Python numbers."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value


@dataclass
class Champion:
    name: str
    task: str
    spec: PipelineSpec
    model: Any
    features: list[str]
    schema: dict[str, str]
    bundle: Path
    joblib_bytes: int
    row: dict[str, Any]  # one request row, JSON values
    frame: pd.DataFrame  # the same row as the champion's 1-row input
    stored: StoredVersion | None  # the cloud champion only: its version in the BentoML store


def train_all(data: pd.DataFrame) -> dict[str, Champion]:
    out = {}
    # A full row (no missing value) from the latest rows: a typical request.
    row_index = int(data.dropna(subset=CHURN_FEATURES).index[-1])
    for name, (task, estimator, params, features) in CASES.items():
        spec = spec_for(f"bench_{name.lower()}", task, estimator, params)
        result = train_candidate(spec, data, features)
        pickled = serialize(result.model)
        digest = sha256_hex(pickled)
        pipeline, version, stored = spec.name, digest[:32], None
        if name == CLOUD_CASE:
            # The bento's bundle must package the stored version: stored first, bundle for its version.
            card = {
                "features": result.features,
                "feature_schema": result.schema,
                "task": task,
                "estimator": spec.model.estimator,
            }
            stored = save_version(CLOUD_PIPELINE, result.model, card, "# {version}")
            if stored.sha256 != digest:
                raise RuntimeError(f"stored {stored.tag} has sha256 {stored.sha256}, the model {digest}")
            pipeline, version, digest = stored.pipeline, stored.version, stored.sha256
        bundle = write_bundle(
            ROOT / "bundles" / name,
            convert_to_onnx(result.model, result.schema, task),
            pipeline=pipeline,
            version=version,
            model_sha256=digest,
            features=result.features,
            feature_schema=result.schema,
            task=task,
            classes=getattr(result.model, "classes_", None),
        )
        one = data.loc[[row_index]]
        frame = prepare_frame(spec, one, result.features)[0]
        row = {k: plain(v) for k, v in frame.iloc[0].items()}
        out[name] = Champion(
            name,
            task,
            spec,
            result.model,
            result.features,
            result.schema,
            bundle,
            len(pickled),
            row,
            frame,
            stored,
        )
    return out


# ------------------------------------------------------------------------------------------- timing


@dataclass(frozen=True)
class Timing:
    p50_us: float
    p99_us: float

    def show(self) -> str:
        return f"{fmt_us(self.p50_us)} (p99 {fmt_us(self.p99_us)})"


def fmt_us(us: float) -> str:
    return f"{us / 1000:.2f} ms" if us >= 1000 else f"{us:.1f} µs"


def percentiles(ns: list[int]) -> Timing:
    arr = np.asarray(ns, dtype=np.float64) / 1000.0
    return Timing(float(np.percentile(arr, 50)), float(np.percentile(arr, 99)))


def time_calls(fn: Callable[[], Any], iterations: int, warmup: int) -> Timing:
    for _ in range(warmup):
        fn()
    clock = time.perf_counter_ns
    samples = [0] * iterations
    for i in range(iterations):
        start = clock()
        fn()
        samples[i] = clock() - start
    return percentiles(samples)


@dataclass(frozen=True)
class EdgeResult:
    name: str
    method: str
    predictor: Timing
    bare: Timing
    sklearn: Timing


def bench_edge(champion: Champion, iterations: int, warmup: int) -> list[EdgeResult]:
    import onnxruntime as ort

    predictor = Predictor(champion.bundle)
    manifest = predictor.manifest
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(
        str(champion.bundle / manifest["model_file"]),
        sess_options=options,
        providers=["CPUExecutionProvider"],
    )
    feeds = {}
    for spec in manifest["inputs"]:
        value = champion.row.get(spec["name"])
        if spec["type"] == "string":
            feeds[spec["name"]] = np.array([["" if value is None else str(value)]], dtype=object)
        else:
            dtype = _NUMPY_TYPES[spec["type"]]
            feeds[spec["name"]] = np.array([[np.nan if value is None else value]], dtype=dtype)
    roles = {o["role"]: o["name"] for o in manifest["outputs"]}
    row, frame, model = champion.row, champion.frame, champion.model
    # Same answers before timing anything.
    np.testing.assert_allclose(predictor.predict(row), model.predict(frame), rtol=1e-5, err_msg=champion.name)
    methods = [("predict", "prediction", predictor.predict, model.predict)]
    if champion.task == "classification":
        np.testing.assert_allclose(predictor.predict_proba(row), model.predict_proba(frame), atol=1e-5)
        methods.append(("predict_proba", "probabilities", predictor.predict_proba, model.predict_proba))

    def measure(
        method: str, outputs: list[str], ours: Callable[..., Any], theirs: Callable[..., Any]
    ) -> EdgeResult:
        return EdgeResult(
            champion.name,
            method,
            predictor=time_calls(lambda: ours(row), iterations, warmup),
            bare=time_calls(lambda: session.run(outputs, feeds), iterations, warmup),
            sklearn=time_calls(lambda: theirs(frame), iterations, warmup),
        )

    return [measure(method, [roles[role]], ours, theirs) for method, role, ours, theirs in methods]


# -------------------------------------------------------------------------------------------- cloud


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """`bentoml serve <target>` on 127.0.0.1 in its own process group; `stop()` kills the whole group.

    `target` is a bento tag, or `module:Class` of a service module in `cwd`; `extra_env` is added to
    this process's environment.
    """

    def __init__(
        self, target: str, name: str, *, cwd: Path | None = None, extra_env: dict[str, str] | None = None
    ) -> None:
        self.target = target
        self.port = free_port()
        self.log = ROOT / f"serve-{name}.log"
        env = {**os.environ, **(extra_env or {}), "BENTOML_DO_NOT_TRACK": "true", "DO_NOT_TRACK": "1"}
        cmd = [
            sys.executable,
            "-m",
            "bentoml",
            "serve",
            target,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def wait_ready(self) -> float:
        start = time.monotonic()
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"bentoml serve {self.target} exited with {self.proc.returncode}:\n{self.tail()}"
                )
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/readyz")
                if conn.getresponse().status == 200:
                    conn.close()
                    return time.monotonic() - start
                conn.close()
            except OSError:
                pass
            if time.monotonic() - start > READY_TIMEOUT:
                raise RuntimeError(f"{self.target} not ready after {READY_TIMEOUT:.0f} s:\n{self.tail()}")
            time.sleep(0.25)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def processes(self) -> list[tuple[int, str]]:
        """(pid, command line) of the server and all its descendants (circus starts each worker with
        `setsid`, in a session and process group of its own)."""
        out = subprocess.run(
            ["ps", "-e", "-o", "pid=,ppid=,args="], capture_output=True, text=True, check=False
        ).stdout
        table = {}
        for line in out.splitlines():
            parts = line.split(None, 2)
            if len(parts) == 3:
                table[int(parts[0])] = (int(parts[1]), parts[2].strip())
        found, frontier = [self.proc.pid], [self.proc.pid]
        while frontier:
            frontier = [pid for pid, (ppid, _) in table.items() if ppid in frontier]
            found.extend(frontier)
        return [(pid, table[pid][1]) for pid in found if pid in table]

    def stop(self) -> None:
        """SIGTERM the server's process group (the arbiter stops its workers), then SIGKILL whatever is
        left of it and of the workers' own process groups."""
        workers = [(pid, cmd) for pid, cmd in self.processes() if pid != self.proc.pid]
        for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        for pid, cmdline in workers:
            try:  # normally already gone after a clean shutdown; never a reused pid
                if Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").strip() == cmdline.encode():
                    os.killpg(pid, signal.SIGKILL)
            except (OSError, ProcessLookupError):
                pass


def http_latency(port: int, method: str, path: str, body: bytes | None, requests: int, warmup: int) -> Timing:
    """One keep-alive connection, requests one after another; every answer must be 200."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json"} if body is not None else {}
    clock = time.perf_counter_ns
    samples = []
    try:
        for i in range(warmup + requests):
            start = clock()
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            elapsed = clock() - start
            if resp.status != 200:
                raise RuntimeError(f"{method} {path} answered {resp.status}: {data[:300]!r}")
            if i >= warmup:
                samples.append(elapsed)
    finally:
        conn.close()
    return percentiles(samples)


@dataclass(frozen=True)
class Load:
    rps: float
    requests: int
    errors: int
    p50_ms: float | None
    p99_ms: float | None
    tool: str


_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _wrk_ms(text: str, pct: str) -> float | None:
    m = re.search(rf"^\s*{pct}%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)
    return float(m.group(1)) * _UNITS_MS[m.group(2)] if m else None


def load_wrk(port: int, path: str, body: bytes | None, duration: int) -> Load:
    script = ROOT / "wrk.lua"
    lines = []
    if body is not None:
        lines = [
            'wrk.method = "POST"',
            f"wrk.body = {json.dumps(body.decode())}",
            'wrk.headers["Content-Type"] = "application/json"',
        ]
    script.write_text("\n".join(lines) + "\n")
    cmd = [
        "wrk",
        "-t2",
        f"-c{CONCURRENCY}",
        f"-d{duration}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(script),
        f"http://127.0.0.1:{port}{path}",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=duration + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = 0
    if m := re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out):
        errors += int(m.group(1))
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        errors += sum(int(g) for g in m.groups())
    return Load(rps, total, errors, _wrk_ms(out, "50"), _wrk_ms(out, "99"), "wrk -t2 -c32")


def load_python(port: int, path: str, body: bytes | None, duration: int) -> Load:
    """32 threads, each with its own keep-alive connection, for `duration` seconds."""
    method = "POST" if body is not None else "GET"
    headers = {"Content-Type": "application/json"} if body is not None else {}
    counts = [[0, 0] for _ in range(CONCURRENCY)]
    latencies: list[list[int]] = [[] for _ in range(CONCURRENCY)]
    stop_at = time.monotonic() + duration

    def worker(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        while time.monotonic() < stop_at:
            start = time.perf_counter_ns()
            try:
                conn.request(method, path, body=body, headers=headers)
                resp = conn.getresponse()
                resp.read()
                ok = resp.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            counts[i][0 if ok else 1] += 1
            latencies[i].append(time.perf_counter_ns() - start)
        conn.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(CONCURRENCY)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    ok, errors = sum(c[0] for c in counts), sum(c[1] for c in counts)
    timing = percentiles([x for lat in latencies for x in lat])
    return Load(ok / elapsed, ok + errors, errors, timing.p50_us / 1000, timing.p99_us / 1000, "Python x32")


@dataclass
class Served:
    """One server's measurements: concurrency-1 timings and loads, keyed `METHOD /path`."""

    name: str
    ready_s: float
    processes: list[tuple[int, str]]
    c1: dict[str, Timing]
    load: dict[str, Load]

    @property
    def worker_processes(self) -> int:
        return sum("_bentoml_impl.worker.service" in cmd for _, cmd in self.processes)


@dataclass
class CloudResult:
    bentos: dict[str, BentoResult]  # by runtime
    served: dict[str, Served]  # by runtime, and "empty"
    breakdown: dict[str, dict[str, Timing]]  # by runtime
    workers: int


EMPTY_SERVICE = '''"""Generated by benchmarks/serving.py: the serving stack's ceiling, an API doing no work.

The service settings and the middleware (with the same keyword arguments) of the bento's service,
read from `{config}`; `POST {path}` takes no input and answers `{{}}`.
"""

import json
from pathlib import Path

import bentoml

from mlops_dagster.packaging.service_template import ModelInfoMiddleware

SETTINGS = json.loads(Path(__file__).with_name("{config}").read_text())


@bentoml.service(
    name=SETTINGS["service_name"],
    workers=int(SETTINGS["workers"]),
    traffic={{"timeout": 60}},
    envs=SETTINGS["envs"],
)
class {cls}:
    @bentoml.api(route="{path}")
    async def empty(self) -> dict:
        return {{}}


{cls}.add_asgi_middleware(
    ModelInfoMiddleware,
    version=SETTINGS["version"],
    sha256=SETTINGS["sha256"],
    info=SETTINGS["info"],
    max_body_bytes=SETTINGS["max_body_bytes"],
)
'''


def bento_config(bento: BentoResult) -> dict[str, Any]:
    """The service config baked into the bento (what its server runs with)."""
    return dict(json.loads((Path(bento.path) / "src" / "bento_config.json").read_text()))


def write_empty_service(config: dict[str, Any]) -> Path:
    """The empty-endpoint service module, with `config`'s service settings and middleware kwargs."""
    folder = ROOT / "empty-service"
    folder.mkdir(parents=True, exist_ok=True)
    settings = {
        "service_name": config["service_name"],
        "workers": int(config["workers"]),
        "envs": [{"name": k, "value": v} for k, v in dict(config.get("envs", {})).items()],
        "version": config["version"],
        "sha256": config["sha256"],
        "info": service_info(config),
        "max_body_bytes": max_body_bytes(config),
    }
    (folder / "empty_settings.json").write_text(json.dumps(settings, indent=2) + "\n")
    (folder / f"{EMPTY_MODULE}.py").write_text(
        EMPTY_SERVICE.format(config="empty_settings.json", path=EMPTY_PATH, cls=EMPTY_CLASS)
    )
    return folder


def post_json(port: int, path: str, body: bytes) -> tuple[int, dict[str, str], Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, json.loads(data)
    finally:
        conn.close()


def check_answer(
    port: int,
    body: bytes,
    labels: list[Any],
    probabilities: list[list[float]],
    stored: StoredVersion,
    what: str,
) -> None:
    """The served answer to `body` must be the in-process one: same labels, probabilities within 1e-6.

    Raises:
        RuntimeError: any difference (nothing is timed then).
    """
    status, headers, answer = post_json(port, "/predict", body)
    problems = []
    if status != 200:
        problems.append(f"status {status}")
    elif answer.get("predictions") != labels:
        problems.append(f"predictions {answer.get('predictions')} != {labels}")
    else:
        got = np.asarray(answer.get("probabilities"), dtype=np.float64)
        want = np.asarray(probabilities, dtype=np.float64)
        if got.shape != want.shape or not np.allclose(got, want, rtol=0.0, atol=PROBA_TOLERANCE):
            problems.append(f"probabilities {answer.get('probabilities')} != {probabilities} (atol 1e-6)")
        if answer.get("model_version") != stored.version or headers.get("x-model-sha256") != stored.sha256:
            problems.append(
                f"model_version {answer.get('model_version')}, sha256 {headers.get('x-model-sha256')}"
            )
    if problems:
        raise RuntimeError(
            f"{what}: the served answer is not the in-process one: {'; '.join(problems)}: {answer}"
        )


def serve_and_measure(
    name: str,
    target: str,
    endpoints: list[tuple[str, str, bytes | None]],
    requests: int,
    duration: int,
    *,
    cwd: Path | None = None,
    extra_env: dict[str, str] | None = None,
    check: Callable[[int], None] | None = None,
) -> Served:
    """Serve `target`, check it (`check(port)`), then time each endpoint at concurrency 1 and under load."""
    load = load_wrk if shutil.which("wrk") else load_python
    server = Server(target, name, cwd=cwd, extra_env=extra_env)
    try:
        ready = server.wait_ready()
        if check is not None:
            check(server.port)
        processes = server.processes()
        c1 = {
            f"{method} {path}": http_latency(server.port, method, path, body, requests, warmup=200)
            for method, path, body in endpoints
        }
        _, path, body = endpoints[0]
        load(server.port, path, body, min(3, duration))  # warm-up under load
        loads = {
            f"{method} {path}": load(server.port, path, body, duration) for method, path, body in endpoints
        }
    finally:
        server.stop()
    return Served(name, ready, processes, c1, loads)


def in_process_breakdown(
    champion: Champion, configs: dict[str, dict[str, Any]], body: bytes, n: int
) -> dict[str, dict[str, Timing]]:
    """The service's own work for one request, in this process, per runtime: validation, model, response."""
    return {runtime: _service_steps(champion, config, body, n) for runtime, config in configs.items()}


def _service_steps(champion: Champion, config: dict[str, Any], body: bytes, n: int) -> dict[str, Timing]:
    warm = 200
    request_cls, response_cls = request_model(config), response_model(config)
    rows = request_cls.model_validate_json(body).rows
    steps = {
        "pydantic request validation (JSON -> rows)": time_calls(
            lambda: request_cls.model_validate_json(body), n, warm
        )
    }
    if config["runtime"] == "onnx":
        predictor = load_checked_bundle(config)  # the stored bundle's own Predictor, as the service loads it
        records = [row.model_dump(by_alias=True) for row in rows]
        answer = predict_rows_onnx(predictor, rows, config)
        steps["bundle `Predictor.predict_with_proba` (rows as dicts, one model run)"] = time_calls(
            lambda: predictor.predict_with_proba(records), n, warm
        )
        steps["whole `predict_rows_onnx` (row dumps + the model run + lists)"] = time_calls(
            lambda: predict_rows_onnx(predictor, rows, config), n, warm
        )
    else:
        model = champion.model
        features, schema = list(config["features"]), dict(config["feature_schema"])
        frame = to_frame(rows, features, schema)
        answer = predict_rows(model, rows, config)
        steps["`to_frame` (rows -> 1-row DataFrame)"] = time_calls(
            lambda: to_frame(rows, features, schema), n, warm
        )
        steps["sklearn `predict` + `predict_proba`"] = time_calls(
            lambda: (model.predict(frame), model.predict_proba(frame)), n, warm
        )
        steps["whole `predict_rows` (frame + both model calls + lists)"] = time_calls(
            lambda: predict_rows(model, rows, config), n, warm
        )
    steps["response model + JSON"] = time_calls(lambda: response_cls(**answer).model_dump_json(), n, warm)
    return steps


def bench_cloud(
    champion: Champion, requests: int, duration: int, breakdown_n: int, workers: int
) -> CloudResult:
    stored = champion.stored
    if stored is None:
        raise RuntimeError(f"{champion.name} was not stored; it cannot be built into a bento")
    bentos = {
        runtime: build_bento(
            stored.pipeline,
            stored.version,
            stored.sha256,
            onnx_bundle=champion.bundle if runtime == "onnx" else None,
            workers=workers,
            build_dir=ROOT / f"bento-build-{runtime}",
            containerize=False,
        )
        for runtime in ("onnx", "sklearn")
    }
    for runtime, bento in bentos.items():
        if bento.runtime != runtime or bento.workers != workers:
            raise RuntimeError(f"asked for runtime {runtime}, {workers} workers; built {bento}")
    configs = {runtime: bento_config(bento) for runtime, bento in bentos.items()}
    body = json.dumps({"rows": [champion.row]}).encode()
    # In-process answers the servers must give.
    labels, probabilities = Predictor(champion.bundle).predict_with_proba(champion.row)
    expected = {
        "onnx": (labels, probabilities),
        "sklearn": (
            champion.model.predict(champion.frame).tolist(),
            champion.model.predict_proba(champion.frame).tolist(),
        ),
    }
    served = {
        "empty": serve_and_measure(
            "empty",
            f"{EMPTY_MODULE}:{EMPTY_CLASS}",
            [("POST", EMPTY_PATH, b"{}")],
            requests,
            duration,
            cwd=write_empty_service(configs["onnx"]),
            extra_env={
                "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
            },
        )
    }
    for runtime, bento in bentos.items():
        endpoints: list[tuple[str, str, bytes | None]] = [("POST", "/predict", body)]
        if runtime == "onnx":
            endpoints.append(("GET", "/livez", None))

        def check(port: int, runtime: str = runtime) -> None:
            check_answer(port, body, *expected[runtime], stored, f"{runtime} bento")

        served[runtime] = serve_and_measure(runtime, bento.tag, endpoints, requests, duration, check=check)
    breakdown = in_process_breakdown(champion, configs, body, breakdown_n)
    return CloudResult(bentos, served, breakdown, workers)


# ------------------------------------------------------------------------------- prediction logging


@dataclass
class LoggingResult:
    """Throughput of the onnx bento with `serving.prediction_log` on and off, rounds alternated."""

    tags: dict[str, str]  # "off" / "on" -> bento tag
    loads: dict[str, list[Load]]  # "off" / "on" -> one Load per round
    rows_logged: int  # rows in the Parquet files the logging server wrote (it was stopped cleanly)
    answered: int  # 200 answers the logging server gave (check, warm-up, rounds)
    log_call: Timing  # in process: `PredictionLog.log` of one request's row
    seconds: int  # of load per side and round

    def rps(self, side: str) -> float:
        return statistics.median(load.rps for load in self.loads[side])

    @property
    def ratios(self) -> list[float]:
        """Per round: req/s with logging on over off, measured back to back."""
        return [on.rps / off.rps for on, off in zip(self.loads["on"], self.loads["off"], strict=True)]


def bench_logging(
    champion: Champion, duration: int, rounds: int, workers: int, iterations: int, warmup: int
) -> LoggingResult:
    """Two onnx bentos that differ only in `serving.prediction_log.enabled` (the factory's build:
    `settings_for(spec, root)`, default queue and flush settings), both served at once with the same
    workers; 32-connection load alternates between them, `rounds` times each. Requests carry the
    dataset's entity and timestamp, as a client that wants its predictions judged later would."""
    stored = champion.stored
    if stored is None:
        raise RuntimeError(f"{champion.name} was not stored; it cannot be built into a bento")
    root = ROOT / "prediction-log"
    bentos = {}
    for side in ("off", "on"):
        serving = champion.spec.serving.model_copy(
            update={"prediction_log": PredictionLogSpec(enabled=side == "on")}
        )
        spec = champion.spec.model_copy(update={"name": CLOUD_PIPELINE, "serving": serving})
        bentos[side] = build_bento(
            stored.pipeline,
            stored.version,
            stored.sha256,
            onnx_bundle=champion.bundle,
            workers=workers,
            build_dir=ROOT / f"bento-build-log-{side}",
            prediction_log=settings_for(spec, str(root) if side == "on" else None),
        )
    row = {**champion.row, "customer_id": 4242, "event_time": "2026-02-01T10:00:00"}
    body = json.dumps({"rows": [row]}).encode()
    labels, probabilities = Predictor(champion.bundle).predict_with_proba(champion.row)
    load = load_wrk if shutil.which("wrk") else load_python
    servers = {side: Server(bento.tag, f"log-{side}") for side, bento in bentos.items()}
    loads: dict[str, list[Load]] = {"off": [], "on": []}
    answered = 0
    try:
        for side, server in servers.items():
            server.wait_ready()
            check_answer(server.port, body, labels, probabilities, stored, f"bento with logging {side}")
            warm = load(server.port, "/predict", body, min(3, duration))
            answered += (1 + warm.requests - warm.errors) if side == "on" else 0
        for i in range(rounds):  # off, on, then on, off...: a drift of the machine hits both sides alike
            for side in ("off", "on") if i % 2 == 0 else ("on", "off"):
                loads[side].append(load(servers[side].port, "/predict", body, duration))
        answered += sum(one.requests - one.errors for one in loads["on"])
    finally:
        for server in servers.values():
            server.stop()
    folder = root / CLOUD_PIPELINE / "predictions" / "served"
    logged = sum(len(pd.read_parquet(p)) for p in folder.rglob("*.parquet")) if folder.exists() else 0
    log = PredictionLog(
        str(ROOT / "in-process-log"), CLOUD_PIPELINE, entity="customer_id", timestamp="event_time"
    )
    try:
        call = time_calls(
            lambda: log.log([row], labels, probabilities, version=stored.version, classes=[0, 1]),
            iterations,
            warmup,
        )
    finally:
        log.close()
    tags = {side: b.tag for side, b in bentos.items()}
    return LoggingResult(tags, loads, logged, answered, call, duration)


# -------------------------------------------------------------------------------------------- sizes


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def fmt_kb(n: int) -> str:
    return f"{n / 1024:.1f} kB"


# ------------------------------------------------------------------------------------------- report


def load_cell(load: Load) -> str:
    lat = f"; p50 {load.p50_ms:.1f} ms, p99 {load.p99_ms:.1f} ms" if load.p50_ms is not None else ""
    return f"{load.rps:,.0f} req/s ({load.errors} errors of {load.requests:,}{lat})"


def report(
    edge: list[EdgeResult], cloud: CloudResult, logging: LoggingResult, champions: dict[str, Champion]
) -> str:
    lines = [
        "| part | measurement | ours | baseline | ratio | target |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for r in edge:
        ratio = r.predictor.p50_us / r.bare.p50_us
        met = "met" if ratio <= EDGE_RATIO_TARGET else "**not met**"
        lines.append(
            f"| edge | {r.name} `{r.method}`, 1 row: Predictor vs bare onnxruntime | "
            f"{r.predictor.show()} | {r.bare.show()} | {ratio:.2f}x | <= {EDGE_RATIO_TARGET}x: {met} |"
        )
    for r in edge:
        lines.append(
            f"| edge | {r.name} `{r.method}`, 1 row: sklearn (1-row DataFrame) vs Predictor | "
            f"{r.sklearn.show()} | {r.predictor.show()} | {r.sklearn.p50_us / r.predictor.p50_us:.1f}x | - |"
        )
    empty = cloud.served["empty"]
    empty_key = f"POST {EMPTY_PATH}"
    empty_c1, empty_load = empty.c1[empty_key], empty.load[empty_key]
    livez_load = cloud.served["onnx"].load["GET /livez"]
    for runtime in ("onnx", "sklearn"):
        served, label = cloud.served[runtime], RUNTIME_LABELS[runtime]
        c1, load = served.c1["POST /predict"], served.load["POST /predict"]
        met = "met" if c1.p50_us / 1000 <= HTTP_P50_TARGET_MS else "**not met**"
        lines.append(
            f"| cloud | {label}: `POST /predict` 1 row, concurrency 1, keep-alive, vs `POST {EMPTY_PATH}` | "
            f"{c1.show()} | {empty_c1.show()} | {c1.p50_us / empty_c1.p50_us:.1f}x | "
            f"p50 <= {HTTP_P50_TARGET_MS:g} ms: {met} |"
        )
        share = load.rps / empty_load.rps
        met = "met" if share >= THROUGHPUT_TARGET and load.errors == 0 else "**not met**"
        lines.append(
            f"| cloud | {label}: `POST /predict` vs `POST {EMPTY_PATH}` (the empty endpoint: the stack's "
            f"ceiling), {CONCURRENCY} connections, {load.tool} | {load_cell(load)} | "
            f"{load_cell(empty_load)} | {share:.0%} | >= {THROUGHPUT_TARGET:.0%}, 0 errors: {met} |"
        )
        lines.append(
            f"| cloud | {label}: `POST /predict` vs `GET /livez` (onnx bento's server, outside the API), "
            f"{CONCURRENCY} connections, {livez_load.tool} | {load_cell(load)} | {load_cell(livez_load)} | "
            f"{load.rps / livez_load.rps:.0%} | - (information) |"
        )
    on, off = logging.loads["on"], logging.loads["off"]
    share = statistics.median(logging.ratios)
    met = "met" if share >= LOGGING_TARGET and not any(x.errors for x in on + off) else "**not met**"
    rounds = "; ".join(
        f"{a.rps:,.0f}/{b.rps:,.0f} = {r:.0%}" for a, b, r in zip(on, off, logging.ratios, strict=True)
    )
    lines.append(
        f"| cloud | {RUNTIME_LABELS['onnx']}: `POST /predict` with `serving.prediction_log` on vs off (two "
        f"bentos differing only there, served at once, {CONCURRENCY} connections, {on[0].tool}, "
        f"{len(on)} alternated rounds of {logging.seconds} s, on/off: {rounds}) | "
        f"{logging.rps('on'):,.0f} req/s (median; {sum(x.errors for x in on)} errors) | "
        f"{logging.rps('off'):,.0f} req/s (median; {sum(x.errors for x in off)} errors) | "
        f"{share:.0%} (median of the rounds) | >= {LOGGING_TARGET:.0%}, 0 errors: {met} |"
    )
    lines.append(
        f"| cloud | prediction log: rows in the Parquet files after a clean stop vs 200 answers of the "
        f"logging server | {logging.rows_logged:,} | {logging.answered:,} | "
        f"{logging.rows_logged / max(logging.answered, 1):.1%} | - (information) |"
    )
    lines.append(
        f"| cloud | prediction log: `PredictionLog.log` of one request's row, in process (what a "
        f"request pays) | {logging.log_call.show()} | - | - | - |"
    )
    for name, champion in champions.items():
        onnx = (champion.bundle / "model.onnx").stat().st_size
        bundle = dir_size(champion.bundle)
        lines.append(
            f"| size | {name}: model.onnx (whole bundle) vs joblib pickle | "
            f"{fmt_kb(onnx)} ({fmt_kb(bundle)}) | "
            f"{fmt_kb(champion.joblib_bytes)} | {onnx / champion.joblib_bytes:.2f}x "
            f"({bundle / champion.joblib_bytes:.2f}x) | - |"
        )
    pickled = champions[CLOUD_CASE].joblib_bytes
    sk, ox = cloud.bentos["sklearn"].size_bytes, cloud.bentos["onnx"].size_bytes
    lines.append(
        f"| size | {CLOUD_CASE} bento, sklearn runtime (sources, env, the pickle) vs joblib pickle | "
        f"{fmt_kb(sk)} | {fmt_kb(pickled)} | {sk / pickled:.1f}x | - |"
    )
    lines.append(
        f"| size | {CLOUD_CASE} bento, onnx runtime (sources, env, the edge bundle) vs the sklearn-runtime "
        f"bento | {fmt_kb(ox)} | {fmt_kb(sk)} | {ox / sk:.2f}x | - |"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=5000, help="timed in-process calls per measurement")
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--requests", type=int, default=1000, help="timed HTTP requests at concurrency 1")
    parser.add_argument("--duration", type=int, default=20, help="seconds of load at concurrency 32")
    parser.add_argument("--workers", type=int, default=2, help="BentoML worker processes per server")
    parser.add_argument("--log-rounds", type=int, default=10, help="alternated rounds, logging on and off")
    parser.add_argument("--log-duration", type=int, default=10, help="seconds of load per side and round")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")

    setup = time.perf_counter()
    champions = train_all(dataset())
    print(f"setup: 3 champions trained, converted and bundled in {time.perf_counter() - setup:.1f} s")
    edge = []
    for champion in champions.values():
        edge.extend(bench_edge(champion, args.iterations, args.warmup))
    start = time.perf_counter()
    cloud = bench_cloud(
        champions[CLOUD_CASE], args.requests, args.duration, min(args.iterations, 2000), args.workers
    )
    print(
        f"cloud part (2 bento builds, 3 servers started one after another, load) took "
        f"{time.perf_counter() - start:.0f} s"
    )
    start = time.perf_counter()
    logging = bench_logging(
        champions[CLOUD_CASE], args.log_duration, args.log_rounds, args.workers, args.iterations, args.warmup
    )
    print(
        f"prediction-log part (2 bento builds, 2 servers at once, load) took "
        f"{time.perf_counter() - start:.0f} s"
    )
    print(
        f"\nmachine: {os.cpu_count()} cores, {platform.system()} {platform.machine()}, Python "
        f"{platform.python_version()}; onnxruntime {dist_version('onnxruntime')}, scikit-learn "
        f"{dist_version('scikit-learn')}, bentoml {dist_version('bentoml')}, "
        f"wrk {'yes' if shutil.which('wrk') else 'no (Python load generator)'}; "
        f"{cloud.workers} BentoML worker(s) per server\n"
    )
    print(report(edge, cloud, logging, champions))
    print("\nservers (one at a time):")
    for name, served in cloud.served.items():
        what = f"bento {cloud.bentos[name].tag}" if name in cloud.bentos else f"{EMPTY_MODULE}:{EMPTY_CLASS}"
        print(
            f"- {name}: {what}; ready {served.ready_s:.1f} s after start; "
            f"{served.worker_processes} worker process(es) (workers={cloud.workers}); processes:"
        )
        for pid, line in served.processes:
            print(f"    {pid} {line[:150]}")
    print(
        f"- prediction logging off / on, served at once: bentos {logging.tags['off']} / {logging.tags['on']}"
    )
    print("\nin-process cost of one /predict request's service work (same model, same body), p50 (p99):")
    for runtime, steps in cloud.breakdown.items():
        print(f"{RUNTIME_LABELS[runtime]}:")
        for name, timing in steps.items():
            print(f"- {name}: {timing.show()}")
    floors = "; ".join(
        f"`{key}` ({name} server): {timing.show()}"
        for name in ("empty", "onnx")
        for key, timing in cloud.served[name].c1.items()
        if key != "POST /predict"
    )
    print(f"HTTP floors over the same kind of connection, concurrency 1: {floors}")
    med = statistics.median([r.predictor.p50_us / r.bare.p50_us for r in edge])
    print(f"\nmedian Predictor/bare ratio over {len(edge)} measurements: {med:.2f}x")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        _TMP.cleanup()
