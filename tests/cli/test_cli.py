"""The `mlops-dagster` console script: validate, and the registry commands against a real instance.

The registry commands run in-process through `main([...])`; one test runs the installed console
script in a subprocess. Every registry test uses a persistent instance in a fresh DAGSTER_HOME
(the `storage` fixture), as the CLI reads the registry of record through `DagsterInstance.get()`.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import dagster as dg
import pytest

from mlops_dagster import build_definitions
from mlops_dagster.cli import main
from mlops_dagster.keys import Meta, Tags, champion_key
from mlops_dagster.registry import records

ROOT = Path(__file__).resolve().parents[2]
PIPELINES = ROOT / "pipelines"
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
DAYS = [f"2026-01-{d:02d}" for d in range(1, 15)]
BASE_PARAMS = "params: {max_iter: 100, random_state: 0}"
BASE_ESTIMATOR = "sklearn.ensemble.HistGradientBoostingClassifier"


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _materialize(defs: dg.Definitions, selection: object, partition: str | None = None) -> None:
    with warnings.catch_warnings(), dg.DagsterInstance.get() as instance:
        warnings.simplefilter("ignore")
        result = dg.materialize(
            list(defs.assets),
            selection=selection,
            instance=instance,
            resources=defs.resources,
            run_config=QUIET,
            partition_key=partition,
        )
    assert result.success


def _variant(folder: Path, params: str, estimator: str = BASE_ESTIMATOR) -> Path:
    """The demo specs with the churn model changed: same pipeline, a different model version."""
    shutil.copytree(PIPELINES, folder)
    churn = folder / "churn.yaml"
    text = churn.read_text()
    assert BASE_PARAMS in text and BASE_ESTIMATOR in text
    churn.write_text(text.replace(BASE_PARAMS, f"params: {params}").replace(BASE_ESTIMATOR, estimator))
    return folder


def _train(specs: Path) -> str:
    """Materialize churn/candidate from `specs` (training set already materialized); its version."""
    _materialize(build_definitions(specs), [dg.AssetKey(["churn", "candidate"])])
    with dg.DagsterInstance.get() as instance:
        latest = records.latest_candidate(instance, "churn")
    assert latest is not None
    return latest.version


def _champion_history(name: str = "churn") -> list[records.VersionRecord]:
    with dg.DagsterInstance.get() as instance:
        return records.champion_history(instance, name)


def _run_id(out: str) -> str:
    match = re.search(r"^run ([0-9a-f-]{36}) ", out, re.MULTILINE)
    assert match, out
    return match.group(1)


# ------------------------------------------------------------------------------------------------
# validate
# ------------------------------------------------------------------------------------------------


def test_validate_prints_one_line_per_pipeline(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(["validate", str(PIPELINES)], capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert any(line.startswith("churn: 1 feature group") and BASE_ESTIMATOR in line for line in lines)
    assert any(
        line.startswith("demand: 1 feature group") and "sklearn.linear_model.Ridge" in line for line in lines
    )


def test_validate_bad_spec_prints_file_line_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    specs = _variant(tmp_path / "specs", "{max_iter: 100}", "sklearn.ensemble.NoSuchEstimator")
    code, out, err = _run(["validate", str(specs)], capsys)  # loads, but the estimator does not import
    assert code == 1
    assert out == ""
    churn = specs / "churn.yaml"
    line = next(i for i, t in enumerate(churn.read_text().splitlines(), 1) if "estimator:" in t)
    assert f"{churn}:{line} model.estimator: cannot import 'sklearn.ensemble.NoSuchEstimator'" in err

    (specs / "extra.yaml").write_text("name: extra\nbogus: 1\n")
    code, out, err = _run(["validate", str(specs)], capsys)  # does not load
    assert code == 1
    assert f"{specs / 'extra.yaml'}:2 bogus: unknown key" in err
    assert "Traceback" not in err


def test_console_script_validate() -> None:
    script = Path(sys.executable).parent / "mlops-dagster"
    assert script.exists(), f"console script not installed at {script}"
    done = subprocess.run(
        [str(script), "validate", "pipelines"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "churn:" in done.stdout and "demand:" in done.stdout


def test_importing_the_cli_loads_no_heavy_library() -> None:
    code = (
        "import sys, mlops_dagster.cli\n"
        "heavy = [m for m in ('sklearn', 'bentoml', 'evidently', 'great_expectations', 'onnx', "
        "'onnxruntime') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_python_dash_m_runs_the_cli() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mlops_dagster.cli", "validate", "pipelines"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "churn:" in done.stdout and "demand:" in done.stdout


# ------------------------------------------------------------------------------------------------
# registry: errors that need no trained model
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["registry", "list", "churn"],
        ["registry", "show", "churn"],
        ["registry", "promote", "churn", "0123456789abcdef", "--specs", str(PIPELINES)],
        ["registry", "rollback", "churn", "--specs", str(PIPELINES)],
    ],
)
def test_registry_needs_dagster_home(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    code, out, err = _run(argv, capsys)
    assert code == 1
    assert "DAGSTER_HOME is not set" in err and "registry of record is the Dagster instance" in err
    assert "Traceback" not in err


def test_registry_unknown_pipeline(storage: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(["registry", "list", "nope"], capsys)
    assert code == 1
    assert "unknown pipeline 'nope'" in err and str(storage) in err


# ------------------------------------------------------------------------------------------------
# registry: the full loop on a real instance
# ------------------------------------------------------------------------------------------------


def test_registry_list_show_promote_rollback(
    storage: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    defs = build_definitions(PIPELINES)
    for day in DAYS:
        _materialize(defs, [dg.AssetKey(["churn", "dataset"])], partition=day)
    _materialize(
        defs,
        dg.AssetSelection.assets(
            dg.AssetKey(["features", "customer_activity"]),
            *(dg.AssetKey(["churn", a]) for a in ("training_set", "candidate", "champion")),
        ),
    )
    [first] = _champion_history()
    v1 = first.version
    assert first.decision == "promote"

    # list / show name the champion
    code, out, err = _run(["registry", "list", "churn"], capsys)
    assert code == 0, err
    assert f"champion {v1}" in out
    assert re.search(rf"\*\s+{v1}\s+.*\s+champion\s", out), out
    assert "roc_auc" in out and "promote" in out

    code, out, err = _run(["registry", "show", "churn"], capsys)
    assert code == 0, err
    assert out.startswith(f"churn:{v1}  (champion)")
    assert "Model card" in out and BASE_ESTIMATOR in out and "holdout metrics" in out

    code, out, err = _run(["registry", "show", "churn", v1[:8], "--json"], capsys)
    assert code == 0, err
    shown = json.loads(out)
    assert shown["version"] == v1 and shown["champion"] is True
    assert shown["card"]["version"] == v1 and shown["card"]["sha256"] == first.sha256

    code, _, err = _run(["registry", "show", "churn", "ffffffffff"], capsys)
    assert code == 1 and "unknown version 'ffffffffff' of pipeline 'churn'" in err

    # errors before any run: unknown version, short prefix, nothing to roll back to
    code, _, err = _run(
        ["registry", "promote", "churn", "deadbeefdeadbeef", "--specs", str(PIPELINES)], capsys
    )
    assert code == 1 and "unknown version 'deadbeefdeadbeef' of pipeline 'churn'" in err
    code, _, err = _run(["registry", "promote", "churn", v1[:4], "--specs", str(PIPELINES)], capsys)
    assert code == 1 and "at least 8 characters" in err
    code, _, err = _run(["registry", "rollback", "churn", "--specs", str(PIPELINES)], capsys)
    assert code == 1 and "nothing to roll back to" in err and v1 in err
    assert "Traceback" not in err

    # a project that does not define the pipeline
    empty_defs = tmp_path / "empty_definitions.py"
    empty_defs.write_text("import dagster as dg\n\ndefs = dg.Definitions()\n")
    code, _, err = _run(["registry", "promote", "churn", v1, "--defs", str(empty_defs)], capsys)
    assert code == 1 and "unknown pipeline 'churn'" in err and str(empty_defs) in err
    code, _, err = _run(["registry", "rollback", "churn", "--defs", str(tmp_path / "missing.py")], capsys)
    assert code == 1 and "nothing to roll back to" in err  # checked before the project is loaded

    # two more versions: one that passes the gates, one that cannot
    v2 = _train(_variant(tmp_path / "v2", "{max_iter: 150, learning_rate: 0.05, random_state: 1}"))
    bad = _train(_variant(tmp_path / "bad", "{strategy: prior}", "sklearn.dummy.DummyClassifier"))
    assert len({v1, v2, bad}) == 3

    code, out, err = _run(
        ["registry", "promote", "churn", bad[:10], "--specs", str(tmp_path / "bad")], capsys
    )
    assert code == 1
    assert "did not pass the gates" in err and "FAIL roc_auc" in err and "Traceback" not in err
    assert [r.version for r in _champion_history()] == [v1]

    code, out, err = _run(
        [
            "registry",
            "promote",
            "churn",
            v2[:10],
            "--specs",
            str(tmp_path / "v2"),
            "--reason",
            "better model",
        ],
        capsys,
    )
    assert code == 0, err
    assert f"champion of churn is now {v2} (was {v1})" in out
    promote_run = _run_id(out)

    defs_file = tmp_path / "definitions.py"
    defs_file.write_text(
        textwrap.dedent(
            f"""
            from mlops_dagster import build_definitions

            defs = build_definitions({str(PIPELINES)!r})
            """
        )
    )
    code, out, err = _run(
        ["registry", "rollback", "churn", "--defs", str(defs_file), "--reason", "v2 regressed"], capsys
    )
    assert code == 0, err
    assert f"champion of churn is now {v1} (was {v2})" in out
    rollback_run = _run_id(out)

    # the history is promote, promote, rollback; each a run tagged by the CLI
    history = _champion_history()
    assert [(r.version, r.decision, r.previous or None) for r in history] == [
        (v1, "rollback", v2),
        (v2, "promote", v1),
        (v1, "promote", None),
    ]
    assert "v2 regressed" in history[0].reasons
    assert any("better model" in reason for reason in history[1].reasons)
    with dg.DagsterInstance.get() as instance:
        mats = instance.fetch_materializations(champion_key("churn"), limit=10).records
        decisions = [r.asset_materialization.metadata[Meta.DECISION].value for r in mats]
        assert decisions == ["rollback", "promote", "promote"]
        for run_id, action in ((promote_run, "promote"), (rollback_run, "rollback")):
            tags = instance.get_run_by_id(run_id).tags
            assert tags[Tags.TRIGGER] == "cli" and tags[Tags.ACTION] == action

    code, out, err = _run(["registry", "list", "churn"], capsys)
    assert code == 0, err
    champion_section = out.split("Champion history")[1].split("Keep decisions")[0]
    actions = re.findall(r"UTC  (promote|rollback) ", champion_section)
    assert actions[:3] == ["rollback", "promote", "promote"]
    assert "former champion" in out and "rejected" in out
    assert bad[:12] in out.split("Keep decisions")[1]  # the failed promote is a recorded keep decision

    # v2 was rolled back from: a second rollback must not bring it back (v1 is the first champion)
    code, _, err = _run(["registry", "rollback", "churn", "--defs", str(defs_file)], capsys)
    assert code == 1 and "nothing to roll back to" in err
    assert _champion_history()[0].version == v1


# ------------------------------------------------------------------------------------------------
# rollback target: pure
# ------------------------------------------------------------------------------------------------


def _rec(version: str, decision: str, t: float) -> records.VersionRecord:
    return records.VersionRecord("p", version, version * 4, t, "run", decision, [], {}, None)


@pytest.mark.parametrize(
    ("events", "target"),
    [
        ([("A", "promote")], None),
        ([("A", "promote"), ("B", "promote")], "A"),
        ([("A", "promote"), ("B", "promote"), ("C", "promote")], "B"),
        ([("A", "promote"), ("B", "promote"), ("C", "promote"), ("B", "rollback")], "A"),
        ([("A", "promote"), ("B", "promote"), ("A", "rollback")], None),
        ([("A", "promote"), ("B", "promote"), ("A", "rollback"), ("C", "promote")], "A"),
        ([("A", "promote"), ("B", "promote"), ("A", "promote")], "B"),
    ],
)
def test_rollback_target(events: list[tuple[str, str]], target: str | None) -> None:
    history = [_rec(v, d, float(i)) for i, (v, d) in enumerate(events)][::-1]  # newest first
    found = records.rollback_target(history)
    assert (found.version if found else None) == target


# ------------------------------------------------------------------------------------------------
# registry list: one row per content-addressed version
# ------------------------------------------------------------------------------------------------


def test_registry_list_shows_a_retrained_version_once(
    storage: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    defs = build_definitions(PIPELINES)
    for day in DAYS[:8]:
        _materialize(defs, [dg.AssetKey(["churn", "dataset"])], partition=day)
    retrain = dg.AssetSelection.assets(
        dg.AssetKey(["features", "customer_activity"]),
        *(dg.AssetKey(["churn", a]) for a in ("training_set", "candidate", "champion")),
    )
    for _ in range(3):  # the same data three times: the same version, trained three times
        _materialize(defs, retrain)
    with dg.DagsterInstance.get() as instance:
        trainings = records.candidate_history(instance, "churn")
    assert len(trainings) == 3 and len({r.version for r in trainings}) == 1
    version = trainings[0].version

    code, out, err = _run(["registry", "list", "churn"], capsys)
    assert code == 0, err
    assert "1 version(s), 3 training run(s)" in out.splitlines()[0]
    versions_table = out.split("Versions (newest first)")[1].split("Champion history")[0]
    rows = [line for line in versions_table.splitlines() if version in line]
    assert len(rows) == 1, versions_table
    assert re.search(rf"\*\s+{version}\s+\S+ \S+ UTC\s+3\s+\S+\s+champion\s", rows[0]), rows[0]
    assert "TRAININGS" in versions_table

    code, out, err = _run(["registry", "list", "churn", "--json"], capsys)
    assert code == 0, err
    listed = json.loads(out)["versions"]
    assert [(v["version"], v["trainings"], v["status"]) for v in listed] == [(version, 3, "champion")]
    assert listed[0]["run_id"] == trainings[0].run_id  # the latest training's run
    assert listed[0]["first_trained"] <= listed[0]["time"]


def test_trained_versions_groups_by_version_newest_first() -> None:
    history = [_rec("B", "", 5.0), _rec("A", "", 4.0), _rec("B", "", 3.0), _rec("A", "", 1.0)]
    grouped = records.trained_versions(history)
    assert [(v.version, v.trainings, v.first_trained, v.latest.timestamp) for v in grouped] == [
        ("B", 2, 3.0, 5.0),
        ("A", 2, 1.0, 4.0),
    ]
