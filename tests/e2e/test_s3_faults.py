"""The demo loop on `s3://` storage through a faulty network: retried, nothing lost, nothing skipped.

moto's S3 server runs on 127.0.0.1, and the code only sees a proxy in front of it (`tests/s3_faults.py`,
the endpoint in AWS_ENDPOINT_URL). The loop (`run_demo_loop`: a quarantined partition and its
release, eight dataset partitions, the feature group, training set, candidate, champion with its
model mirror, edge bundle, drift report) runs twice in an environment whose storage is
`s3://<bucket>/root`:

- through the proxy injecting faults: every 10th read and every 10th write answered 503 SlowDown
  (not forwarded), and one GET of a Parquet object cut mid-body with its connection closed;
- through the same proxy injecting nothing, into another bucket: the fault-free reference.

Everything is then checked on moto directly (a boto3 client on moto's own port, bypassing the
proxy): each Parquet object reads back with pandas, its rows and content hash are what the
materialization recorded, and both buckets hold the same objects with the same bytes. Reaching that
through retries is what is expected; a silent skip would show as a missing object, a missing
materialization or a differing data version. The negative case: a store that answers every request
503 fails the run with a storage error naming the root, after a bounded number of attempts.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.s3_faults import (
    FIRST,
    LAST,
    LOOP_ASSETS,
    PARQUET_ASSETS,
    FaultLog,
    FaultPlan,
    LoopRun,
    Materialization,
    faulty_proxy,
    materializations,
    run_demo_loop,
)
from tests.s3_server import local_s3, moto_server

ROOT = Path(__file__).resolve().parents[2]
FAULTS = FaultPlan(every=10, drop_after=20)


@dataclass
class Loop:
    bucket: str
    run: LoopRun
    log: FaultLog
    materialized: dict[tuple[str, str | None], Materialization]


@dataclass
class Loops:
    faulty: Loop
    clean: Loop
    moto: Any  # a boto3 client on moto itself, not through the proxy
    work: Path  # the working folder the loops ran in
    home: Path  # their DAGSTER_HOME

    def objects(self, bucket: str) -> dict[str, str]:
        """Key -> ETag (the MD5 of the bytes) of every object in `bucket`, listed on moto directly."""
        pages = self.moto.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return {o["Key"]: o["ETag"] for page in pages for o in page.get("Contents", [])}

    def read(self, bucket: str, key: str) -> bytes:
        return bytes(self.moto.get_object(Bucket=bucket, Key=key)["Body"].read())


def _setup(tmp: Path, mp: pytest.MonkeyPatch) -> tuple[Path, Path]:
    home, work = tmp / "dagster_home", tmp / "cwd"
    home.mkdir()
    work.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    mp.setenv("DAGSTER_HOME", str(home))
    mp.setenv("MLOPS_DEMO_DATA", str(tmp / "demo-data"))
    mp.chdir(work)
    return home, work


@dataclass
class Moto:
    endpoint: str
    client: Any  # a boto3 client on moto itself, not through a proxy


@pytest.fixture(scope="module")
def moto() -> Iterator[Moto]:
    import boto3

    with moto_server() as endpoint:
        yield Moto(
            endpoint,
            boto3.client(
                "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                aws_secret_access_key="testing",
            ),
        )  # fmt: skip


@pytest.fixture(scope="module")
def loops(moto: Moto, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loops]:
    tmp = tmp_path_factory.mktemp("s3-faults")
    with pytest.MonkeyPatch.context() as mp:
        home, work = _setup(tmp, mp)
        done: dict[str, Loop] = {}
        # The faulty loop runs first, so that it also starts from an empty local model store.
        for name, plan in (("faulty", FAULTS), ("clean", FaultPlan())):
            bucket = f"mlops-{name}"
            moto.client.create_bucket(Bucket=bucket)
            with faulty_proxy(moto.endpoint, plan) as proxy, local_s3(proxy.endpoint, mp, tmp):
                run = run_demo_loop(ROOT, f"s3://{bucket}/root")
            done[name] = Loop(bucket, run, proxy.log, materializations(run.instance, LOOP_ASSETS))
        yield Loops(done["faulty"], done["clean"], moto.client, work, home)


def test_the_proxy_injected_503s_into_reads_and_writes_and_dropped_one_connection(loops: Loops):
    log = loops.faulty.log
    injected = log.injected_by_kind()
    assert injected["read"] > 0 and injected["write"] > 0, injected
    # about 1 in 10, by construction: reads and writes are numbered apart
    assert injected["read"] == log.requests["read"] // 10 and injected["write"] == log.requests["write"] // 10
    [(_, method, path)] = log.dropped
    assert method == "GET" and path.endswith(".parquet"), log.dropped
    # the reference went through the same proxy and met no fault; both loops used it as their endpoint
    assert loops.clean.log.injected_503 == [] and loops.clean.log.dropped == []
    assert loops.clean.log.requests["write"] > 0 and loops.clean.log.requests["read"] > 0


def test_every_run_succeeded_and_the_incident_was_quarantined_then_released(loops: Loops):
    for loop in (loops.faulty, loops.clean):
        assert loop.run.failures() == []
        assert all(run.success for run in loop.run.runs)
        # the one expected failure is the quality incident's blocking checks, not storage
        [failure] = [e for e in loop.run.quarantined.all_events if e.is_step_failure]
        error = failure.step_failure_data.error
        assert error.cls_name == "DagsterAssetCheckFailedError", str(error)
        assert {"data.parquet", "report.json"} <= set(loop.run.held), loop.run.held
        assert not [k for k in loops.objects(loop.bucket) if "/.quarantine/" in k], "not released"


def test_every_parquet_object_reads_back_as_materialized(loops: Loops):
    from mlops_dagster.io.parquet import content_hash

    for loop in (loops.faulty, loops.clean):
        keys = [k for k in loops.objects(loop.bucket) if k.endswith(".parquet")]
        frames = {k: pd.read_parquet(io.BytesIO(loops.read(loop.bucket, k))) for k in keys}
        stored = {}
        for key, frame in frames.items():
            assert len(frame) > 0, key
            if key.startswith("root/data/"):  # <asset path>/<partition>.parquet or .../data.parquet
                asset, _, name = key.removeprefix("root/data/").rpartition("/")
                stored[(asset, None if name == "data.parquet" else name.removesuffix(".parquet"))] = frame
        expected = {k: m for k, m in loop.materialized.items() if k[0] in PARQUET_ASSETS}
        assert set(stored) == set(expected), "a materialization without its object, or the reverse"
        assert len(expected) == 8 + 2  # the days FIRST..LAST, the feature group, the training set
        for where, frame in stored.items():
            assert len(frame) == expected[where].row_count, where
            assert content_hash(frame) == expected[where].data_version, where
        # the model mirror's reference sample is Parquet too, and was read above
        assert any(k.startswith("root/models/churn/") for k in frames), sorted(frames)


def test_nothing_was_lost_and_the_data_versions_equal_the_fault_free_run(loops: Loops):
    faulty, clean = loops.faulty, loops.clean
    assert set(faulty.materialized) == set(clean.materialized)
    assert {m.asset for m in faulty.materialized.values()} == set(LOOP_ASSETS)
    assert (("churn/dataset", FIRST) in faulty.materialized) and (
        ("churn/drift_report", LAST) in faulty.materialized
    )
    for where, expected in clean.materialized.items():
        assert faulty.materialized[where] == expected, where
    # the same objects with the same bytes (ETag = MD5), the model mirror and the edge bundle included;
    # Evidently's HTML report embeds its own random ids, so it is compared by being whole instead, and
    # the audit log (times, run ids) by the decisions it holds, in order
    objects, reference = loops.objects(faulty.bucket), loops.objects(clean.bucket)
    assert set(objects) == set(reference)
    html = {k for k in objects if k.endswith(".html")}
    audit = {k for k in objects if "/audit/" in k}
    assert audit, "no audit log in the bucket"
    assert {k: objects[k] for k in objects if k not in html | audit} == {
        k: reference[k] for k in objects if k not in html | audit
    }
    for key in audit:
        decisions = [
            [(r["action"], r["version"]) for r in map(json.loads, loops.read(bucket, key).splitlines())]
            for bucket in (faulty.bucket, clean.bucket)
        ]
        assert decisions[0] == decisions[1], key
    for key in html:
        assert loops.read(faulty.bucket, key).rstrip().endswith(b"</html>"), key
    assert any(k.endswith("/manifest.json") and "/models/" in k for k in objects)
    assert any(k.endswith("/model.onnx") and "/edge_bundle/" in k for k in objects)


def test_nothing_was_written_to_local_disk(loops: Loops):
    assert sorted(loops.work.rglob("*")) == [], "the working folder got files"
    assert not (loops.home / "mlops").exists(), "something went to the embedded local storage root"
    assert not [p for p in loops.work.parent.rglob("s3:*")], "a URL became a local folder"


def test_a_store_that_fails_every_request_fails_the_run_naming_the_root(
    moto: Moto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import dagster as dg

    from mlops_dagster import build_definitions
    from mlops_dagster.spec.environments import EnvironmentSpec

    bucket = "mlops-unusable"
    moto.client.create_bucket(Bucket=bucket)  # it exists: only the network in front of it fails
    _setup(tmp_path, monkeypatch)
    with (
        faulty_proxy(moto.endpoint, FaultPlan(fail_all=True)) as proxy,
        local_s3(proxy.endpoint, monkeypatch, tmp_path),
    ):
        from assets import feed

        feed.write_batch("churn", FIRST, "normal")
        env = EnvironmentSpec(name="unusable", storage=f"s3://{bucket}/root")
        defs = build_definitions(ROOT / "pipelines", environment=env.name, environments=[env])
        result = dg.materialize(
            list(defs.assets), selection=[dg.AssetKey(["churn", "dataset"])], resources=defs.resources,
            instance=dg.DagsterInstance.ephemeral(), partition_key=FIRST, raise_on_error=False,
        )  # fmt: skip
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    message = str(failure.step_failure_data.error)
    assert f"s3://{bucket}/root" in message, message
    # an outage, not "the bucket does not exist": the store's own answer is in the message
    assert f"cannot reach bucket '{bucket}' after retries" in message, message
    assert "Service Unavailable" in message or "reduce your request rate" in message, message
    # bounded: botocore's attempts on the one bucket probe, then the step stopped
    assert 1 < proxy.log.total <= 10, proxy.log
    assert proxy.log.total > 0 and len(proxy.log.injected_503) == proxy.log.total
    assert moto.client.list_objects_v2(Bucket=bucket).get("Contents", []) == [], "something reached it"
    assert os.listdir(tmp_path / "cwd") == []


def test_existing_files_lists_a_folder_once_freshly_and_never_reads_an_outage_as_missing(
    moto: Moto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from upath import UPath

    from mlops_dagster.io.storage import existing_files

    bucket = "mlops-existing"
    moto.client.create_bucket(Bucket=bucket)
    for day in ("01", "03"):
        moto.client.put_object(Bucket=bucket, Key=f"root/d/2026-01-{day}.parquet", Body=b"x")
    moto.client.put_object(Bucket=bucket, Key="root/d/2026-01-02.parquet/nested", Body=b"x")  # a folder
    with faulty_proxy(moto.endpoint) as proxy, local_s3(proxy.endpoint, monkeypatch, tmp_path):
        paths = [UPath(f"s3://{bucket}/root/d/2026-01-{d:02d}.parquet") for d in range(1, 31)]
        assert [p.name for p in existing_files(paths)] == ["2026-01-01.parquet", "2026-01-03.parquet"]
        assert proxy.log.requests == {"read": 1}, "one LIST for 30 paths"
        moto.client.put_object(Bucket=bucket, Key="root/d/2026-01-30.parquet", Body=b"x")  # another writer
        assert [p.name for p in existing_files(paths)][-1] == "2026-01-30.parquet", "a stale listing was used"
        assert existing_files([UPath(f"s3://{bucket}/root/nowhere/{d}.parquet") for d in (1, 2)]) == []
    # `ServiceUnavailable`, S3's other 503: botocore's 5 attempts only (s3fs retries a SlowDown 5 more
    # times around them, which takes about a minute)
    unavailable = FaultPlan(fail_all=True, code="ServiceUnavailable")
    with (
        faulty_proxy(moto.endpoint, unavailable) as proxy,
        local_s3(proxy.endpoint, monkeypatch, tmp_path),
        pytest.raises(OSError, match="Service is unable to handle request"),
    ):
        existing_files([UPath(f"s3://{bucket}/root/d/2026-01-{d:02d}.parquet") for d in (1, 2)])
    assert len(proxy.log.injected_503) == 5, "botocore's attempts, then the error"
