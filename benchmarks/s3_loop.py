"""The demo loop on s3:// storage (moto over real HTTP), without and with injected faults.

Run from the repo root:

    .venv/bin/python benchmarks/s3_loop.py [--rounds 3] [--every 10] 2>/dev/null

One moto S3 server on 127.0.0.1, one process. The loop is `tests.s3_faults.run_demo_loop` (the one
tests/e2e/test_s3_faults.py runs): a quarantined partition and its release, 8 dataset partitions, the
feature group, training set, candidate, champion (model mirrored under the root), edge bundle and the
last day's drift report, in an environment whose storage is `s3://<fresh bucket>/root`, each loop on
a fresh ephemeral instance. Three ways to reach the store:

(a) direct:   AWS_ENDPOINT_URL is moto itself;
(b) proxy:    through the fault proxy of tests/s3_faults.py injecting nothing (the baseline: same hops);
(c) faults:   through the same proxy answering every `--every`-th read and every `--every`-th write 503
              SlowDown (not forwarded), and cutting one Parquet GET mid-body (connection closed).

Warmed up once (imports, the first model save into the local BentoML store), then alternated for
`--rounds` rounds; the table reports median and minimum seconds per loop and the ratio to (b). Before
anything is reported, every loop must have succeeded with the data versions of the warm-up loop (a
loop that skipped something would show there). The proxy also timestamps each request, so the time
the clients spent waiting between a 503 and its retry (botocore's backoff) is reported beside the
difference (c) - (b). The runs' own log lines go to stderr.
"""

import os
import sys
import tempfile

# Telemetry off, and every local folder the loop may touch in a temporary folder, before imports.
os.environ["BENTOML_DO_NOT_TRACK"] = "true"
os.environ["GX_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"
WORK = tempfile.mkdtemp(prefix="mlops-s3-loop-")
os.environ["BENTOML_HOME"] = os.path.join(WORK, "bentoml")
os.environ["MLOPS_DEMO_DATA"] = os.path.join(WORK, "demo-data")
os.environ["DAGSTER_HOME"] = os.path.join(WORK, "dagster_home")
os.makedirs(os.path.join(WORK, "dagster_home"))
with open(os.path.join(WORK, "dagster_home", "dagster.yaml"), "w") as f:
    f.write("telemetry:\n  enabled: false\n")

import argparse  # noqa: E402
import logging  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from importlib.metadata import version  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402  (its MonkeyPatch sets and restores the AWS variables, as in the tests)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.s3_faults import LOOP_ASSETS, FaultPlan, FaultyProxy, materializations, run_demo_loop  # noqa: E402
from tests.s3_server import local_s3, moto_server  # noqa: E402

VARIANTS = ("direct", "proxy", "faults")


class TimedProxy(FaultyProxy):
    """The fault proxy, also noting when each request arrived and whether it was answered 503."""

    def __init__(self, upstream: str, plan: FaultPlan) -> None:
        super().__init__(upstream, plan)
        self.arrivals: list[tuple[float, int, str, str, bool]] = []  # (time, number, method, path, 503)

    def arrive(self, method: str, path: str) -> tuple[int, bool]:
        n, fail = super().arrive(method, path)
        self.arrivals.append((time.perf_counter(), n, method, path, fail))
        return n, fail

    def retry_wait(self) -> float:
        """Seconds from each injected 503 and from the dropped GET to the next request for the same
        method and path: the clients' backoff, plus the time to send the request again."""
        cut = {(n, method) for n, method, _ in self.log.dropped}
        total = 0.0
        for i, (t0, n, method, path, fail) in enumerate(self.arrivals):
            if fail or (n, method) in cut:
                later = (t for t, _, m, p, _ in self.arrivals[i + 1 :] if (m, p) == (method, path))
                total += next(later, t0) - t0
        return total


@dataclass
class Result:
    seconds: list[float] = field(default_factory=list)
    reads: int = 0
    writes: int = 0
    injected: int = 0
    injected_writes: int = 0
    dropped: int = 0
    waits: list[float] = field(default_factory=list)


@contextmanager
def endpoint_for(variant: str, moto: str, every: int) -> Iterator[TimedProxy | None]:
    if variant == "direct":
        yield None
        return
    plan = FaultPlan(every=every, drop_after=20) if variant == "faults" else FaultPlan()
    proxy = TimedProxy(moto, plan).start()
    try:
        yield proxy
    finally:
        proxy.stop()


def one_loop(
    variant: str, moto: str, client: Any, every: int, n: int
) -> tuple[float, TimedProxy | None, Any]:
    bucket = f"mlops-bench-{variant}-{n}"
    client.create_bucket(Bucket=bucket)
    with (
        endpoint_for(variant, moto, every) as proxy,
        pytest.MonkeyPatch.context() as mp,
        local_s3(proxy.endpoint if proxy else moto, mp, Path(WORK)),
    ):
        started = time.perf_counter()
        loop = run_demo_loop(ROOT, f"s3://{bucket}/root")
        seconds = time.perf_counter() - started
    if loop.failures() or loop.quarantined.success:
        raise SystemExit(f"{variant} loop {n}: {loop.failures() or 'the quality incident was not stopped'}")
    return seconds, proxy, materializations(loop.instance, LOOP_ASSETS)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--every", type=int, default=10, help="503 every N-th read and N-th write")
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's access log
    import boto3

    work = Path(WORK) / "cwd"
    work.mkdir()
    os.chdir(work)
    results = {v: Result() for v in VARIANTS}
    try:
        with moto_server() as moto:
            client = boto3.client(
                "s3", endpoint_url=moto, region_name="us-east-1", aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )  # fmt: skip
            warm_s, _, reference = one_loop("proxy", moto, client, args.every, 0)
            print(f"warm-up loop (through the proxy): {warm_s:.1f} s", file=sys.stderr)
            n = 0
            for r in range(args.rounds):
                for variant in VARIANTS if r % 2 == 0 else VARIANTS[::-1]:
                    n += 1
                    seconds, proxy, versions = one_loop(variant, moto, client, args.every, n)
                    if versions != reference:
                        raise SystemExit(f"{variant} loop {n}: data versions differ from the warm-up loop")
                    result = results[variant]
                    result.seconds.append(seconds)
                    if proxy is not None:
                        log = proxy.log
                        result.reads, result.writes = log.requests["read"], log.requests["write"]
                        result.injected, result.dropped = len(log.injected_503), len(log.dropped)
                        result.injected_writes = log.injected_by_kind()["write"]
                        result.waits.append(proxy.retry_wait())
                    print(f"round {r + 1}: {variant} {seconds:.1f} s", file=sys.stderr)
        if sorted(work.iterdir()):
            raise SystemExit(f"the loops wrote into the working folder: {sorted(work.iterdir())}")
    finally:
        os.chdir(ROOT)
        shutil.rmtree(WORK, ignore_errors=True)
    report(results, args)


def report(results: dict[str, Result], args: argparse.Namespace) -> None:
    base, base_min = statistics.median(results["proxy"].seconds), min(results["proxy"].seconds)
    print(
        f"# Demo loop on s3:// (moto {version('moto')} on 127.0.0.1), {args.rounds} alternating rounds\n\n"
        f"Python {platform.python_version()}, {os.cpu_count()} cores, dagster {version('dagster')}, "
        f"s3fs {version('s3fs')}, aiobotocore {version('aiobotocore')}, botocore {version('botocore')} "
        f"(retry mode: {os.environ.get('AWS_RETRY_MODE', 'legacy, the default')}, "
        f"max attempts: {os.environ.get('AWS_MAX_ATTEMPTS', '5, the default')})\n"
    )
    print(
        "| store reached | requests (reads / writes) | 503s (writes) | dropped | median s | min s "
        "| ratio to (b), medians | of minima |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    labels = {
        "direct": "(a) moto directly",
        "proxy": "(b) through the proxy, no faults (baseline)",
        "faults": f"(c) through the proxy, 503 every {args.every}th read and write, 1 dropped connection",
    }
    for variant in VARIANTS:
        r = results[variant]
        requests = f"{r.reads} / {r.writes}" if variant != "direct" else "-"
        faults = f"{r.injected} ({r.injected_writes})" if variant == "faults" else "-"
        dropped = str(r.dropped) if variant == "faults" else "-"
        median = statistics.median(r.seconds)
        ratio = f"**{median / base:.2f}**" if variant == "faults" else f"{median / base:.2f}"
        low = f"{min(r.seconds) / base_min:.2f}"
        cells = [
            labels[variant],
            requests,
            faults,
            dropped,
            f"{median:.1f}",
            f"{min(r.seconds):.1f}",
            ratio,
            low,
        ]
        print("| " + " | ".join(cells) + " |")
    faults = results["faults"]
    extra = statistics.median(faults.seconds) - base
    wait = statistics.median(faults.waits)
    per_fault = wait / max(faults.injected + faults.dropped, 1)
    print(
        f"\nFaulty loop: {extra:.1f} s slower than (b) (median); the clients waited {wait:.1f} s in all "
        f"between an injected fault and its retry ({per_fault:.2f} s per fault; botocore's legacy backoff "
        "sleeps random() x 2^(attempt-1) s, 0.5 s on average before a first retry). Every loop succeeded "
        "with the warm-up loop's data versions."
    )


if __name__ == "__main__":
    main()
