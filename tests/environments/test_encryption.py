"""`encryption:`: every object the loop writes to an environment's s3:// root carries its SSE settings."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from mlops_dagster import build_definitions
from mlops_dagster.environments import activate
from mlops_dagster.errors import SpecError
from mlops_dagster.spec import load_specs
from tests.s3_server import LocalS3, local_s3, moto_server

ROOT = Path(__file__).resolve().parents[2]
K = dg.AssetKey
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
KEY_ID = "alias/mlops-prod"


def _specs(tmp_path: Path, environments: str) -> Path:
    specs = tmp_path / "specs"
    shutil.copytree(ROOT / "pipelines", specs)
    (specs / "environments.yaml").write_text(environments)
    churn = specs / "churn.yaml"  # no serving targets: a shorter loop that still writes every kind
    churn.write_text(churn.read_text().replace("targets: [cloud, edge, batch]", "targets: [batch]"))
    return specs


@pytest.mark.parametrize(
    ("encryption", "storage", "expected"),
    [
        ("{sse: kms}", "s3://b-ok/x", "sse: kms needs kms_key_id"),
        ("{sse: s3, kms_key_id: k}", "s3://b-ok/x", "kms_key_id is for sse: kms"),
        ("{sse: kms, kms_key_id: k}", "/srv/mlops", "encryption applies to s3:// storage"),
        ("{sse: aes}", "s3://b-ok/x", "environments.prod.encryption.sse"),
    ],
)
def test_bad_encryption_settings_are_spec_errors(
    tmp_path: Path, encryption: str, storage: str, expected: str
) -> None:
    specs = _specs(
        tmp_path, f"environments:\n  prod:\n    storage: {storage}\n    encryption: {encryption}\n"
    )
    with pytest.raises(SpecError) as info:
        load_specs(specs)
    issues = [str(i) for i in info.value.issues]
    assert any("environments.yaml:" in i and expected in i for i in issues), issues


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def s3(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[LocalS3]:
    with local_s3(s3_endpoint, monkeypatch, tmp_path) as server:
        yield server


def test_every_object_written_carries_the_kms_key(  # type: ignore[no-untyped-def]
    s3: LocalS3, storage: Path, tmp_path: Path, helpers
) -> None:
    from assets import feed

    bucket = s3.new_bucket()
    environments = (
        f"environments:\n  prod:\n    storage: s3://{bucket}/root\n"
        f"    encryption: {{sse: kms, kms_key_id: {KEY_ID}}}\n"
    )
    for day in range(1, 7):
        feed.write_batch("churn", f"2026-05-{day:02d}", "normal")
    defs = build_definitions(_specs(tmp_path, environments), environment="prod")
    with dg.DagsterInstance.get() as instance:
        dataset = [K(["churn", "dataset"])]
        assert helpers.range(defs, instance, dataset, "2026-05-01", "2026-05-06", run_config=QUIET).success
        retrain = defs.resolve_job_def("churn__retrain")
        assert retrain.execute_in_process(instance=instance, run_config=QUIET).success
    keys = s3.keys(bucket)
    kinds = {key.split("/")[1] for key in keys}
    assert {"data", "models", "audit"} <= kinds, kinds  # Parquet, the model mirror and the audit log
    for key in keys:
        head = s3.client.head_object(Bucket=bucket, Key=key)
        assert (head.get("ServerSideEncryption"), head.get("SSEKMSKeyId")) == ("aws:kms", KEY_ID), key

    # Another environment in this process (none here) writes without the key: the setting is dropped.
    activate(None)
    other = s3.new_bucket()
    from upath import UPath

    from mlops_dagster.io.storage import write_bytes

    write_bytes(UPath(f"s3://{other}/plain.bin"), b"x")
    assert s3.client.head_object(Bucket=other, Key="plain.bin").get("SSEKMSKeyId") is None


def test_sse_s3_asks_for_aes256() -> None:
    from mlops_dagster.spec.environments import EncryptionSettings

    assert EncryptionSettings(sse="s3").request_arguments() == {"ServerSideEncryption": "AES256"}
