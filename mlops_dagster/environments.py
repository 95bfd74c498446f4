"""Which environment this process serves, and what that changes (CONTRACT section 6).

One code location serves one environment. `build_definitions` picks it, in order, from its
`environment=` argument, the `MLOPS_ENV` variable, or (on Dagster+) `DAGSTER_CLOUD_DEPLOYMENT_NAME`;
with none of them, the embedded default runs as before. The choice is kept for the process
(`active()`), because artifacts written outside the IO manager (model mirrors, exports) follow its
storage root too.

Isolation: each environment has its own storage root (data, quarantine, model mirrors), and, being a
separate deployment, its own Dagster instance (the registry's history) and BentoML store. A Dagster+
branch deployment (`DAGSTER_CLOUD_IS_BRANCH_DEPLOYMENT=1`) writes under
`<root>/branches/<branch>/`, so a branch never touches its base deployment's files, and its sensors
start stopped unless its environment says `sensors: running`.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import dagster as dg

from mlops_dagster.errors import SpecError, SpecIssue
from mlops_dagster.spec.compute import ComputeSpec
from mlops_dagster.spec.environments import ENV_NAME_PATTERN, EncryptionSettings, EnvironmentSpec
from mlops_dagster.spec.models import GatesSpec, PipelineSpec

ENV_VAR = "MLOPS_ENV"
CLOUD_DEPLOYMENT_VAR = "DAGSTER_CLOUD_DEPLOYMENT_NAME"
CLOUD_BRANCH_FLAG_VAR = "DAGSTER_CLOUD_IS_BRANCH_DEPLOYMENT"
CLOUD_GIT_BRANCH_VAR = "DAGSTER_CLOUD_GIT_BRANCH"


def embedded_storage_root() -> str:
    """`$DAGSTER_HOME/mlops` when DAGSTER_HOME is set, else `./.mlops_dagster` in the working folder."""
    home = os.environ.get("DAGSTER_HOME")
    return os.path.join(home, "mlops") if home else os.path.join(os.getcwd(), ".mlops_dagster")


def join_root(root: str, *parts: str) -> str:
    """`root` (folder or URL) with `parts` appended by `/`."""
    return "/".join([root.rstrip("/"), *parts]) if root != "/" else "/" + "/".join(parts)


def branch_slug(name: str) -> str:
    """A branch name as one safe path segment: `feature/New model` -> `feature-new-model`."""
    slug = re.sub(r"[^a-z0-9_.-]+", "-", name.lower()).strip("-.")
    return slug[:100] or "branch"


@dataclass(frozen=True)
class ActiveEnvironment:
    """The environment a process serves.

    Attributes:
        name: The environment's name; None for the embedded default.
        spec: Its settings from an `environments:` file; None when not declared there.
        branch: The Dagster+ branch it serves, when a branch deployment.
        chosen_by: What chose it: `argument`, `MLOPS_ENV`, `DAGSTER_CLOUD_DEPLOYMENT_NAME` or `default`.
    """

    name: str | None
    spec: EnvironmentSpec | None
    branch: str | None = None
    chosen_by: str = "default"

    @property
    def storage_root(self) -> str:
        """Where this environment's data, quarantine and model mirrors go: its `storage`, else
        `<embedded root>/<name>` (the embedded root follows `$DAGSTER_HOME` when it is read), under
        `branches/<branch>/` on a branch deployment."""
        if self.spec is not None and self.spec.storage:
            root = self.spec.storage
        elif self.name:
            root = join_root(embedded_storage_root(), self.name)
        else:
            root = embedded_storage_root()
        return join_root(root, "branches", branch_slug(self.branch)) if self.branch else root

    @property
    def data_root(self) -> str:
        """The IO manager's base path: `<storage root>/data`."""
        return join_root(self.storage_root, "data")

    @property
    def sensors(self) -> str | None:
        """`running` or `stopped` for every sensor, or None for each sensor's own default."""
        if self.spec is not None and self.spec.sensors is not None:
            return self.spec.sensors
        return "stopped" if self.branch else None

    @property
    def approval(self) -> str:
        return self.spec.approval if self.spec else "none"

    @property
    def signing(self) -> str:
        return self.spec.signing if self.spec else "off"

    @property
    def compute(self) -> dict[str, ComputeSpec]:
        return dict(self.spec.compute) if self.spec else {}

    def describe(self) -> dict[str, str]:
        """What the UI shows about the environment (definition metadata on each champion)."""
        return {
            "mlops/environment": self.name or "default",
            "mlops/storage_root": self.storage_root,
            "mlops/approval": self.approval,
            "mlops/signing": self.signing,
            **({"mlops/branch": self.branch} if self.branch else {}),
        }


def select_environment(
    declared: Sequence[EnvironmentSpec],
    explicit: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> ActiveEnvironment:
    """Choose the environment: `explicit`, else `MLOPS_ENV`, else `DAGSTER_CLOUD_DEPLOYMENT_NAME`.

    A name given explicitly or by `MLOPS_ENV` must be declared when any environment is declared (a
    typo must not write into a fresh, empty environment); with no `environments:` file at all, it gets
    the default settings under `<default root>/<name>`. A Dagster+ deployment name need not be
    declared.

    Raises:
        SpecError: the chosen name is not declared.
    """
    env = os.environ if environ is None else environ
    by_name = {e.name: e for e in declared}
    name, chosen_by = explicit, "argument"
    if not name:
        name, chosen_by = env.get(ENV_VAR) or None, ENV_VAR
    if not name:
        name, chosen_by = env.get(CLOUD_DEPLOYMENT_VAR) or None, CLOUD_DEPLOYMENT_VAR
    if not name:
        return ActiveEnvironment(None, None)
    if not re.fullmatch(ENV_NAME_PATTERN, name):  # it becomes a folder name: no `..`, `/` or spaces
        where = f" ({chosen_by})" if chosen_by != "argument" else ""
        message = (
            f"environment name {name!r}{where} must match {ENV_NAME_PATTERN} (lowercase, digits, - and _)"
        )
        raise SpecError([SpecIssue("<environment>", None, "", message)])
    spec = by_name.get(name)
    if spec is None and by_name and chosen_by != CLOUD_DEPLOYMENT_VAR:
        where = f" ({chosen_by})" if chosen_by != "argument" else ""
        raise SpecError(
            [
                SpecIssue(
                    "<environment>",
                    None,
                    "",
                    f"unknown environment {name!r}{where}; declared: {', '.join(sorted(by_name))}",
                )
            ]
        )
    branch = None
    if env.get(CLOUD_BRANCH_FLAG_VAR, "").strip().lower() in ("1", "true", "yes"):
        branch = env.get(CLOUD_GIT_BRANCH_VAR) or env.get(CLOUD_DEPLOYMENT_VAR) or name
    return ActiveEnvironment(name, spec, branch, chosen_by)


_ACTIVE: ActiveEnvironment | None = None


def activate(env: ActiveEnvironment | None) -> None:
    """Make `env` the process's environment (`build_definitions` does this); None forgets it.

    Its `encryption` then applies to every object this process writes to S3 (fsspec's configuration
    for `s3`, which s3fs reads when it makes a file system), whatever writes it: the IO manager, the
    model mirror, the audit log, quarantine.
    """
    global _ACTIVE
    _ACTIVE = env
    _apply_encryption(env.spec.encryption if env is not None and env.spec is not None else None)


def _apply_encryption(settings: EncryptionSettings | None) -> None:
    import fsspec.config

    s3 = fsspec.config.conf.setdefault("s3", {})
    wanted = settings.request_arguments() if settings is not None else None
    if s3.get("s3_additional_kwargs") == wanted or (wanted is None and "s3_additional_kwargs" not in s3):
        return
    if wanted is None:
        s3.pop("s3_additional_kwargs", None)
    else:
        s3["s3_additional_kwargs"] = wanted
    s3fs = sys.modules.get("s3fs")  # file systems made before keep their settings: forget them
    if s3fs is not None:
        s3fs.S3FileSystem.clear_instance_cache()


def active() -> ActiveEnvironment:
    """The process's environment: the one `build_definitions` chose, else the one the variables name."""
    if _ACTIVE is not None:
        return _ACTIVE
    return select_environment([])


def apply_environment(spec: PipelineSpec, env: ActiveEnvironment) -> PipelineSpec:
    """`spec` as it runs in `env`: the environment's gates and compute over the spec's own.

    Gate floors merge per metric (the environment's win), `max_regression` is replaced when given;
    compute merges per asset, field by field (the environment's win).
    """
    settings = env.spec
    update: dict[str, object] = {}
    if settings is not None and spec.name in settings.gates:
        override = settings.gates[spec.name]
        update["gates"] = GatesSpec(
            min={**spec.gates.min, **override.min},
            max_regression=(
                spec.gates.max_regression if override.max_regression is None else override.max_regression
            ),
        )
    if settings is not None and settings.compute:
        merged = dict(spec.compute)
        for asset, compute in settings.compute.items():
            merged[asset] = compute.over(merged.get(asset))
        update["compute"] = merged
    return spec.in_environment(env, update)


def environment_name(spec: PipelineSpec) -> str:
    """The name recorded on a version or decision: the spec's environment, else `default`."""
    return (spec.environment.name if spec.environment is not None else None) or "default"


def sensor_status(spec: PipelineSpec, default: dg.DefaultSensorStatus) -> dg.DefaultSensorStatus:
    """A sensor's default status: the environment's `sensors:` setting when it has one, else `default`."""
    setting = spec.environment.sensors if spec.environment is not None else None
    if setting is None:
        return default
    return dg.DefaultSensorStatus.RUNNING if setting == "running" else dg.DefaultSensorStatus.STOPPED
