"""`mlops-dagster audit list|verify` on real logs, with a real Dagster instance at $DAGSTER_HOME."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest

from mlops_dagster.audit import audit_path, record_decision
from mlops_dagster.cli import main
from mlops_dagster.environments import activate
from tests.audit.test_audit_log import P, _append, report_decision, tamper


@pytest.fixture(autouse=True)
def _outside_a_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run from a folder without a definitions.py (the repository root has the demo's)."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_list_shows_the_records(storage: Path, capsys: pytest.CaptureFixture[str]) -> None:
    written = _append(3)
    code, out, err = _run(capsys, "audit", "list", P)
    assert code == 0 and err == ""
    assert f"{P}: 3 records in {storage / 'mlops' / 'audit' / 'churn.jsonl'}" in out
    rows = out.splitlines()[2:]
    assert len(rows) == 3
    assert rows[0].split()[:3] == ["1", written[0]["time"][:10], written[0]["time"][11:19]]
    assert "promote" in rows[0] and "v001" in rows[0]
    assert "alice (manual)" in rows[0] and "reason 1" in rows[0]
    assert "keep" in rows[1] and "v002" in rows[1] and "v001" in rows[1]

    code, out, _ = _run(capsys, "audit", "list", P, "--json")
    assert code == 0 and json.loads(out) == written


def test_list_warns_when_the_log_does_not_verify(storage: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _append(3)
    tamper(Path(audit_path(P).path), "edited", 2)
    code, out, err = _run(capsys, "audit", "list", P)
    assert code == 0 and "3 records" in out
    assert "warning: the log does not verify" in err and "line 2: record seq 2 was edited" in err


def test_list_of_an_unknown_pipeline_is_an_error(storage: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _append(1)
    code, out, err = _run(capsys, "audit", "list", "nope")
    assert code == 1 and out == ""
    assert "error: no audit log for 'nope' at" in err and "pipelines with a log there: churn" in err
    code, _, err = _run(capsys, "audit", "list", "../etc")
    assert code == 1 and "cannot name an audit log" in err


def test_verify_an_intact_log(storage: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _append(4)
    assert _run(capsys, "audit", "verify", P) == (0, "ok: churn (4 records)\n", "")


@pytest.mark.parametrize(
    ("how", "line", "what"),
    [
        ("edited", 2, "was edited"),
        ("deleted", 2, "chain broken"),
        ("swapped", 2, "chain broken"),
        ("truncated", 4, "torn last line"),
    ],
)
def test_verify_fails_and_names_the_line(
    storage: Path, capsys: pytest.CaptureFixture[str], how: str, line: int, what: str
) -> None:
    _append(4)
    path = Path(audit_path(P).path)
    tamper(path, how, line)
    code, out, err = _run(capsys, "audit", "verify", P)
    assert code == 1, out
    lines = out.splitlines()
    assert lines[0] == f"FAILED: {P}" and len(lines) == 2
    assert f"{path}: line {line}: " in lines[1] and what in lines[1]
    assert "1 of 1 audit log(s) not intact" in err


def test_verify_every_pipeline(storage: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _append(2)
    _append(3, pipeline="fraud")
    assert _run(capsys, "audit", "verify")[:2] == (0, "ok: churn (2 records)\nok: fraud (3 records)\n")
    tamper(Path(audit_path("fraud").path), "deleted", 1)
    code, out, _ = _run(capsys, "audit", "verify")
    assert code == 1
    assert out.splitlines()[0] == "ok: churn (2 records)" and out.splitlines()[1] == "FAILED: fraud"
    assert "line 1: record seq 2: chain broken" in out


def test_verify_reports_a_decision_missing_from_the_log(
    storage: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _append(2)
    with dg.DagsterInstance.get() as instance:
        run_id = report_decision(instance, "v900", "rollback")
        report_decision(instance, "v901", "promote")
    # `fraud` has a decision in the instance and no log at all: verify without NAME still checks it
    with dg.DagsterInstance.get() as instance:
        instance.report_runless_asset_event(
            dg.AssetMaterialization(
                asset_key=dg.AssetKey(["fraud", "champion"]),
                metadata={"mlops/version": "f1", "mlops/decision": "promote"},
            )
        )
    code, out, _ = _run(capsys, "audit", "verify")
    assert code == 1
    assert "FAILED: churn" in out and "rollback of version v900" in out and "promote of version v901" in out
    assert "FAILED: fraud" in out and "promote of version f1" in out

    record_decision(P, "rollback", version="v900", run_id=run_id, trigger="performance")
    code, out, _ = _run(capsys, "audit", "verify", P)
    assert code == 1 and "v900" not in out and "promote of version v901" in out


def test_verify_a_named_pipeline_with_nothing_is_an_error(
    storage: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(capsys, "audit", "verify", "nope")
    assert code == 1 and "error: no audit log for 'nope'" in err and "no registry of it" in err


def test_without_dagster_home_only_the_chain_is_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    _append(2)  # the default root: ./.mlops_dagster
    assert Path(".mlops_dagster/audit/churn.jsonl").is_file()
    code, out, _ = _run(capsys, "audit", "verify")
    assert code == 0 and "not checked against a Dagster instance" in out and "ok: churn (2 records)" in out


_DEFS = """
import dagster as dg
from mlops_dagster.environments import ActiveEnvironment, activate
from mlops_dagster.spec.environments import EnvironmentSpec

activate(ActiveEnvironment("staging", EnvironmentSpec(name="staging", storage={root!r})))
defs = dg.Definitions()
"""


def test_defs_choose_the_environment_whose_log_is_read(
    storage: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _append(1)  # in the default root
    staging = tmp_path / "staging-root"
    defs = tmp_path / "project" / "definitions.py"
    defs.parent.mkdir()
    defs.write_text(_DEFS.format(root=str(staging)))
    (staging / "audit").mkdir(parents=True)
    (staging / "audit" / "churn.jsonl").write_bytes(Path(audit_path(P).path).read_bytes() * 2)

    code, out, _ = _run(capsys, "audit", "verify", P, "--defs", str(defs))
    assert code == 1 and f"{staging / 'audit' / 'churn.jsonl'}: line 2: " in out
    code, out, _ = _run(capsys, "audit", "list", P, "--defs", str(defs))
    assert code == 0 and f"2 records in {staging}" in out
    activate(None)  # a new command is a new process: no environment chosen yet
    assert _run(capsys, "audit", "verify", P)[:2] == (0, "ok: churn (1 records)\n")  # no --defs: default root
