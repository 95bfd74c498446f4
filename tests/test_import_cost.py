"""Loading the definitions imports no heavy ML library (CONTRACT.md section 5).

Each case runs in a fresh interpreter (the test process itself may already hold sklearn & co.), with the
repository root as working folder, and asks that interpreter which heavy modules it ended up with.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("evidently", "great_expectations", "bentoml", "sklearn", "onnx", "onnxruntime")
# Deployment libraries load in launchers, executors and `mlops-dagster deploy`, never with the definitions.
HEAVY += ("dagster_k8s", "dagster_aws", "kubernetes", "kubernetes_validate")

# Runs in the child: execute the case, resolve every Definitions it produced (as `dagster dev` would),
# then report the heavy modules loaded, plus `dagster` as a witness that the probe sees imports at all.
PROBE = """
import json, sys, types
import dagster as dg
{code}
scopes = [globals()] + [vars(v) for v in list(globals().values()) if isinstance(v, types.ModuleType)]
for scope in scopes:
    for value in list(scope.values()):
        if isinstance(value, dg.Definitions):
            value.resolve_asset_graph()
            print("resolved", file=sys.stderr)
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {heavy!r} or m == "dagster")))
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(BENTOML_DO_NOT_TRACK="true", GX_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1")
    env.pop("PYTHONPATH", None)  # only what `python -c` in the repo root sees: the root and the venv
    return env


def _loaded_modules(code: str) -> list[str]:
    script = PROBE.format(code=code, heavy=set(HEAVY))
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, f"the probe failed:\n{proc.stderr[-4000:]}"
    assert "resolved" in proc.stderr, "the case produced no Definitions"
    modules = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "dagster" in modules, "the probe does not see imports"
    return sorted({m.split(".")[0] for m in modules} - {"dagster"})


def test_build_definitions_imports_no_heavy_library() -> None:
    code = 'import mlops_dagster\ndefs = mlops_dagster.build_definitions("pipelines")'
    assert _loaded_modules(code) == []


def test_definitions_for_an_environment_import_no_heavy_library() -> None:
    code = (
        "import os\nos.environ['MLOPS_ENV'] = 'prod'\nimport mlops_dagster\n"
        'defs = mlops_dagster.build_definitions("pipelines")\n'
        "assert mlops_dagster.environments.active().name == 'prod'"
    )
    assert _loaded_modules(code) == []


def test_demo_definitions_import_no_heavy_library() -> None:
    if not (ROOT / "definitions.py").exists():
        pytest.skip("the demo's definitions.py does not exist yet")
    assert _loaded_modules("import definitions") == []


def test_importtime_of_the_package_lists_no_heavy_library() -> None:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import mlops_dagster"],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    # Lines look like `import time:       123 |       4567 |     package.module` (nesting adds spaces).
    imported = {
        line.rsplit("|", 1)[1].strip()
        for line in proc.stderr.splitlines()
        if line.startswith("import time:") and line.count("|") == 2
    }
    assert "mlops_dagster" in imported, "no -X importtime output for mlops_dagster"
    heavy = sorted({m.split(".")[0] for m in imported} & set(HEAVY))
    assert heavy == [], f"`import mlops_dagster` imports {heavy}"


# The registry, the CLI and the sensors read shared names from the leaf module `mlops_dagster.keys`;
# importing them (or the leaf module) must not pull in the factory or the component.
LEAF_USERS = [
    "mlops_dagster.keys",
    "mlops_dagster.registry.records",
    "mlops_dagster.registry.pool",
    "mlops_dagster.sensors.drift",
    "mlops_dagster.sensors.quality",
    "mlops_dagster.sensors.packaging",
    "mlops_dagster.cli",
    "mlops_dagster.cli.registry",
    "mlops_dagster.cli.quarantine",
]


def test_registry_cli_and_sensors_do_not_import_the_factory() -> None:
    script = (
        "import importlib, json, sys\n"
        f"for name in {LEAF_USERS!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('mlops_dagster.'))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert "mlops_dagster.keys" in loaded  # the probe sees the imports
    upper = [m for m in loaded if m.startswith("mlops_dagster.factory") or m == "mlops_dagster.component"]
    assert upper == []


def test_the_package_exports_load_on_first_use() -> None:
    import mlops_dagster

    assert "MLPipelineComponent" in dir(mlops_dagster)  # how `dg` discovers the component
    assert set(mlops_dagster.__all__) == set(mlops_dagster._EXPORTS) and set(mlops_dagster.__all__) <= set(
        dir(mlops_dagster)
    )
    assert mlops_dagster.build_definitions.__module__ == "mlops_dagster.factory.build"
    with pytest.raises(AttributeError, match="no_such_name"):
        mlops_dagster.no_such_name  # noqa: B018
