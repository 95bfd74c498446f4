"""`mlops-dagster registry export | import`: a version crosses instances only as checked files.

The source is a real `churn/candidate` (the demo pipelines, five daily partitions) in its own
DAGSTER_HOME; each test imports into a fresh target DAGSTER_HOME through the CLI (in process). The
processes share one BentoML store here, so a refusal test first removes the version from it: then
"nothing stored" is checked on the store itself. (tests/e2e/test_environments.py runs each side in
its own process and store.)
"""

from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from mlops_dagster.cli import main
from mlops_dagster.keys import Meta, candidate_key
from mlops_dagster.registry import records
from mlops_dagster.registry.mirror import MANIFEST
from mlops_dagster.registry.store import MODEL_FILE, sha256_hex
from mlops_dagster.registry.transfer import EXPORT_FORMAT, IMPORTED_FROM, RECORD_KEYS
from tests.s3_server import LocalS3, local_s3, moto_server

ROOT = Path(__file__).resolve().parents[2]
PIPELINES = ROOT / "pipelines"
# Days no other test trains churn on: the version (a content hash) is this module's alone in the BentoML
# store the xdist workers share, so dropping it here never pulls it from under another test.
DAYS = [f"2026-02-{d:02d}" for d in range(11, 16)]
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
FILES = {MODEL_FILE, "model_card.json", "model_card.md", "drift_profile.json", "reference_sample.parquet"}


def _home(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return folder


def _train(home: Path, data: Path) -> dict[str, Any]:
    """Materialize churn's dataset (DAYS), features, training set and candidate in `home`."""
    from assets import feed
    from mlops_dagster import build_definitions

    for day in DAYS:
        feed.write_batch("churn", day, "normal")
    defs = build_definitions(PIPELINES)
    with warnings.catch_warnings(), dg.DagsterInstance.get() as instance:
        warnings.simplefilter("ignore")
        for day in DAYS:
            assert dg.materialize(
                list(defs.assets),
                selection=[dg.AssetKey(["churn", "dataset"])],
                instance=instance,
                resources=defs.resources,
                partition_key=day,
                run_config=QUIET,
            ).success
        keys = [dg.AssetKey(["features", "customer_activity"]), dg.AssetKey(["churn", "training_set"])]
        keys.append(candidate_key("churn"))
        assert dg.materialize(
            list(defs.assets), selection=keys, instance=instance, resources=defs.resources, run_config=QUIET
        ).success
        latest = records.latest_candidate(instance, "churn")
        assert latest is not None
        md = records.candidate_metadata(instance, "churn", latest.version)
    assert md is not None
    return md


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A trained churn candidate in its own DAGSTER_HOME, and its export (a folder)."""
    base = tmp_path_factory.mktemp("source")
    home = _home(base / "dagster_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DAGSTER_HOME", str(home))
        mp.setenv("MLOPS_DEMO_DATA", str(base / "demo-data"))
        md = _train(home, base / "demo-data")
        export = base / "export"
        assert (
            main(
                [
                    "registry",
                    "export",
                    "churn",
                    md[Meta.VERSION][:10],
                    "--to",
                    str(export),
                    "--specs",
                    str(PIPELINES),
                ]
            )
            == 0
        )
    yield {"home": home, "metadata": md, "version": md[Meta.VERSION], "export": export}


@pytest.fixture
def target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh target instance (DAGSTER_HOME); the CLI in this test runs against it."""
    home = _home(tmp_path / "target_home")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _import(uri: Path | str, capsys: pytest.CaptureFixture[str], name: str = "churn") -> tuple[int, str, str]:
    return _cli(["registry", "import", name, "--from", str(uri), "--specs", str(PIPELINES)], capsys)


def _candidates(home: Path) -> list[records.VersionRecord]:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        return records.candidate_history(instance, "churn")


def _drop_from_store(version: str) -> None:
    """Forget the version in this process's BentoML store (as a target machine would not have it)."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        bentoml.models.delete(f"churn:{version}")
    except NotFound:
        pass


@pytest.fixture
def stored(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The versions this test's imports added to the store. The store itself is shared with the other
    xdist workers, which may save the same content-addressed churn version at any moment: whether a
    refused import stored something is told by the calls, not by the store's content."""
    from mlops_dagster.registry import store

    calls: list[str] = []
    real = store.store_files

    def spy(pipeline: str, files: Any, sha256: str) -> Any:
        calls.append(sha256)
        return real(pipeline, files, sha256)

    monkeypatch.setattr(store, "store_files", spy)
    return calls


def _in_store(version: str) -> bool:
    from mlops_dagster.registry.store import _get

    return _get(f"churn:{version}") is not None


def test_export_writes_every_file_with_its_sha256_and_the_candidate_record(source: dict[str, Any]) -> None:
    export, md = source["export"], source["metadata"]
    manifest = json.loads((export / MANIFEST).read_text())
    assert manifest["format"] == EXPORT_FORMAT and manifest["pipeline"] == "churn"
    assert manifest["version"] == source["version"] and manifest["sha256"] == md[Meta.SHA256]
    assert set(manifest["files"]) == FILES
    assert {p.name for p in export.iterdir()} == FILES | {MANIFEST}
    for name, digest in manifest["files"].items():
        assert sha256_hex((export / name).read_bytes()) == digest, name
    assert sha256_hex((export / MODEL_FILE).read_bytes()) == md[Meta.SHA256]
    record = manifest["candidate"]
    assert set(record) == {k for k in RECORD_KEYS if md.get(k) is not None}
    for key in (Meta.FEATURES, Meta.METRICS, Meta.CLASSES, Meta.DRIFT_COLUMNS, Meta.DATASET_SCHEMA):
        assert record[key] == json.loads(json.dumps(md[key])), key
    assert manifest["source"]["holdout_cutoff"] == md[Meta.HOLDOUT_CUTOFF]


def test_export_errors_name_the_problem(
    source: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(source["home"]))
    specs = ["--specs", str(PIPELINES)]
    code, _, err = _cli(
        ["registry", "export", "churn", "deadbeefdeadbeef", "--to", str(tmp_path / "x"), *specs], capsys
    )
    assert code == 1 and "unknown version 'deadbeefdeadbeef' of pipeline 'churn'" in err
    code, _, err = _cli(["registry", "export", "churn", "0b", "--to", str(tmp_path / "x"), *specs], capsys)
    assert code == 1 and "at least 8 characters" in err
    code, _, err = _cli(
        ["registry", "export", "demand", source["version"], "--to", str(tmp_path / "x"), *specs], capsys
    )
    assert code == 1 and "unknown pipeline 'demand'" in err
    assert not (tmp_path / "x").exists()

    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("keep me")
    code, _, err = _cli(["registry", "export", "churn", source["version"], "--to", str(busy), *specs], capsys)
    assert code == 1 and f"{busy} is not empty and is not an export of churn:{source['version']}" in err
    assert [p.name for p in busy.iterdir()] == ["notes.txt"]
    assert "Traceback" not in err

    again = tmp_path / "again"  # exporting the same version to the same place again is fine
    shutil.copytree(source["export"], again)
    code, out, err = _cli(
        ["registry", "export", "churn", source["version"], "--to", str(again), *specs], capsys
    )
    assert code == 0, err
    assert {p.name for p in again.iterdir()} == FILES | {MANIFEST}


def test_import_records_a_candidate_for_the_targets_gates(
    source: dict[str, Any], target: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    version, md = source["version"], source["metadata"]
    _drop_from_store(version)
    code, out, err = _import(source["export"], capsys)
    assert code == 0, err
    assert f"verified 5 files of churn:{version}" in out and "recorded as a candidate of churn" in out
    assert _in_store(version)
    mirror = target / "mlops" / "models" / "churn" / version  # the target environment's mirror
    assert {p.name for p in mirror.iterdir()} == FILES | {MANIFEST}

    with dg.DagsterInstance.get() as instance:
        latest = records.latest_candidate(instance, "churn")
        assert latest is not None and latest.version == version and latest.sha256 == md[Meta.SHA256]
        assert latest.run_id == ""  # recorded by the import, not by a run of this instance
        assert records.find_version(instance, "churn", version[:8]) == latest
        imported = records.candidate_metadata(instance, "churn", version)
        assert not instance.get_run_records()
    assert imported is not None
    # the keys the candidate asset writes, without the holdout cutoff (the target splits its own data)
    assert set(imported) == (set(md) - {Meta.HOLDOUT_CUTOFF}) | {IMPORTED_FROM}
    assert imported[Meta.TRIGGER] == "import" and imported[IMPORTED_FROM] == str(source["export"])
    assert imported[Meta.FEATURES] == md[Meta.FEATURES] and imported[Meta.METRICS] == md[Meta.METRICS]
    assert Path(imported[Meta.MODEL_CARD]).read_text() == (source["export"] / "model_card.md").read_text()

    code, out, err = _import(source["export"], capsys)  # idempotent: stored again, not recorded twice
    assert code == 0, err
    assert "already a candidate in this instance" in out and "nothing recorded again" in out
    assert len(_candidates(target)) == 1


def _flip(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))


def _rewrite_manifest(folder: Path, change: Callable[[dict[str, Any]], None]) -> None:
    manifest = json.loads((folder / MANIFEST).read_text())
    change(manifest)
    (folder / MANIFEST).write_text(json.dumps(manifest))


def _forge_model(folder: Path) -> None:
    """Another model in the place of the exported one, the manifest's hash of it updated to match."""
    _flip(folder / MODEL_FILE)
    _rewrite_manifest(
        folder, lambda m: m["files"].__setitem__(MODEL_FILE, sha256_hex((folder / MODEL_FILE).read_bytes()))
    )


REFUSALS: dict[str, tuple[Callable[[Path], None], str, str]] = {
    "tampered model": (lambda f: _flip(f / MODEL_FILE), "churn", f"sha256 of {MODEL_FILE} is"),
    "tampered card": (lambda f: _flip(f / "model_card.md"), "churn", "sha256 of model_card.md is"),
    "tampered drift profile": (
        lambda f: _flip(f / "drift_profile.json"),
        "churn",
        "sha256 of drift_profile.json is",
    ),
    "missing manifest": (lambda f: (f / MANIFEST).unlink(), "churn", "manifest.json is missing"),
    "missing file": (
        lambda f: (f / "reference_sample.parquet").unlink(),
        "churn",
        "reference_sample.parquet listed in manifest.json but missing",
    ),
    "unlisted file": (
        lambda f: (f / "backdoor.pkl").write_bytes(b"x"),
        "churn",
        "backdoor.pkl is not listed in manifest.json",
    ),
    "another pipeline": (lambda f: None, "demand", "is for pipeline 'churn', not 'demand'"),
    "nothing there": (shutil.rmtree, "churn", "no export at"),
    "newer format": (
        lambda f: _rewrite_manifest(f, lambda m: m.__setitem__("format_version", 2)),
        "churn",
        "has format_version 2",
    ),
    "forged model and manifest": (_forge_model, "churn", f"{MODEL_FILE} hashes to"),
    "record of another version": (
        lambda f: _rewrite_manifest(f, lambda m: m["candidate"].__setitem__(Meta.VERSION, "0" * 32)),
        "churn",
        f"candidate {Meta.VERSION} is '{'0' * 32}'",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_a_tampered_or_partial_export_is_refused_and_nothing_is_stored_or_recorded(
    case: str,
    source: dict[str, Any],
    target: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    stored: list[str],
) -> None:
    spoil, pipeline, message = REFUSALS[case]
    export = tmp_path / "export"
    shutil.copytree(source["export"], export)
    spoil(export)
    _drop_from_store(source["version"])
    code, out, err = _import(export, capsys, pipeline)
    assert code == 1, out
    assert err.startswith("error: ") and message in err and str(export) in err, err
    assert "Traceback" not in err
    assert stored == []
    assert not (target / "mlops" / "models").exists()
    with dg.DagsterInstance.get() as instance:
        assert not instance.has_asset_key(candidate_key(pipeline))


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def s3(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[LocalS3]:
    with local_s3(s3_endpoint, monkeypatch, tmp_path) as server:
        yield server


def test_export_to_s3_and_import_from_it(
    source: dict[str, Any],
    s3: LocalS3,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    stored: list[str],
) -> None:
    bucket, version = s3.new_bucket(), source["version"]
    uri = f"s3://{bucket}/exports/churn-{version[:8]}"
    monkeypatch.setenv("DAGSTER_HOME", str(source["home"]))
    code, out, err = _cli(
        ["registry", "export", "churn", version, "--to", uri, "--specs", str(PIPELINES)], capsys
    )
    assert code == 0, err
    prefix = f"exports/churn-{version[:8]}/"
    assert s3.keys(bucket, prefix) == sorted(prefix + n for n in FILES | {MANIFEST})

    # a changed byte in the bucket is refused; then the intact export imports
    key = prefix + "model_card.json"
    original = s3.client.get_object(Bucket=bucket, Key=key)["Body"].read()
    s3.client.put_object(Bucket=bucket, Key=key, Body=original.replace(b'"roc_auc"', b'"roc_auX"'))
    home = _home(tmp_path / "target_home")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    _drop_from_store(version)
    code, _, err = _import(uri, capsys)
    assert code == 1 and "sha256 of model_card.json is" in err and uri in err
    assert stored == [] and _candidates(home) == []

    s3.client.put_object(Bucket=bucket, Key=key, Body=original)
    code, out, err = _import(uri, capsys)
    assert code == 0, err
    [record] = _candidates(home)
    assert record.version == version and _in_store(version)
