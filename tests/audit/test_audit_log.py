"""The audit log on real files, real processes, the moto S3 server and a real Dagster instance."""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from mlops_dagster.audit import GENESIS, audit_path, read_log, record_decision, verify_log
from mlops_dagster.audit.log import canonical, record_hash
from mlops_dagster.environments import ActiveEnvironment, activate
from mlops_dagster.keys import Meta, champion_key
from mlops_dagster.spec.environments import EnvironmentSpec
from tests.s3_server import LocalS3, local_s3, moto_server

P = "churn"


def _append(n: int, pipeline: str = P, start: int = 1) -> list[dict[str, Any]]:
    out = []
    for i in range(start, start + n):
        rec = record_decision(
            pipeline,
            "promote" if i % 2 else "keep",
            version=f"v{i:03d}",
            previous=f"v{i - 1:03d}" if i > 1 else None,
            reasons=[f"reason {i}", "holdout: 100 rows"],
            trigger="manual",
            run_id=f"run-{i}",
            by="alice",
            environment="dev",
            extra={"note": f"é {i}"},
        )
        assert rec is not None
        out.append(rec)
    return out


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def test_a_chain_of_appends_verifies_and_reads_back(storage: Path) -> None:
    written = _append(5)
    path = Path(audit_path(P).path)
    assert path == storage / "mlops" / "audit" / f"{P}.jsonl"
    lines = _lines(path)
    assert len(lines) == 5 and all(line.endswith(b"\n") for line in lines)
    records = read_log(P)
    assert records == written
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5]
    assert records[0]["prev_sha256"] == GENESIS
    for before, after in zip(records, records[1:], strict=False):
        assert after["prev_sha256"] == before["sha256"]
    for line, r in zip(lines, records, strict=True):
        assert line == canonical(r) + b"\n"  # canonical JSON on disk (ASCII: the é is escaped)
        unsealed = {k: v for k, v in r.items() if k != "sha256"}
        assert r["sha256"] == hashlib.sha256(canonical(unsealed)).hexdigest()
    assert records[2]["note"] == "é 3" and b"\\u00e9" in lines[2]
    assert {"time", "pipeline", "action", "version", "previous", "reasons", "trigger", "run_id", "by"} <= set(
        records[0]
    )
    assert verify_log(P) == []


def _edit(lines: list[bytes], k: int) -> list[bytes]:
    i = k - 1
    lines[i] = lines[i].replace(f"v{k:03d}".encode(), f"v{k:03d}".replace("0", "9", 1).encode())
    return lines


def _delete(lines: list[bytes], k: int) -> list[bytes]:
    return lines[: k - 1] + lines[k:]


def _swap(lines: list[bytes], k: int) -> list[bytes]:
    lines[k - 1], lines[k] = lines[k], lines[k - 1]
    return lines


TAMPER = {
    "edited": (_edit, "was edited"),
    "deleted": (_delete, "chain broken"),
    "swapped": (_swap, "chain broken"),
}


def tamper(path: Path, how: str, k: int) -> None:
    """Apply one tampering to line k of the log at `path` (used by the CLI tests too)."""
    if how == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: data.rfind(b"\n", 0, len(data) - 1) + 1 + 25])  # cut the last line
        return
    path.write_bytes(b"".join(TAMPER[how][0](_lines(path), k)))


@pytest.mark.parametrize("how", sorted(TAMPER))
@pytest.mark.parametrize("k", [1, 3])
def test_tampering_names_the_first_bad_line(storage: Path, how: str, k: int) -> None:
    _append(6)
    path = Path(audit_path(P).path)
    tamper(path, how, k)
    problems = verify_log(P)
    assert len(problems) == 1, problems
    assert f"line {k}: " in problems[0] and TAMPER[how][1] in problems[0], problems


def test_an_edit_with_a_recomputed_hash_breaks_the_next_link(storage: Path) -> None:
    _append(4)
    path = Path(audit_path(P).path)
    lines = _lines(path)
    forged = json.loads(lines[1])
    forged["version"] = "forged"
    forged["sha256"] = record_hash(forged)
    lines[1] = canonical(forged) + b"\n"
    path.write_bytes(b"".join(lines))
    problems = verify_log(P)
    assert len(problems) == 1 and "line 3: " in problems[0] and "chain broken" in problems[0], problems


def test_a_torn_last_line_is_named_then_repaired_visibly_by_the_next_append(storage: Path) -> None:
    _append(3)
    path = Path(audit_path(P).path)
    data = path.read_bytes()
    cut = data.rfind(b"\n", 0, len(data) - 1) + 1 + 40
    torn = data[cut - 40 :][:40]
    path.write_bytes(data[:cut])  # a process killed while writing line 3
    problems = verify_log(P)
    assert len(problems) == 1 and "line 3: torn last line (40 bytes" in problems[0], problems
    assert len(read_log(P)) == 2

    rec = record_decision(P, "rollback", version="v001", previous="v002", reasons=["bad live metric"])
    assert rec is not None and rec["seq"] == 4
    records = read_log(P)
    assert [r["action"] for r in records] == ["promote", "keep", "repair", "rollback"]
    repair = records[2]
    assert repair["dropped_bytes"] == 40 and repair["dropped_sha256"] == hashlib.sha256(torn).hexdigest()
    assert repair["seq"] == 3 and repair["prev_sha256"] == records[1]["sha256"]
    assert "removed a torn last line (40 bytes" in repair["reasons"][0]
    assert verify_log(P) == []


def test_a_last_line_that_is_not_json_is_repaired_too(storage: Path) -> None:
    _append(2)
    path = Path(audit_path(P).path)
    with path.open("ab") as f:
        f.write(b'{"seq": 3, "half\n')
    problems = verify_log(P)
    assert len(problems) == 1 and "line 3: not a JSON audit record" in problems[0] and "torn" in problems[0]
    record_decision(P, "promote", version="v003")
    records = read_log(P)
    assert [r["action"] for r in records] == ["promote", "keep", "repair", "promote"]
    assert records[2]["dropped_sha256"] == hashlib.sha256(b'{"seq": 3, "half\n').hexdigest()
    assert verify_log(P) == []


def test_a_whole_record_missing_only_its_newline_is_kept(storage: Path) -> None:
    written = _append(3)
    path = Path(audit_path(P).path)
    path.write_bytes(path.read_bytes()[:-1])
    assert "line 3: torn last line" in verify_log(P)[0]
    record_decision(P, "keep", version="v004")
    records = read_log(P)
    assert records[:3] == written and [r["action"] for r in records] == ["promote", "keep", "promote", "keep"]
    assert verify_log(P) == []


_WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from mlops_dagster.audit import record_decision
    worker, n, sync = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    (sync / f"ready-{worker}").touch()
    while not (sync / "go").exists():  # start together, so the appends really overlap
        time.sleep(0.001)
    for i in range(n):
        assert record_decision("churn", "keep", version=f"{worker}-{i}", run_id=f"{worker}-{i}") is not None
    """
)


def run_writers(tmp_path: Path, workers: int, n: int, script: str = _WRITER) -> None:
    """Start `workers` processes appending `n` records each, released at once; wait for them."""
    sync = tmp_path / "sync"
    sync.mkdir()
    root = str(Path(__file__).parents[2])
    procs = [
        subprocess.Popen([sys.executable, "-c", script, f"w{w}", str(n), str(sync)], cwd=root)
        for w in range(workers)
    ]
    try:
        while len(list(sync.glob("ready-*"))) < workers and all(p.poll() is None for p in procs):
            time.sleep(0.01)
        (sync / "go").touch()
        assert [p.wait(timeout=300) for p in procs] == [0] * workers
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()


def test_concurrent_appends_from_processes_give_one_unbroken_chain(storage: Path, tmp_path: Path) -> None:
    workers, n = 8, 20
    run_writers(tmp_path, workers, n)
    records = read_log(P)
    assert [r["seq"] for r in records] == list(range(1, workers * n + 1))
    assert {r["version"] for r in records} == {f"w{w}-{i}" for w in range(workers) for i in range(n)}
    assert verify_log(P) == []


class _Log:
    def __init__(self) -> None:
        self.warnings: list[str] = []

    def warning(self, msg: str) -> None:
        self.warnings.append(msg)


def test_record_decision_never_raises(storage: Path, caplog: pytest.LogCaptureFixture) -> None:
    (storage / "mlops").write_text("a file where the storage root's folder should be")
    log = _Log()
    assert record_decision(P, "promote", version="v1", log=log) is None
    assert len(log.warnings) == 1 and "could not record promote of churn version v1" in log.warnings[0]
    with caplog.at_level(logging.WARNING, logger="mlops_dagster.audit"):
        assert record_decision(P, "promote", version="v1") is None
        assert record_decision("../escape", "promote", version="v1") is None
        assert record_decision(P, "approve-all", version="v1") is None
        assert record_decision(P, "keep", version="v1", extra={"sha256": "0" * 64}) is None
    text = caplog.text
    assert "could not record promote of churn" in text and "cannot name an audit log" in text
    assert "unknown audit action 'approve-all'" in text and "would overwrite the record's own" in text


# -- s3 --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def s3(s3_endpoint: str, storage: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[LocalS3]:
    with local_s3(s3_endpoint, monkeypatch, tmp_path) as server:
        yield server


def test_an_s3_log_appends_verifies_and_shows_tampering(s3: LocalS3, storage: Path) -> None:
    bucket = s3.new_bucket()
    activate(ActiveEnvironment("prod", EnvironmentSpec(name="prod", storage=f"s3://{bucket}/prod")))
    _append(4)
    key = f"prod/audit/{P}.jsonl"
    assert s3.keys(bucket, "prod/") == [key]
    assert not (storage / "mlops" / "audit").exists()
    assert [r["seq"] for r in read_log(P)] == [1, 2, 3, 4] and verify_log(P) == []

    body = s3.client.get_object(Bucket=bucket, Key=key)["Body"].read()
    lines = body.splitlines(keepends=True)
    s3.client.put_object(Bucket=bucket, Key=key, Body=b"".join(_edit(list(lines), 2)))
    problems = verify_log(P)
    assert len(problems) == 1 and "line 2: " in problems[0] and "was edited" in problems[0], problems

    s3.client.put_object(Bucket=bucket, Key=key, Body=body[:-30])  # torn last line
    assert "line 4: torn last line" in verify_log(P)[0]
    assert record_decision(P, "rollback", version="v002") is not None
    assert [r["action"] for r in read_log(P)] == ["promote", "keep", "promote", "repair", "rollback"]
    assert verify_log(P) == []


# -- against the Dagster instance --------------------------------------------------------------------


def report_decision(instance: dg.DagsterInstance, version: str, decision: str) -> str:
    """Record a champion decision in the instance as the champion asset does; returns its run id."""
    key = champion_key(P)
    metadata = {Meta.VERSION: version, Meta.DECISION: decision, Meta.REASONS: dg.MetadataValue.json(["x"])}
    if decision == "keep":
        instance.report_runless_asset_event(dg.AssetObservation(asset_key=key, metadata=metadata))
        records = instance.fetch_observations(key, limit=1).records
    else:
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key, metadata=metadata))
        records = instance.fetch_materializations(key, limit=1).records
    return records[0].event_log_entry.run_id


def test_a_decision_in_the_instance_but_not_in_the_log_is_reported(storage: Path) -> None:
    with dg.DagsterInstance.get() as instance:
        _append(2)
        run_promote = report_decision(instance, "v777", "promote")
        run_keep = report_decision(instance, "v778", "keep")
        problems = verify_log(P, instance=instance)
        assert len(problems) == 2, problems
        assert "decision missing from the log: promote of version v777" in problems[0]
        assert "keep of version v778" in problems[1]
        assert verify_log(P) == []  # the chain itself is intact

        record_decision(P, "rollback", version="v777", run_id=run_promote)  # wrong action: still missing
        assert len(verify_log(P, instance=instance)) == 2
        record_decision(P, "manual_promote", version="v777", run_id=run_promote, by="alice")
        record_decision(P, "keep", version="v778", run_id=run_keep)
        assert verify_log(P, instance=instance) == []
