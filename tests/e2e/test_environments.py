"""Environments end to end: train in staging, export, import into prod, and prod's gates decide.

The demo's churn pipeline runs in environments declared by an `environments:` file written here:
`staging`, `prod` (an achievable floor stricter than the spec's) and `prod-strict` (a floor no model
reaches). Each environment is its own deployment, as on a cluster: its own Dagster instance
(DAGSTER_HOME), its own BentoML store (BENTOML_HOME), its own storage root and its own landing data
(prod sees other days than staging). BentoML reads BENTOML_HOME once per process, so every step of
an environment runs in a subprocess (`python -c` or the CLI).

Shown: prod records the version only through `registry import`, judges it on its own training set
with its own floor, and nothing of one environment appears in another's storage, store or instance;
tampered and partial exports are refused and change nothing; a Dagster+ branch deployment of
staging writes under `<staging storage>/branches/<branch>/` and nowhere else.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from mlops_dagster.keys import Meta, dataset_key
from mlops_dagster.registry import records

ROOT = Path(__file__).resolve().parents[2]
STAGING_DAYS = [f"2026-01-{d:02d}" for d in range(1, 6)]
PROD_DAYS = [f"2026-01-{d:02d}" for d in range(6, 12)]  # prod's own data: other days, more rows
BRANCH_DAY = "2026-01-12"
PROD_FLOOR, STRICT_FLOOR, SPEC_FLOOR = 0.72, 0.99, 0.7
TRAIN = "features/customer_activity,churn/training_set,churn/candidate"
JUDGE = "features/customer_activity,churn/training_set,churn/champion"

# Land `days` of the feed, materialize those dataset partitions, then the selected assets.
MATERIALIZE = textwrap.dedent(
    """
    import sys, warnings
    import dagster as dg
    from assets import feed
    from mlops_dagster import build_definitions

    specs, days, selection = sys.argv[1], [d for d in sys.argv[2].split(",") if d], sys.argv[3]
    for day in days:
        feed.write_batch("churn", day, "normal")
    defs = build_definitions(specs)
    quiet = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
    warnings.simplefilter("ignore")
    with dg.DagsterInstance.get() as instance:
        run = lambda keys, **kw: dg.materialize(list(defs.assets), selection=keys, instance=instance,
                                                resources=defs.resources, run_config=quiet, **kw)
        for day in days:
            run([dg.AssetKey(["churn", "dataset"])], partition_key=day)
        if selection:
            run([dg.AssetKey.from_user_string(k) for k in selection.split(",")])
    """
)


@dataclass(frozen=True)
class Deployment:
    """One environment's deployment: its name and the folders only it uses."""

    name: str
    base: Path
    env: dict[str, str]

    @property
    def home(self) -> Path:
        return self.base / "dagster_home"

    @property
    def bentoml(self) -> Path:
        return self.base / "bentoml"

    @property
    def storage(self) -> Path:
        return self.base / "storage"

    def run(self, argv: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        out = subprocess.run(
            [sys.executable, *argv], env=self.env, cwd=ROOT, capture_output=True, text=True, timeout=900
        )
        if check:
            assert out.returncode == 0, f"{self.name}: {' '.join(argv[:4])} failed:\n{out.stderr[-4000:]}"
        return out

    def materialize(self, specs: Path, days: list[str], selection: str) -> None:
        self.run(["-c", MATERIALIZE, str(specs), ",".join(days), selection])

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(["-m", "mlops_dagster.cli", *args], check=check)

    def instance(self) -> dg.DagsterInstance:
        return dg.DagsterInstance.from_config(str(self.home))

    def models(self) -> list[str]:
        folder = self.bentoml / "models" / "churn"
        return sorted(p.name for p in folder.iterdir() if p.name != "latest") if folder.exists() else []


def _deployment(tmp: Path, name: str, extra: dict[str, str] | None = None) -> Deployment:
    base = tmp / name
    (base / "dagster_home").mkdir(parents=True)
    (base / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {k: v for k, v in os.environ.items() if k != "MLOPS_ENV" and not k.startswith("DAGSTER_CLOUD_")}
    env.update(
        DAGSTER_HOME=str(base / "dagster_home"),
        BENTOML_HOME=str(base / "bentoml"),
        MLOPS_DEMO_DATA=str(base / "feed"),
        PYTHONPATH=str(ROOT),
        BENTOML_DO_NOT_TRACK="true",
        GX_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
    )
    env.update(extra if extra is not None else {"MLOPS_ENV": name})
    return Deployment(name, base, env)


def _tree(folder: Path) -> dict[str, str]:
    """Every file under `folder` with its sha256."""
    if not folder.exists():
        return {}
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _runs(d: Deployment) -> set[str]:
    with d.instance() as instance:
        return {r.dagster_run.run_id for r in instance.get_run_records()}


def _recorded(d: Deployment) -> tuple[set[str], list[str]]:
    """What an instance records: its runs and every asset key with an event."""
    with d.instance() as instance:
        keys = sorted(k.to_user_string() for k in instance.get_asset_keys())
        return {r.dagster_run.run_id for r in instance.get_run_records()}, keys


def _candidates(d: Deployment) -> list[records.VersionRecord]:
    with d.instance() as instance:
        return records.candidate_history(instance, "churn")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The environments file, staging's trained candidate, and its export (a neutral folder)."""
    tmp = tmp_path_factory.mktemp("environments")
    specs = tmp / "project" / "pipelines"
    specs.mkdir(parents=True)
    for name in ("churn.yaml", "features.yaml"):
        shutil.copy(ROOT / "pipelines" / name, specs / name)
    envs = {
        "staging": {"storage": str(tmp / "staging" / "storage"), "sensors": "stopped"},
        "prod": {
            "storage": str(tmp / "prod" / "storage"),
            "sensors": "stopped",
            "gates": {"churn": {"min": {"roc_auc": PROD_FLOOR}}},
        },
        "prod-strict": {
            "storage": str(tmp / "prod-strict" / "storage"),
            "sensors": "stopped",
            "gates": {"churn": {"min": {"roc_auc": STRICT_FLOOR}}},
        },
    }
    (specs / "environments.yaml").write_text(json.dumps({"environments": envs}, indent=2))
    staging = _deployment(tmp, "staging")
    staging.materialize(specs, STAGING_DAYS, TRAIN)
    [trained] = _candidates(staging)
    export = tmp / "transfer" / f"churn-{trained.version[:12]}"
    out = staging.cli(
        "registry", "export", "churn", trained.version[:10], "--to", str(export), "--specs", str(specs)
    )
    assert f"exported churn:{trained.version} from environment staging" in out.stdout
    return {"tmp": tmp, "specs": specs, "staging": staging, "version": trained, "export": export}


def _refused(prod: Deployment, export: Path, specs: Path, message: str) -> None:
    """Import `export` into `prod`: refused naming the file, with prod's instance and store unchanged."""
    before = (_recorded(prod), _tree(prod.bentoml), _tree(prod.storage))
    out = prod.cli("registry", "import", "churn", "--from", str(export), "--specs", str(specs), check=False)
    assert out.returncode == 1, out.stdout
    assert out.stderr.startswith("error: ") and message in out.stderr and str(export) in out.stderr, (
        out.stderr
    )
    assert "Traceback" not in out.stderr
    assert (_recorded(prod), _tree(prod.bentoml), _tree(prod.storage)) == before
    assert _candidates(prod) == [] and prod.models() == []


def test_staging_to_prod_prods_gates_decide_on_prods_data_and_nothing_crosses(world: dict[str, Any]) -> None:
    tmp, specs, staging = world["tmp"], world["specs"], world["staging"]
    trained, export = world["version"], world["export"]
    prod = _deployment(tmp, "prod")
    staging_before = {p: _tree(p) for p in (staging.storage, staging.bentoml)}

    # A tampered and two partial exports: refused, nothing stored or recorded in prod.
    for spoil, message in (
        ("flip", "sha256 of model.joblib is"),
        ("manifest.json", "manifest.json is missing"),
        ("drift_profile.json", "drift_profile.json listed in manifest.json but missing"),
    ):
        bad = tmp / "transfer" / f"bad-{spoil}"
        shutil.copytree(export, bad)
        if spoil == "flip":
            data = (bad / "model.joblib").read_bytes()
            (bad / "model.joblib").write_bytes(data[:100] + bytes([data[100] ^ 1]) + data[101:])
        else:
            (bad / spoil).unlink()
        _refused(prod, bad, specs, message)

    # The intact export: prod's store has the version only from now on.
    assert prod.models() == []
    out = prod.cli("registry", "import", "churn", "--from", str(export), "--specs", str(specs))
    assert "recorded as a candidate of churn in environment prod" in out.stdout
    assert prod.models() == [trained.version]
    mirror = prod.storage / "models" / "churn" / trained.version
    assert (mirror / "manifest.json").is_file()

    # prod materializes its own data and judges the import with its own floor, on its own holdout
    prod.materialize(specs, PROD_DAYS, JUDGE)
    with prod.instance() as instance:
        champion = records.current_champion(instance, "churn")
        imported = records.candidate_metadata(instance, "churn", trained.version)
        prod_partitions = set(instance.get_materialized_partitions(dataset_key("churn")))
        training_rows = (
            instance.get_latest_materialization_event(dg.AssetKey(["churn", "training_set"]))
            .asset_materialization.metadata["dagster/row_count"]
            .value
        )
    assert champion is not None and champion.decision == "promote" and champion.version == trained.version
    assert f">= floor {PROD_FLOOR:g}" in champion.reasons[0] and champion.reasons[0].startswith(
        "pass roc_auc"
    )
    assert training_rows == 300 * len(PROD_DAYS)
    assert any(r.startswith(f"holdout: {training_rows // 5} rows") for r in champion.reasons), (
        champion.reasons
    )
    assert champion.metrics["roc_auc"] != trained.metrics["roc_auc"]  # scored on prod's data, not staging's
    assert imported is not None and imported[Meta.TRIGGER] == "import"
    assert imported["mlops/imported_from"] == str(export) and Meta.HOLDOUT_CUTOFF not in imported

    # Nothing crossed: staging's storage and store are as they were; each instance has only its runs.
    assert {p: _tree(p) for p in (staging.storage, staging.bentoml)} == staging_before
    assert prod_partitions == set(PROD_DAYS)
    with staging.instance() as instance:
        assert set(instance.get_materialized_partitions(dataset_key("churn"))) == set(STAGING_DAYS)
        assert records.current_champion(instance, "churn") is None
    assert _runs(prod) and _runs(staging) and not _runs(prod) & _runs(staging)
    assert trained.run_id in _runs(staging) and trained.run_id not in _runs(prod)
    [record] = _candidates(prod)
    assert record.run_id == "" and record.trigger == "import"  # recorded by the import, not by a run
    prod_files = _tree(prod.storage)
    assert {f for f in prod_files if f.startswith("data/churn/dataset/")} == {
        f"data/churn/dataset/{d}.parquet" for d in PROD_DAYS
    }
    assert not {f for f in prod_files if not f.startswith(("data/", "models/churn/", "audit/"))}
    # prod's own audit log holds the import and prod's decision; staging's holds the export
    prod_lines = (prod.storage / "audit" / "churn.jsonl").read_text().splitlines()
    prod_log = [json.loads(line) for line in prod_lines]
    assert [r["action"] for r in prod_log][:1] == ["import"] and prod_log[0]["from"] == str(export)
    assert prod_log[-1]["action"] == "promote" and prod_log[-1]["environment"] == "prod"
    staging_log = (staging.storage / "audit" / "churn.jsonl").read_text().splitlines()
    assert [json.loads(line)["action"] for line in staging_log] == ["export"]
    assert {f for f in _tree(staging.storage) if f.startswith("data/churn/dataset/")} == {
        f"data/churn/dataset/{d}.parquet" for d in STAGING_DAYS
    }
    for d in (staging, prod):  # nothing fell back to the embedded default root
        assert not (d.home / "mlops").exists()
    assert _tree(mirror) == _tree(staging.storage / "models" / "churn" / trained.version)  # the same bytes


def test_strict_prod_refuses_the_same_version(world: dict[str, Any]) -> None:
    tmp, specs, trained = world["tmp"], world["specs"], world["version"]
    strict = _deployment(tmp, "prod-strict")
    strict.cli("registry", "import", "churn", "--from", str(world["export"]), "--specs", str(specs))
    strict.materialize(specs, PROD_DAYS, JUDGE)
    with strict.instance() as instance:
        assert records.current_champion(instance, "churn") is None
        [keep] = records.decision_history(instance, "churn")
    assert keep.decision == "keep" and keep.version == trained.version
    assert any(r.startswith("FAIL roc_auc") and f"< floor {STRICT_FLOOR:g}" for r in keep.reasons), (
        keep.reasons
    )
    assert not any(f"floor {SPEC_FLOOR:g}" in r for r in keep.reasons)  # the environment's floor replaced it


def test_a_branch_deployment_writes_under_its_own_prefix(world: dict[str, Any]) -> None:
    staging = world["staging"]
    before = _tree(staging.storage)
    branch = _deployment(
        world["tmp"],
        "branch",
        {
            "DAGSTER_CLOUD_DEPLOYMENT_NAME": "staging",
            "DAGSTER_CLOUD_IS_BRANCH_DEPLOYMENT": "1",
            "DAGSTER_CLOUD_GIT_BRANCH": "feature/x",
        },
    )
    branch.materialize(world["specs"], [BRANCH_DAY], "")
    own = staging.storage / "branches" / "feature-x"
    assert set(_tree(own)) == {f"data/churn/dataset/{BRANCH_DAY}.parquet"}
    assert {k: v for k, v in _tree(staging.storage).items() if not k.startswith("branches/")} == before
    with branch.instance() as instance:
        assert set(instance.get_materialized_partitions(dataset_key("churn"))) == {BRANCH_DAY}
    with staging.instance() as instance:
        assert BRANCH_DAY not in set(instance.get_materialized_partitions(dataset_key("churn")))
    assert _runs(branch) and not _runs(branch) & _runs(staging)
