"""Run a recorded Kubernetes Job's container with docker, the way a kubelet would run its pod.

Only what the Job says is used: the container's image, `command` / `args`, `env`, `workingDir`,
`securityContext.runAsUser`, its resources (as the kubelet maps them onto cgroups: `limits.memory` ->
`--memory`, `limits.cpu` -> `--cpus`, `requests.cpu` -> `--cpu-shares`) and its volume mounts. A volume
is served from where this "cluster" keeps it on the host (`Cluster`): a ConfigMap or Secret as a folder
with one file per key, a PersistentVolumeClaim as a folder. Anything the replay cannot honour (an env
var from a Secret reference, a volume kind it does not know, a second container) is an error, so a
Job that would need more than the replay gives cannot pass by accident.
Containers always run with `--network host` (no bridge exists on these machines): the pod reaches
PostgreSQL and the recording API on 127.0.0.1, as a pod reaches cluster services.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from tests.deploy.deploy_common import DAGSTER, wait_for_code_server
from tests.deploy.docker_support import docker_run, remove_container
from tests.deploy.k8s_api import KubernetesApi
from tests.deploy.k8s_deployment import NAMESPACE, ROOT, Deployment

_UNITS: dict[str, Decimal] = {"m": Decimal("0.001"), "": Decimal(1)}
_UNITS.update({u: Decimal(10) ** (3 * (i + 1)) for i, u in enumerate("kMGTPE")})
_UNITS.update({f"{u}i": Decimal(2) ** (10 * (i + 1)) for i, u in enumerate("KMGTPE")})
_QUANTITY = re.compile(r"^(?P<number>[0-9.]+)(?P<unit>[a-zA-Z]*)$")


class ReplayError(ValueError):
    """The Job asks for something the replay cannot give (named in the message)."""


def quantity(value: str | int) -> Decimal:
    """A Kubernetes quantity (`500m`, `2`, `4Gi`) as a number (cores or bytes)."""
    match = _QUANTITY.match(str(value))
    if not match or match.group("unit") not in _UNITS:
        raise ReplayError(f"not a Kubernetes quantity: {value!r}")
    return Decimal(match.group("number")) * _UNITS[match.group("unit")]


@dataclass(frozen=True)
class Cluster:
    """Where this host keeps the cluster's volumes.

    Attributes:
        config_maps: `<folder>/<ConfigMap name>/<key>`.
        secrets: `<folder>/<Secret name>/<key>`.
        claims: PersistentVolumeClaim name -> host folder.
    """

    config_maps: Path
    secrets: Path
    claims: Mapping[str, Path]

    def source(self, volume: dict[str, Any]) -> tuple[Path, bool]:
        """(host folder, always read-only) behind one of a pod's volumes."""
        if "configMap" in volume:
            return self.config_maps / volume["configMap"]["name"], True
        if "secret" in volume:
            return self.secrets / volume["secret"]["secretName"], True
        if "persistentVolumeClaim" in volume:
            claim = volume["persistentVolumeClaim"]
            if claim["claimName"] not in self.claims:
                raise ReplayError(
                    f"volume {volume['name']!r}: no PersistentVolumeClaim {claim['claimName']!r}"
                )
            return self.claims[claim["claimName"]], bool(claim.get("readOnly"))
        raise ReplayError(f"volume {volume['name']!r}: kind {sorted(set(volume) - {'name'})} is not replayed")


@dataclass(frozen=True)
class Replay:
    """The `docker run` of one Job's container."""

    image: str
    args: list[str]
    env: dict[str, str]
    options: list[str]

    @property
    def memory_limit(self) -> int | None:
        return next((int(self.options[i + 1]) for i, o in enumerate(self.options) if o == "--memory"), None)


def replay_of(job: dict[str, Any], cluster: Cluster) -> Replay:
    """Translate a recorded Job (camelCase JSON, as posted) into a docker run.

    Raises:
        ReplayError: The Job needs something the replay does not do.
    """
    pod = job["spec"]["template"]["spec"]
    if len(pod["containers"]) != 1 or pod.get("initContainers"):
        raise ReplayError("the replay runs pods with exactly one container and no init containers")
    (container,) = pod["containers"]
    env: dict[str, str] = {}
    for item in container.get("env") or []:
        if "value" not in item:
            raise ReplayError(
                f"env {item['name']!r} comes from {item.get('valueFrom')}; the replay has no secrets"
            )
        env[item["name"]] = item["value"]
    if container.get("envFrom"):
        raise ReplayError(f"envFrom {container['envFrom']} is not replayed")

    options: list[str] = []
    volumes = {v["name"]: v for v in pod.get("volumes") or []}
    for mount in container.get("volumeMounts") or []:
        folder, read_only = cluster.source(volumes[mount["name"]])
        host = folder / mount["subPath"] if mount.get("subPath") else folder
        if not host.exists():
            raise ReplayError(f"volume mount {mount['mountPath']}: {host} does not exist on the host")
        read_only = read_only or bool(mount.get("readOnly"))
        options += ["-v", f"{host}:{mount['mountPath']}{':ro' if read_only else ''}"]

    resources = container.get("resources") or {}
    limits, requests = resources.get("limits") or {}, resources.get("requests") or {}
    if "memory" in limits:
        options += ["--memory", str(int(quantity(limits["memory"])))]
    if "cpu" in limits:
        options += ["--cpus", str(quantity(limits["cpu"]))]
    if "cpu" in requests:
        options += ["--cpu-shares", str(max(2, int(quantity(requests["cpu"]) * 1024)))]
    if set(limits) - {"memory", "cpu"}:
        raise ReplayError(
            f"limits {sorted(set(limits) - {'memory', 'cpu'})} cannot be given to a container here"
        )

    command = list(container.get("command") or [])
    if command:
        options += ["--entrypoint", command[0]]
    user = (container.get("securityContext") or {}).get("runAsUser")
    if user is not None:
        options += ["--user", str(user)]
    if container.get("workingDir"):
        options += ["--workdir", container["workingDir"]]
    return Replay(container["image"], [*command[1:], *(container.get("args") or [])], env, options)


def run_replay(replay: Replay, name: str, timeout: float = 1800) -> tuple[int, str]:
    """`docker run --rm --network host` of `replay` as container `name`; returns (exit code, output)."""
    return docker_run(
        replay.image, *replay.args, env=replay.env, name=name, timeout=timeout, extra=replay.options
    )


def run_in_docker(
    api: KubernetesApi, job: dict[str, Any], deployment: Deployment, name: str
) -> tuple[int, str]:
    """Run the Job's pod as docker container `name`, then report how it ended to the API (as the Job
    controller would), which is what dagster-k8s's health checks read. Returns (exit code, output)."""
    deployment.open_claims()
    cluster = Cluster(deployment.config_maps, deployment.secrets, deployment.claims)
    rc, out = run_replay(replay_of(job, cluster), name=name)
    api.finish_job(NAMESPACE, job["metadata"]["name"], exit_code=rc, logs=out[-20000:])
    return rc, out


def run_on_host(
    api: KubernetesApi, job: dict[str, Any], deployment: Deployment, name: str
) -> tuple[int, str]:
    """Run the Job's container as a process on this host instead (no docker): its args and env, with
    the working tree's virtual environment. Valid only for Jobs whose code origin is the working tree
    and whose volumes sit at the host's own paths. Reports the end to the API; returns (code, output)."""
    (container,) = job["spec"]["template"]["spec"]["containers"]
    args = list(container.get("command") or []) + list(container.get("args") or [])
    if args[0] == "dagster":
        args[0] = str(DAGSTER)
    env = {**os.environ, **{e["name"]: e["value"] for e in container.get("env") or []}}
    try:
        proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
        rc, out = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as e:
        partial = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else e.stdout or ""
        rc, out = 124, f"{name}: timed out\n{partial}"
    api.finish_job(NAMESPACE, job["metadata"]["name"], exit_code=rc, logs=out[-20000:])
    return rc, out


@contextmanager
def container_code_server(
    image: str, port: int, name: str, env: Mapping[str, str], options: Sequence[str] = (), *command: str
) -> Iterator[None]:
    """The image's gRPC code server (its own CMD unless `command` is given) on 127.0.0.1:`port`, as a
    Helm user deployment runs it: `DAGSTER_CURRENT_IMAGE` makes the origins it reports carry `image`.
    Its output is kept in `<tmp>/<name>.log` and shown when it fails to start."""
    server_env = {
        "DAGSTER_GRPC_HOST": "127.0.0.1",
        "DAGSTER_GRPC_PORT": str(port),
        "DAGSTER_CURRENT_IMAGE": image,
    }
    rc, out = docker_run(image, *command, env={**server_env, **env}, name=name, detach=True, extra=options)
    if rc != 0:
        raise RuntimeError(f"docker run of the code server failed ({rc}):\n{out}")
    log = Path(tempfile.gettempdir()) / f"{name}.log"
    with open(log, "wb") as sink:
        follower = subprocess.Popen(["docker", "logs", "-f", name], stdout=sink, stderr=subprocess.STDOUT)
    try:
        wait_for_code_server(port, alive=lambda: None if _running(name) else log.read_text(errors="replace"))
        yield
    finally:
        remove_container(name)
        follower.wait(timeout=60)
        log.unlink(missing_ok=True)


def _running(name: str) -> bool:
    ps = subprocess.run(
        ["docker", "ps", "-q", "-f", f"name=^{name}$"], capture_output=True, text=True, timeout=60
    )
    return bool(ps.stdout.strip())
