"""A fork server for the kill -9 tests: loads the libraries once, then runs each request in a forked child.

Started by `tests/faults/test_kill9.py` with the test's DAGSTER_HOME (a PostgreSQL-backed instance),
BENTOML_HOME and data folders in its environment. It reads one JSON request per line on stdin and
answers on stdout, one JSON object per line:

- `{"pid": N}` once the child runs the request;
- `{"stopped": N}` when the child reached the request's kill point: it stopped itself (SIGSTOP), and
  the test now kills it with SIGKILL;
- `{"exit": CODE}` when the child is gone (`-9` after the kill).

A request is `{"what": "cli" | "materialize", "log": PATH, "kill": POINT or null, ...}`: `cli` runs
`mlops-dagster ARGS` (`args`); `materialize` materializes `keys` of the specs in `specs` in process
(one `partition` or none), after `ensure_champion_pool` for the pipeline `pool` if given, as the
drift sensor calls it before it requests a retrain. The child writes its output to `log`.
`{"what": "together", "requests": [...]}` forks a child for each request at once (no kill points)
and answers `{"pids": [...]}`, then `{"exits": [...]}` when all are gone.

Kill points (`POINT`), where the child stops itself so that the kill lands exactly there:
- `{"event": TYPE, "step": STEP_KEY or null, "when": "before" | "after"}`: the first Dagster event
  of that type (of that step) reaching the instance, before it is stored or after;
- `{"call": "module:function", "when": "enter" | "exit"}`: a call of that function;
- `{"tear_audit": true}`: the first audit log append, after writing all but its last 20 bytes (a
  write cut off by the kill).
Forking from a loaded process makes each run start in a fraction of a second instead of several.
`Runner` is the tests' side of the protocol.
"""

from __future__ import annotations

import importlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
ROOT = Path(__file__).resolve().parents[2]
STUCK = 900  # seconds without an answer after which a run is taken for stuck


@dataclass
class Outcome:
    """How a child ended: stopped at its kill point (then killed), and its exit code (-9 when killed)."""

    pid: int
    stopped: bool
    exit: int
    log: str = field(repr=False)


class Runner:
    """The tests' side: starts the fork server in `folder` (logs there) and sends it requests."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.count = folder, 0
        self.children: set[int] = set()  # forked and not yet reported gone
        self.err = (folder / "runner.err").open("w")
        # One thread per run: OpenMP (training) and onnxruntime (parity) threads spinning on a busy machine
        # cost far more than they give on this small data.
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, __file__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.err,
            text=True,
            env=env,
            cwd=ROOT,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        assert "ready" in self._read()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in iter(self.proc.stdout.readline, ""):
            self.lines.put(line)
        self.lines.put("")  # the runner is gone

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        for pid in self.children:  # a test that failed mid-run leaves no process behind
            os.kill(pid, signal.SIGKILL)
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=120)
        self.err.close()

    def _read(self) -> dict[str, Any]:
        # A guard against a hang, not a measure: a run waiting forever (for a pool slot that a dead run
        # holds) fails the test instead of stalling the suite.
        try:
            line = self.lines.get(timeout=STUCK)
        except queue.Empty:
            raise AssertionError(
                f"no answer from the runner in {STUCK} s: a run is stuck ({self.folder})"
            ) from None
        assert line, f"the runner died: {(self.folder / 'runner.err').read_text()[-3000:]}"
        return dict(json.loads(line))

    def _send(self, request: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()

    def _log(self) -> Path:
        self.count += 1
        return self.folder / f"run-{self.count:03d}.log"

    def run(self, request: dict[str, Any], kill: dict[str, Any] | None = None) -> Outcome:
        """Run `request` in a child; with `kill`, SIGKILL it where it stops at the kill point."""
        log = self._log()
        self._send({**request, "log": str(log), "kill": kill})
        pid = self._read()["pid"]
        self.children.add(pid)
        reply, stopped = self._read(), False
        if "stopped" in reply:
            stopped = True
            os.kill(pid, signal.SIGKILL)
            reply = self._read()
        self.children.discard(pid)
        return Outcome(pid, stopped, reply["exit"], log.read_text())

    def ok(self, request: dict[str, Any]) -> None:
        """Run `request` to its end; it must succeed."""
        outcome = self.run(request)
        assert outcome.exit == 0, f"{request} failed:\n{outcome.log[-5000:]}"

    def together(self, requests: list[dict[str, Any]]) -> list[Outcome]:
        """Run every request at once, each in its own child; their outcomes, in order."""
        logs = [self._log() for _ in requests]
        sent = [{**r, "log": str(log)} for r, log in zip(requests, logs, strict=True)]
        self._send({"what": "together", "requests": sent})
        pids = self._read()["pids"]
        self.children.update(pids)
        exits = self._read()["exits"]
        self.children.difference_update(pids)
        ended = zip(pids, exits, logs, strict=True)
        return [Outcome(pid, False, code, log.read_text()) for pid, code, log in ended]


# -- the fork server ---------------------------------------------------------------------------------


def _stop() -> None:
    """Stop here until the test sends SIGKILL (a SIGCONT would resume the run, and none is sent)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGSTOP)


def _arm(point: dict[str, Any]) -> None:
    """Install the kill point in this (child) process."""
    if "event" in point:
        import dagster as dg

        original = dg.DagsterInstance.handle_new_event

        def handle_new_event(self: Any, event: Any, **kwargs: Any) -> None:
            hit = (
                event.dagster_event is not None
                and event.dagster_event.event_type.name == point["event"]
                and point.get("step") in (None, event.step_key)
            )
            if hit and point["when"] == "before":
                _stop()
            original(self, event, **kwargs)
            if hit and point["when"] == "after":
                _stop()

        dg.DagsterInstance.handle_new_event = handle_new_event  # type: ignore[method-assign]
    elif "call" in point:
        module_name, name = point["call"].split(":")
        module = importlib.import_module(module_name)
        function = getattr(module, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if point["when"] == "enter":
                _stop()
            result = function(*args, **kwargs)
            _stop()
            return result

        setattr(module, name, wrapper)
    elif point.get("tear_audit"):
        from mlops_dagster.audit import log

        class TearingOs:
            """`os` for the audit log module, whose first `write` is cut off by a kill."""

            def __getattr__(self, attr: str) -> Any:
                return getattr(os, attr)

            def write(self, fd: int, data: Any) -> int:
                os.write(fd, bytes(data)[:-20])
                os.fsync(fd)
                _stop()
                raise AssertionError("a stopped process is killed, never resumed")

        log.os = TearingOs()  # type: ignore[assignment]
    else:
        raise ValueError(f"unknown kill point {point}")


def _execute(request: dict[str, Any]) -> int:
    import dagster as dg

    if request["what"] == "cli":
        from mlops_dagster.cli import main

        return main(request["args"])
    from mlops_dagster import build_definitions

    defs = build_definitions(Path(request["specs"]))
    with dg.DagsterInstance.get() as instance:
        if request.get("pool"):
            from mlops_dagster.registry.pool import ensure_champion_pool

            print(ensure_champion_pool(instance, request["pool"]))
        result = dg.materialize(
            [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition | dg.AssetSpec)],
            selection=[dg.AssetKey(k.split("/")) for k in request["keys"]],
            instance=instance,
            resources=dict(defs.resources or {}),
            run_config=QUIET,
            partition_key=request.get("partition"),
            raise_on_error=False,
        )
    print(f"run {result.run_id} {'succeeded' if result.success else 'FAILED'}")
    return 0 if result.success else 1


def _child(request: dict[str, Any]) -> int:
    out = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(out, 1)
    os.dup2(out, 2)
    try:
        warnings.simplefilter("ignore")
        if request.get("kill"):
            _arm(request["kill"])
        return _execute(request)
    except BaseException:
        traceback.print_exc()
        return 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def _fork(request: dict[str, Any]) -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(_child(request))
    return pid


def _reply(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def main() -> None:
    # What the runs import, loaded once here so that every forked child starts with it.
    import bentoml  # noqa: F401
    import dagster
    import great_expectations  # noqa: F401
    import skl2onnx  # noqa: F401
    import sklearn.ensemble  # noqa: F401

    import mlops_dagster.cli  # noqa: F401
    from mlops_dagster import build_definitions  # noqa: F401

    with dagster.DagsterInstance.get() as instance:  # loads the storage's modules (PostgreSQL, SQLAlchemy)
        instance.get_runs(limit=1)
    _reply({"ready": os.getpid()})
    while line := sys.stdin.readline():
        request = json.loads(line)
        if request["what"] == "together":
            pids = [_fork(r) for r in request["requests"]]
            _reply({"pids": pids})
            _reply({"exits": [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids]})
            continue
        pid = _fork(request)
        _reply({"pid": pid})
        while True:
            _, status = os.waitpid(pid, os.WUNTRACED)
            if os.WIFSTOPPED(status):
                _reply({"stopped": pid})
                continue
            _reply({"exit": os.waitstatus_to_exitcode(status)})
            break


if __name__ == "__main__":
    main()
