"""What one environment's deployment needs, read from the specs: the plan every target renders.

`build_plan` loads the spec files, picks the environment by name (it must be declared), and derives
everything the targets have in common: the image, the plain environment variables, the names of the
variables that hold secrets (never their values), the S3 bucket and prefix of the storage root, the
compute default for runs, and the warnings a platform engineer should read before applying.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mlops_dagster.errors import MlopsDagsterError, SpecError, SpecIssue
from mlops_dagster.spec.compute import ASSET_NAMES, ComputeSpec, compute_for, cpu_cores, memory_bytes

if TYPE_CHECKING:
    from mlops_dagster.spec.environments import EnvironmentSpec
    from mlops_dagster.spec.models import PipelineSpec

TARGETS = ("k8s", "ecs", "dagster-plus")
AGENTS = ("k8s", "ecs")
APP_DIR = "/opt/dagster/app"  # the image's working folder (deploy/Dockerfile)
CODE_PORT = 4000  # the image's gRPC code server port
DEFINITIONS_FILE = "definitions.py"
TELEMETRY_OFF = {"BENTOML_DO_NOT_TRACK": "true", "GX_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}
AWS_KEY_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
PG_PASSWORD_VAR = "DAGSTER_PG_PASSWORD"

# Fargate's valid task sizes: cpu units -> the memory values (MiB) allowed with it.
FARGATE_SIZES: dict[int, tuple[int, ...]] = {
    256: (512, 1024, 2048),
    512: tuple(range(1024, 4097, 1024)),
    1024: tuple(range(2048, 8193, 1024)),
    2048: tuple(range(4096, 16385, 1024)),
    4096: tuple(range(8192, 30721, 1024)),
    8192: tuple(range(16384, 61441, 4096)),
    16384: tuple(range(32768, 122881, 8192)),
}

_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")
_REPOSITORY = re.compile(
    r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9.-]*[a-zA-Z0-9])?(?::[0-9]+)?/)?"  # registry host[:port]/
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$"
)
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


class DeployError(MlopsDagsterError):
    """A deployment cannot be rendered or checked as asked; the message names the input and the fix."""


@dataclass(frozen=True)
class ImageRef:
    """A container image reference split as the Helm chart and Dagster+ want it.

    Attributes:
        repository: Registry and path, e.g. `registry.example.com/team/mlops`.
        tag: The tag, with `@sha256:...` appended when the reference pins a digest too.
    """

    repository: str
    tag: str

    @property
    def ref(self) -> str:
        """The full reference, `repository:tag[@digest]`."""
        return f"{self.repository}:{self.tag}"

    @property
    def mutable(self) -> bool:
        """True for `latest` without a digest: runs may get other code than the code server."""
        return self.tag == "latest"


def parse_image(text: str) -> ImageRef:
    """Split `[registry/]path:tag[@sha256:digest]`.

    Raises:
        DeployError: not an image reference, or no tag (a deployment needs a fixed version; a bare
            digest cannot be written as the chart's `repository:tag`).
    """
    ref = text.strip()
    digest = ""
    if "@" in ref:
        ref, digest = ref.split("@", 1)
        if not _DIGEST.match(digest):
            raise DeployError(f"--image {text!r}: the digest must look like sha256:<64 hex digits>")
    slash, colon = ref.rfind("/"), ref.rfind(":")
    if colon <= slash:
        raise DeployError(
            f"--image {text!r} has no tag: give the version to deploy, e.g. {ref}:1.4.0 "
            "(a deployment needs a fixed tag so every run uses the code the code server serves)"
        )
    repository, tag = ref[:colon], ref[colon + 1 :]
    if not _REPOSITORY.match(repository):
        raise DeployError(f"--image {text!r}: {repository!r} is not a valid image repository")
    if not _TAG.match(tag):
        raise DeployError(f"--image {text!r}: {tag!r} is not a valid tag (letters, digits, '_', '.', '-')")
    return ImageRef(repository, f"{tag}@{digest}" if digest else tag)


def split_s3(root: str) -> tuple[str, str] | None:
    """`s3://bucket/some/prefix` -> (`bucket`, `some/prefix`); None for a local root."""
    if not root.lower().startswith("s3://"):
        return None
    bucket, _, prefix = root[5:].partition("/")
    return bucket, prefix.strip("/")


def ecs_units(compute: ComputeSpec) -> tuple[int | None, int | None]:
    """ECS cpu units (1024 per core) and memory MiB, as `compute:` becomes the `ecs/*` tags."""
    cpu = math.ceil(cpu_cores(compute.cpu) * 1024) if compute.cpu else None
    memory = math.ceil(memory_bytes(compute.memory) / 2**20) if compute.memory else None
    return cpu, memory


def fargate_problem(cpu: int, memory: int) -> str | None:
    """Why `cpu` units with `memory` MiB is not a Fargate task size; None when it is one."""
    if cpu not in FARGATE_SIZES:
        return f"cpu {cpu} is not a Fargate size (one of {', '.join(map(str, FARGATE_SIZES))})"
    allowed = FARGATE_SIZES[cpu]
    if memory not in allowed:
        return f"memory {memory} MiB does not go with cpu {cpu} on Fargate ({allowed[0]}-{allowed[-1]} MiB)"
    return None


@dataclass(frozen=True)
class Settings:
    """The command line's choices for one render.

    Attributes:
        target: `k8s`, `ecs` or `dagster-plus`.
        env: The environment's name (declared in an `environments:` file).
        image: The user-code image.
        location: The code location's name (also the Helm user deployment's name).
        agent: For `dagster-plus`: the agent kind, `k8s` or `ecs`.
        namespace: For `k8s`: the namespace to install into (default `mlops-<env>`).
        postgres_host, postgres_port, postgres_db, postgres_user: For `k8s`: the external PostgreSQL.
        secret_prefix: For ECS: prepended to a variable's name to form its secret's `valueFrom` (an SSM
            parameter name in the task's region, or a Secrets Manager ARN prefix); default
            `/mlops-dagster/<env>/`.
    """

    target: str
    env: str
    image: ImageRef
    location: str = "mlops"
    agent: str = "k8s"
    namespace: str | None = None
    postgres_host: str = "postgresql"
    postgres_port: int = 5432
    postgres_db: str = "dagster"
    postgres_user: str = "dagster"
    secret_prefix: str | None = None

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise DeployError(f"unknown target {self.target!r}; expected one of {', '.join(TARGETS)}")
        if self.agent not in AGENTS:
            raise DeployError(f"unknown agent {self.agent!r}; expected one of {', '.join(AGENTS)}")
        if not _NAME.match(self.location):
            raise DeployError(
                f"--location {self.location!r}: use lowercase letters, digits and '-' (at most 40), "
                "as it names Kubernetes objects"
            )
        if self.namespace is not None and not _NAME.match(self.namespace):
            raise DeployError(f"--namespace {self.namespace!r} is not a valid Kubernetes namespace name")

    @property
    def k8s_namespace(self) -> str:
        """The Kubernetes namespace: `--namespace`, else `mlops-<env>`."""
        return self.namespace or f"mlops-{self.env}"

    @property
    def secret_name(self) -> str:
        """The Kubernetes Secret holding the environment's secret variables, one key per variable."""
        return f"mlops-{self.env}-secrets"

    @property
    def pg_secret_name(self) -> str:
        """The Kubernetes Secret holding the PostgreSQL password (key `postgresql-password`)."""
        return f"mlops-{self.env}-postgresql"

    def secret_ref(self, var: str) -> str:
        """An ECS secret's `valueFrom` for variable `var`."""
        return f"{self.secret_prefix or f'/mlops-dagster/{self.env}/'}{var}"

    @property
    def on_ecs(self) -> bool:
        """True when runs are ECS tasks (Fargate sizes matter)."""
        return self.target == "ecs" or (self.target == "dagster-plus" and self.agent == "ecs")


@dataclass(frozen=True)
class Plan:
    """What every target renders for one environment.

    Attributes:
        settings: The command line's choices.
        storage_root: The environment's storage root (`s3://...` or a local folder).
        s3: (bucket, prefix) of the storage root when it is on S3.
        plain_env: Variables with their values (nothing secret): MLOPS_ENV and telemetry off.
        secret_vars: Variables the code needs from a secret store (the notifier's), named only.
        aws_vars: AWS key variables a Kubernetes pod may take from the secret (optional there: a
            service-account role is the alternative).
        compute: The compute default for runs: the environment's `default`, else the largest
            pipeline `default`; None when nothing is asked for.
        step_computes: (label, settings) for every asset's merged compute, for the Fargate check.
        warnings: What to read before applying.
    """

    settings: Settings
    storage_root: str
    s3: tuple[str, str] | None
    plain_env: dict[str, str]
    secret_vars: tuple[str, ...]
    aws_vars: tuple[str, ...]
    compute: ComputeSpec | None
    step_computes: tuple[tuple[str, ComputeSpec], ...] = ()
    warnings: list[str] = field(default_factory=list)

    @property
    def logs_prefix(self) -> str:
        """The S3 prefix of compute logs: `<storage prefix>/compute-logs`."""
        prefix = self.s3[1] if self.s3 else ""
        return f"{prefix}/compute-logs" if prefix else "compute-logs"


def _load_environment(
    spec_paths: Sequence[str | Path], env_name: str
) -> tuple[EnvironmentSpec, str, list[PipelineSpec]]:
    """The declared environment `env_name` (settings and storage root) and the pipelines as they run there."""
    from mlops_dagster.environments import apply_environment, select_environment
    from mlops_dagster.spec import read_spec_files
    from mlops_dagster.spec.checks import resolve_specs

    files = read_spec_files(*spec_paths)
    pipelines = resolve_specs(files.pipelines, files.groups, pending=files.pending())
    declared = sorted(e.name for e in files.environments)
    if not declared:
        where = ", ".join(str(p) for p in spec_paths)
        raise DeployError(
            f"no environments are declared in {where}: add a YAML file with a top-level `environments:` "
            f"mapping that declares {env_name!r} (README, Deploy)"
        )
    env = select_environment(files.environments, env_name, environ={})  # SpecError: not declared
    if env.spec is None:  # pragma: no cover - select_environment refuses undeclared names first
        raise SpecError([SpecIssue("<environment>", None, "", f"unknown environment {env_name!r}")])
    return env.spec, env.storage_root, [apply_environment(p, env) for p in pipelines]


def build_plan(spec_paths: Sequence[str | Path], settings: Settings) -> Plan:
    """Read the specs and derive what `settings.env` needs on any target.

    Raises:
        SpecError: the specs are invalid, or the environment is not declared (the message lists the
            declared ones).
        DeployError: no environment is declared at all.
    """
    from mlops_dagster.factory.compute_tags import largest

    spec, root, pipelines = _load_environment(spec_paths, settings.env)
    s3 = split_s3(root)
    warnings: list[str] = []
    if s3 is None:
        where = f"storage {spec.storage}" if spec.storage else "no `storage:`, so the default local root"
        warnings.append(
            f"environment {settings.env!r} keeps its data on local disk ({where}): pods and tasks keep "
            "nothing on disk, so data, models and compute logs would be lost; set `storage: "
            "s3://bucket/prefix` for it (compute logs are not kept until then)"
        )
    notifier = spec.notifier
    secret_vars = tuple(v for v in (notifier.url_env, notifier.token_env) if v) if notifier else ()
    if settings.image.mutable:
        warnings.append(
            f"image tag 'latest' is mutable: runs may start with other code than the code server "
            f"serves; deploy an immutable tag (a version or a digest) instead of {settings.image.ref}"
        )
    if spec.signing != "off":
        warnings.append(
            f"environment {settings.env!r} has signing: {spec.signing}: mount the signing key into the "
            "container and set MLOPS_SIGNING_KEY / MLOPS_VERIFY_KEYS (key files are not rendered)"
        )
    step_computes: list[tuple[str, ComputeSpec]] = []
    for p in pipelines:
        for asset in ASSET_NAMES:
            c = compute_for(p.compute, asset)
            if c is not None and not c.empty:
                step_computes.append((f"{p.name}/{asset}", c))
    default = spec.compute.get("default")
    if default is None:
        default = largest(compute_for(p.compute, "default") for p in pipelines)
    plan = Plan(
        settings=settings,
        storage_root=root,
        s3=s3,
        plain_env={"MLOPS_ENV": settings.env, **TELEMETRY_OFF},
        secret_vars=secret_vars,
        aws_vars=AWS_KEY_VARS if s3 else (),
        compute=default,
        step_computes=tuple(step_computes),
        warnings=warnings,
    )
    if settings.on_ecs:
        plan.warnings.extend(fargate_warnings(plan))
    return plan


def fargate_warnings(plan: Plan) -> list[str]:
    """One warning per run or step size that is not a valid Fargate task size."""
    out: list[str] = []
    sized = ([("runs (compute default)", plan.compute)] if plan.compute else []) + list(plan.step_computes)
    for label, compute in sized:
        cpu, memory = ecs_units(compute)
        if cpu is None or memory is None:
            continue
        problem = fargate_problem(cpu, memory)
        if problem:
            size = f"cpu {compute.cpu} / memory {compute.memory}"
            out.append(f"{label}: {size} is not a Fargate task size: {problem}")
    return out
