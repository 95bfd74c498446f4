"""The demo loop with `s3://` storage on moto's S3 server: every artifact lands in the bucket, none on disk.

dataset partitions (one quarantined, then released) -> feature group -> training set -> candidate ->
champion -> edge bundle -> drift report, all with `ParquetIOManager(base_path="s3://<bucket>/root")`,
run with the working folder in a temporary directory so that a stray local `s3:` folder would show.
The BentoML model store stays local ($BENTOML_HOME): it is not storage under the root.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from mlops_dagster import build_definitions
from mlops_dagster.io.parquet import ParquetIOManager, default_storage_root
from mlops_dagster.keys import IO_MANAGER_KEY, Meta
from mlops_dagster.packaging.onnx_bundle import verify_bundle
from mlops_dagster.registry import records
from tests.s3_server import LocalS3, local_s3, moto_server

K = dg.AssetKey
ROOT = Path(__file__).resolve().parents[2]
FIRST, LAST, BAD = "2026-01-01", "2026-01-12", "2026-01-05"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def s3(s3_endpoint: str, storage: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[LocalS3]:
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    with local_s3(s3_endpoint, monkeypatch, tmp_path) as server:
        yield server


def _defs(base_path: str) -> dg.Definitions:
    return build_definitions(
        ROOT / "pipelines", resources={IO_MANAGER_KEY: ParquetIOManager(base_path=base_path)}
    )


def _land(day: str, scenario: str) -> None:
    from assets import feed

    feed.write_batch("churn", day, scenario)


def _meta(instance: dg.DagsterInstance, key: dg.AssetKey) -> dict:
    event = instance.get_latest_materialization_event(key)
    assert event is not None and event.asset_materialization is not None, f"{key} not materialized"
    return {k: getattr(v, "value", v) for k, v in event.asset_materialization.metadata.items()}


def test_the_whole_loop_stores_every_artifact_in_the_bucket(s3: LocalS3, helpers, tmp_path: Path):  # type: ignore[no-untyped-def]
    bucket = s3.new_bucket()
    defs, instance = _defs(f"s3://{bucket}/root"), dg.DagsterInstance.ephemeral()
    dataset = [K(["churn", "dataset"])]

    _land(BAD, "quality_incident")  # held in quarantine, in the bucket
    assert not helpers.range(defs, instance, dataset, BAD, BAD, raise_on_error=False).success
    held = f"root/.quarantine/churn/dataset/{BAD}/"
    assert {held + "report.json", held + "data.parquet"} <= set(s3.keys(bucket, held))
    _land(BAD, "normal")  # good data for the day releases the entry
    assert helpers.range(defs, instance, dataset, FIRST, LAST).success
    assert s3.keys(bucket, "root/.quarantine/") == []

    loop = [K(["features", "customer_activity"])]
    loop += [K(["churn", name]) for name in ("training_set", "candidate", "champion", "edge_bundle")]
    assert helpers.keys(defs, instance, loop).success
    champion = records.current_champion(instance, "churn")
    assert champion is not None and champion.decision == "promote"
    assert helpers.keys(defs, instance, [K(["churn", "drift_report"])], partition_key=LAST).success

    keys = set(s3.keys(bucket, "root/"))
    days = [f"2026-01-{d:02d}" for d in range(1, 13)]
    assert {f"root/churn/dataset/{d}.parquet" for d in days} <= keys
    bundle = f"root/churn/edge_bundle/{champion.version}"
    assert {
        "root/features/customer_activity/data.parquet",
        "root/churn/training_set/data.parquet",
        f"{bundle}/manifest.json",
        f"{bundle}/model.onnx",
        f"root/churn/drift_report/{LAST}/report.html",
        f"root/churn/drift_report/{LAST}/report.json",
    } <= keys
    edge = _meta(instance, K(["churn", "edge_bundle"]))
    assert edge[Meta.BUNDLE] == f"s3://{bucket}/{bundle}"
    assert _meta(instance, K(["churn", "drift_report"]))[Meta.DRIFT_REPORT].startswith(f"s3://{bucket}/root/")

    # The bundle in the bucket is whole: a download verifies against its manifest.
    copy = tmp_path / "bundle"
    copy.mkdir()
    manifest = json.loads(s3.client.get_object(Bucket=bucket, Key=f"{bundle}/manifest.json")["Body"].read())
    for name in [*manifest["files"], "manifest.json"]:
        (copy / name).write_bytes(s3.client.get_object(Bucket=bucket, Key=f"{bundle}/{name}")["Body"].read())
    assert verify_bundle(copy)["version"] == champion.version

    assert not list(tmp_path.rglob("s3:*")), "a URL became a local folder"
    # Only the model store's mirror and the audit log follow the environment's root: here the embedded
    # default (no environment chosen); with `storage: s3://...` they land in the bucket too
    # (test_s3_faults.py).
    local = Path(default_storage_root())
    followers = ("models", "audit")
    strays = [p for p in local.rglob("*") if p.is_file() and p.relative_to(local).parts[0] not in followers]
    assert not strays, f"something was written to the local default root: {strays}"


def test_a_bucket_that_does_not_exist_fails_clearly_and_is_not_created(s3: LocalS3, helpers):  # type: ignore[no-untyped-def]
    before = s3.buckets()
    defs, instance = _defs("s3://mlops-missing-bucket/root"), dg.DagsterInstance.ephemeral()
    result = helpers.range(defs, instance, [K(["churn", "dataset"])], FIRST, FIRST, raise_on_error=False)
    assert not result.success
    [run] = result.results
    failure = next(e for e in run.all_events if e.is_step_failure)
    assert "bucket 'mlops-missing-bucket' does not exist" in str(failure.step_failure_data.error)
    assert s3.buckets() == before
