"""Secrets used by a run never land at rest: not in the event log, the compute logs, the storage root's
files or the audit log. The run here reads S3 with a distinctive secret key and has a webhook notifier
whose URL (a secret) comes from an environment variable."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from mlops_dagster import build_definitions
from tests.s3_server import LocalS3, local_s3, moto_server
from tests.security.test_pii import _hits

ROOT = Path(__file__).resolve().parents[2]
K = dg.AssetKey
SECRET_KEY = "s3cr3t-Key-9f2c4e7a1b"
HOOK_TOKEN = "hooktoken-7d1e3a9c5f"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def s3(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[LocalS3]:
    with local_s3(s3_endpoint, monkeypatch, tmp_path) as server:
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)  # moto takes any key; this one is findable
        yield server


def test_no_secret_at_rest_after_a_run_that_used_them(  # type: ignore[no-untyped-def]
    s3: LocalS3, storage: Path, tmp_path: Path, helpers, monkeypatch: pytest.MonkeyPatch
) -> None:
    from assets import feed

    bucket = s3.new_bucket()
    monkeypatch.setenv("PROD_HOOK_URL", f"http://127.0.0.1:9/hooks/{HOOK_TOKEN}")
    specs = tmp_path / "specs"
    shutil.copytree(ROOT / "pipelines", specs)
    churn = specs / "churn.yaml"
    churn.write_text(churn.read_text().replace("targets: [cloud, edge, batch]", "targets: [batch]"))
    (specs / "environments.yaml").write_text(
        f"environments:\n  prod:\n    storage: s3://{bucket}/root\n"
        "    notifier: {kind: webhook, url_env: PROD_HOOK_URL}\n"
    )
    for day in range(1, 7):
        feed.write_batch("churn", f"2026-06-{day:02d}", "normal")
    defs = build_definitions(specs, environment="prod")
    with dg.DagsterInstance.get() as instance:
        dataset = [K(["churn", "dataset"])]
        assert helpers.range(defs, instance, dataset, "2026-06-01", "2026-06-06").success
        result = defs.resolve_job_def("churn__retrain").execute_in_process(instance=instance)
        assert result.success
        run_id = result.run_id

    local = tmp_path / "bucket"  # the bucket's objects, the audit log among them, copied for the search
    for key in s3.keys(bucket):
        target = local / key
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(s3.client.get_object(Bucket=bucket, Key=key)["Body"].read())
    assert (local / "root" / "audit" / "churn.jsonl").exists()
    # Positive control: the search sees into the sqlite event log, the compute logs and the audit log.
    assert _hits(storage, run_id) and _hits(local / "root" / "audit", run_id)
    for secret in (SECRET_KEY, HOOK_TOKEN):
        assert _hits(storage, secret) == [], secret  # event log, compute logs, run storage
        assert _hits(local, secret) == [], secret  # data, mirror, audit log
