"""Docker for the deployment tests: one daemon, one local base image, one user-code image.

The whole API (shared by the image, Kubernetes and ECS tests):

- `docker_available()`: None when containers can run, else the reason to skip.
- `ensure_dockerd()`: reuse the daemon on the default socket, or start this machine's one allowed
  kind of daemon (no bridge, no NAT, no iptables) when we are root; raises `DockerUnavailable`.
- `base_image()`: a Debian bookworm image with python3 and python3-venv, debootstrapped from the
  Debian mirror apt already uses and `docker import`ed (no registry is reachable here).
- `user_code_image()`: `deploy/Dockerfile` built in wheelhouse mode on `base_image()` through
  `make image` (the same command a user runs); once per process, file-locked across processes.
- `docker_run(image, *args, ...)`: `docker run --rm --network host ...`; returns (rc, output).
- `remove_container(name)`, `free_port()`, `file_lock(name)`.

Slow results (daemon data, the rootfs tarball, the wheelhouse) live under `CACHE`
(`~/.cache/mlops-dagster`, or `$MLOPS_DAGSTER_CACHE`) and survive between runs; the images live in
that daemon's data root, so a second run rebuilds nothing. Concurrent pytest workers serialise on
file locks there. CLI for `.ci/run`: `python -m tests.deploy.docker_support ensure|base|image`.
"""

from __future__ import annotations

import fcntl
import functools
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("MLOPS_DAGSTER_CACHE") or Path.home() / ".cache" / "mlops-dagster")
SUITE = "bookworm"  # Debian 12: python3 is 3.11, as the lock file expects
BASE_TAG = f"mlops-dagster-base:{SUITE}"
IMAGE_TAG = "mlops-dagster-user-code:test"
FALLBACK_MIRROR = "http://deb.debian.org/debian"

__all__ = [
    "BASE_TAG",
    "CACHE",
    "IMAGE_TAG",
    "DockerUnavailable",
    "apt_mirror",
    "base_image",
    "docker_available",
    "docker_run",
    "ensure_dockerd",
    "file_lock",
    "free_port",
    "remove_container",
    "user_code_image",
]


class DockerUnavailable(RuntimeError):
    """Containers cannot run on this machine (a missing tool or no permission); tests skip."""


@contextmanager
def file_lock(name: str) -> Iterator[None]:
    """Hold an exclusive lock on `CACHE/<name>.lock`, shared by every process on the machine.

    `file_lock("image")` is held around every `make image` (it rewrites ./wheelhouse): take it too
    when building the image some other way.
    """
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f"{name}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)


def _daemon_answers() -> bool:
    try:
        return _docker("info", "--format", "{{.ServerVersion}}", timeout=20).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def _our_dockerd_running(pidfile: Path) -> bool:
    """Whether the pidfile names a live dockerd (not a stale pid reused by something else)."""
    try:
        pid = int(pidfile.read_text().strip())
        return Path(f"/proc/{pid}/comm").read_text().strip() == "dockerd"
    except (OSError, ValueError):
        return False


def ensure_dockerd(timeout: float = 120) -> None:
    """Make sure a docker daemon answers on the default socket.

    Reuses a daemon that already answers. Otherwise, as root with `dockerd` installed, starts one
    with `--data-root CACHE/docker --iptables=false --ip-forward=false --bridge=none` (the only way
    a daemon may run on these machines: no bridge, no NAT; containers use `--network host`), its
    pidfile and log under `CACHE`, and waits until `docker info` answers. Safe to call from many
    processes at once.

    Args:
        timeout: Seconds to wait for a daemon that is starting.

    Raises:
        DockerUnavailable: No docker CLI, or no daemon and no way to start one here.
        RuntimeError: The daemon was started but did not answer in time (its log tail is included).
    """
    if shutil.which("docker") is None:
        raise DockerUnavailable("the docker CLI is not installed (apt-get install docker.io)")
    if _daemon_answers():
        return
    with file_lock("dockerd"):
        if _daemon_answers():
            return
        dockerd = shutil.which("dockerd")
        if dockerd is None:
            raise DockerUnavailable("no docker daemon answers and dockerd is not installed")
        if os.geteuid() != 0:
            raise DockerUnavailable("no docker daemon answers, and starting one needs root")
        pidfile, log = CACHE / "dockerd.pid", CACHE / "dockerd.log"
        if not _our_dockerd_running(pidfile):
            pidfile.unlink(missing_ok=True)
            with open(log, "ab") as out:
                subprocess.Popen(
                    [
                        dockerd,
                        "--data-root", str(CACHE / "docker"),
                        "--pidfile", str(pidfile),
                        "--iptables=false",
                        "--ip-forward=false",
                        "--bridge=none",
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # outlives this process: later tests and runs reuse it
                )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _daemon_answers():
                return
            time.sleep(1)
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise RuntimeError(f"dockerd did not answer within {timeout:.0f}s; {log}:\n{tail}")


@functools.cache
def docker_available() -> str | None:
    """None when containers can run here (starting the daemon if needed), else why they cannot.

    Set `MLOPS_DAGSTER_DOCKER=off` to skip the container tests on purpose.
    """
    if os.environ.get("MLOPS_DAGSTER_DOCKER", "").lower() in {"0", "off", "false", "no"}:
        return "MLOPS_DAGSTER_DOCKER is off"
    try:
        ensure_dockerd()
    except DockerUnavailable as exc:
        return f"docker cannot run here: {exc}"
    return None


def _image_exists(tag: str) -> bool:
    return _docker("image", "inspect", "--format", "{{.Id}}", tag, timeout=30).returncode == 0


def _sources_entries(text: str, deb822: bool) -> Iterator[tuple[list[str], list[str]]]:
    """(URIs, suites) of each `deb` source in a sources file."""
    if not deb822:
        for raw in text.splitlines():
            parts = [p for p in raw.split("#", 1)[0].split() if p]
            if len(parts) >= 3 and parts[0] == "deb":
                rest = parts[1:]
                if rest[0].startswith("["):  # options: [arch=amd64 signed-by=...]
                    while rest and not rest[0].endswith("]"):
                        rest = rest[1:]
                    rest = rest[1:]
                if len(rest) >= 2:
                    yield [rest[0]], [rest[1]]
        return
    for paragraph in text.split("\n\n"):
        fields: dict[str, str] = {}
        key = ""
        for raw in paragraph.splitlines():
            if raw.startswith("#") or not raw.strip():
                continue
            if raw[0] in " \t" and key:
                fields[key] += " " + raw.strip()
            elif ":" in raw:
                key, _, value = raw.partition(":")
                key = key.strip().lower()
                fields[key] = value.strip()
        if "deb" in fields.get("types", "").split() and fields.get("enabled", "yes").lower() != "no":
            yield fields.get("uris", "").split(), fields.get("suites", "").split()


def apt_mirror(etc: Path = Path("/etc/apt")) -> str:
    """The Debian archive apt uses on this machine (one-line or deb822 sources), for debootstrap.

    Prefers a source that lists the `bookworm` suite, then any Debian source that is not the
    security archive; falls back to deb.debian.org.
    """
    files = [(etc / "sources.list", False)]
    files += [(p, False) for p in sorted((etc / "sources.list.d").glob("*.list"))]
    files += [(p, True) for p in sorted((etc / "sources.list.d").glob("*.sources"))]
    candidates: list[tuple[int, str]] = []
    for path, deb822 in files:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        for uris, suites in _sources_entries(text, deb822):
            debian_suites = [s for s in suites if s.split("-")[0] in {SUITE, "trixie", "bullseye"}]
            for uri in uris:
                if "security" in uri or not uri.startswith(("http://", "https://")):
                    continue
                if SUITE in suites:
                    candidates.append((0, uri))
                elif debian_suites:
                    candidates.append((1, uri))
    return min(candidates)[1].rstrip("/") if candidates else FALLBACK_MIRROR


def _build_rootfs_tarball(tarball: Path) -> None:
    """debootstrap a minimal bookworm with python3 + venv and pack it as `tarball`."""
    if shutil.which("debootstrap") is None:
        raise DockerUnavailable("debootstrap is not installed (apt-get install debootstrap)")
    if os.geteuid() != 0:
        raise DockerUnavailable("building the local base image with debootstrap needs root")
    rootfs = tarball.parent / "rootfs.tmp"
    shutil.rmtree(rootfs, ignore_errors=True)
    cmd = [
        "debootstrap", "--variant=minbase", "--include=python3,python3-venv",
        SUITE, str(rootfs), apt_mirror(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
    for leftovers in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for entry in (rootfs / leftovers).glob("*"):
            if entry.is_file():
                entry.unlink()
    partial = tarball.with_suffix(".partial")
    subprocess.run(
        ["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(partial), "."], check=True, timeout=600
    )
    os.replace(partial, tarball)
    shutil.rmtree(rootfs, ignore_errors=True)


def base_image() -> str:
    """A local `debian:bookworm`-like image with python3 and python3-venv; returns its tag.

    Built once: the debootstrapped rootfs is kept as `CACHE/base/debian-bookworm-python3.tar` and
    re-imported whenever the image is gone from the daemon.

    Raises:
        DockerUnavailable: docker, debootstrap or root is missing.
    """
    ensure_dockerd()
    if _image_exists(BASE_TAG):
        return BASE_TAG
    with file_lock("base"):
        if _image_exists(BASE_TAG):
            return BASE_TAG
        tarball = CACHE / "base" / f"debian-{SUITE}-python3.tar"
        tarball.parent.mkdir(parents=True, exist_ok=True)
        if not tarball.exists():
            _build_rootfs_tarball(tarball)
        changes = [
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "ENV LANG=C.UTF-8",
            'CMD ["python3"]',
        ]
        args = [arg for change in changes for arg in ("--change", change)]
        proc = _docker("import", *args, str(tarball), BASE_TAG, timeout=900)
        if proc.returncode != 0:
            raise RuntimeError(f"docker import {tarball} failed:\n{proc.stderr[-2000:]}")
    return BASE_TAG


_BUILT: dict[str, str] = {}


def user_code_image(tag: str = IMAGE_TAG) -> str:
    """Build `deploy/Dockerfile` in wheelhouse mode on `base_image()`; returns `tag`.

    Runs `make image IMAGE=<tag> BASE_IMAGE=<base>` (wheelhouse download, offline build with no
    network inside the build) once per process; other processes wait on a file lock, and docker's
    layer cache makes their build a no-op.

    Raises:
        DockerUnavailable: docker, debootstrap or root is missing.
        RuntimeError: The build failed (the end of its output is included).
    """
    if tag in _BUILT:
        return _BUILT[tag]
    base = base_image()
    with file_lock("image"):
        cmd = ["make", "--no-print-directory", "-C", str(ROOT), "image", f"IMAGE={tag}", f"BASE_IMAGE={base}"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{(proc.stdout + proc.stderr)[-4000:]}")
    _BUILT[tag] = tag
    return tag


def docker_run(
    image: str,
    *args: str,
    env: Mapping[str, str] | None = None,
    volumes: Mapping[str | Path, str] | None = None,
    name: str | None = None,
    user: str | None = None,
    workdir: str | None = None,
    entrypoint: str | None = None,
    detach: bool = False,
    timeout: float = 900,
    extra: Sequence[str] = (),
) -> tuple[int, str]:
    """`docker run --rm --network host` (always host networking: no bridge exists here).

    Args:
        image: Image tag or id.
        *args: The command (replaces the image's CMD).
        env: `-e NAME=VALUE` for each item.
        volumes: `-v HOST:CONTAINER[:ro]` for each item (host path -> container spec).
        name: `--name`, so that `remove_container` can stop it.
        user: `--user`.
        workdir: `--workdir`.
        entrypoint: `--entrypoint`.
        detach: `-d`; the output is then the container id.
        timeout: Seconds before the client is killed (the container is then removed).
        extra: Further `docker run` options, placed before the image.

    Returns:
        (exit code, stdout + stderr).
    """
    cmd = ["docker", "run", "--rm", "--network", "host"]
    for key, value in (env or {}).items():
        cmd += ["-e", f"{key}={value}"]
    for host, spec in (volumes or {}).items():
        cmd += ["-v", f"{host}:{spec}"]
    options = {"--name": name, "--user": user, "--workdir": workdir, "--entrypoint": entrypoint}
    cmd += [arg for flag, value in options.items() if value is not None for arg in (flag, value)]
    if detach:
        cmd.append("-d")
    cmd += [*extra, image, *args]
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        if name:
            remove_container(name)
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or ""
        return 124, out + f"\n[docker run timed out after {timeout:.0f}s]"
    return proc.returncode, proc.stdout.strip() if detach else proc.stdout


def remove_container(name: str) -> None:
    """Stop and remove a container if it exists (`docker rm -f`); never raises."""
    try:
        _docker("rm", "-f", name, timeout=60)
    except subprocess.TimeoutExpired:
        pass


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (host networking shares the host's ports)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main(argv: Sequence[str]) -> int:
    """`ensure` (the daemon), `base` (and the base image) or `image` (and the user-code image)."""
    steps: dict[str, Callable[[], object]] = {
        "ensure": ensure_dockerd, "base": base_image, "image": user_code_image
    }
    if len(argv) != 1 or argv[0] not in steps:
        print(f"usage: python -m tests.deploy.docker_support {{{'|'.join(steps)}}}", file=sys.stderr)
        return 2
    try:
        result = steps[argv[0]]()
    except DockerUnavailable as exc:
        print(f"docker unavailable: {exc}", file=sys.stderr)
        return 3
    print(result if isinstance(result, str) else "docker daemon answers")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
