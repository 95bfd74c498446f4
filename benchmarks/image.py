"""The user-code image (deploy/Dockerfile): size, cold and cached build time, code server start-to-healthy.

Run from the repo root, as root on a machine with docker.io and debootstrap (as CI is):

    .venv/bin/python benchmarks/image.py [--starts 5] [--skip-cold]

Setup (not timed): the docker daemon (`tests/deploy/docker_support.ensure_dockerd`), the local
bookworm base image (debootstrapped once and cached) and the wheelhouse (`make wheelhouse`, cached).
Every build is `make image` in wheelhouse mode, offline (`docker build --network none`), on that base:

1. Cold build: `make image DOCKER_BUILD_FLAGS=--no-cache` on a throwaway tag (removed afterwards with
   the images that build left behind): the venv from the wheels, the project's wheel, the runtime stage.
2. Cached build: `make image` twice on the suite's tag, timing the second (nothing changed: docker's
   layer cache answers every step; the build context, wheelhouse included, is still sent).
3. Image size: `docker image inspect` of the built image (uncompressed, all layers with the base's).
4. Start to healthy, `--starts` times: from `docker run -d --network host` (the image's own command,
   port moved with DAGSTER_GRPC_PORT) until the gRPC health service answers SERVING for "DagsterApi"
   (the check `dagster api grpc-health-check` makes, polled in process every 50 ms); then the
   container is removed. Median and range.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.deploy import docker_support as ds  # noqa: E402

COLD_TAG = "mlops-dagster-user-code:bench-cold"


def _make_image(tag: str, base: str, *flags: str) -> float:
    cmd = ["make", "--no-print-directory", "-C", str(ROOT), "image", f"IMAGE={tag}", f"BASE_IMAGE={base}"]
    if flags:
        cmd.append(f"DOCKER_BUILD_FLAGS={' '.join(flags)}")
    with ds.file_lock("image"):  # never beside another `make image` (it rewrites ./wheelhouse)
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
    return elapsed


def _dangling() -> set[str]:
    out = subprocess.run(["docker", "images", "-q", "--filter", "dangling=true"], capture_output=True,
                         text=True, check=True).stdout
    return set(out.split())


def cold_build(base: str) -> float:
    """Time a no-cache build on a throwaway tag, then remove what it made."""
    before = _dangling()
    try:
        return _make_image(COLD_TAG, base, "--no-cache")
    finally:
        subprocess.run(["docker", "rmi", "-f", COLD_TAG], capture_output=True, check=False)
        left = sorted(_dangling() - before)  # this build's build-stage image
        if left:
            subprocess.run(["docker", "rmi", *left], capture_output=True, check=False)


def image_size_mb(tag: str) -> float:
    out = subprocess.run(["docker", "image", "inspect", "--format", "{{.Size}}", tag],
                         capture_output=True, text=True, check=True).stdout
    return int(out.strip()) / 1e6


def _serving(port: int) -> bool:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="DagsterApi"), timeout=1
            )
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def start_to_healthy(tag: str, timeout: float = 300) -> float:
    """Seconds from `docker run -d` to a SERVING health answer on the host."""
    name, port = f"mlops-bench-{uuid.uuid4().hex[:8]}", ds.free_port()
    start = time.perf_counter()
    try:
        rc, out = ds.docker_run(tag, name=name, env={"DAGSTER_GRPC_PORT": str(port)}, detach=True)
        if rc != 0:
            raise SystemExit(f"docker run failed: {out}")
        while time.perf_counter() - start < timeout:
            if _serving(port):
                return time.perf_counter() - start
            time.sleep(0.05)
        raise SystemExit(f"the code server was not healthy within {timeout:.0f}s")
    finally:
        ds.remove_container(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=5, help="code server starts to time")
    parser.add_argument("--skip-cold", action="store_true", help="skip the no-cache build")
    args = parser.parse_args()

    reason = ds.docker_available()
    if reason:
        raise SystemExit(reason)
    base = ds.base_image()
    rows: list[tuple[str, str]] = []
    if not args.skip_cold:
        rows.append(("cold build (`--no-cache`, from the wheelhouse, offline)", f"{cold_build(base):.1f} s"))
    _make_image(ds.IMAGE_TAG, base)  # warm the cache with the current sources
    rows.append(("cached build (nothing changed)", f"{_make_image(ds.IMAGE_TAG, base):.1f} s"))
    rows.append(("image size (uncompressed)", f"{image_size_mb(ds.IMAGE_TAG):,.0f} MB"))
    rows.append(("base image size (debootstrap bookworm + python3)", f"{image_size_mb(base):,.0f} MB"))
    starts = [start_to_healthy(ds.IMAGE_TAG) for _ in range(args.starts)]
    rows.append(
        (f"code server start to healthy (median of {len(starts)})",
         f"{statistics.median(starts):.2f} s ({min(starts):.2f}-{max(starts):.2f})")
    )
    print("| measure | value |\n| --- | --- |")
    for label, value in rows:
        print(f"| {label} | {value} |")


if __name__ == "__main__":
    main()
