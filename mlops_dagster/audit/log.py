"""The audit log's format and its appends: one canonical JSON record per line, chained by sha256.

A record is written as its canonical JSON (sorted keys, compact separators, ASCII only) and a newline.
Its `sha256` is the sha256 of the canonical JSON of the record without `sha256`; its `prev_sha256` is
the `sha256` of the record before it (`GENESIS`, 64 zeros, for the first) and `seq` counts from 1.

Appends are serialized across processes:

- Local files: an exclusive `fcntl.flock` on the sibling `.<p>.jsonl.lock`; the records are appended
  with one `write` on an `O_APPEND` descriptor and fsynced.
- Object stores (`s3://`, through s3fs): the whole object is read, extended and written back in one PUT
  (`storage.write_bytes`), under a `flock` on a file in `$DAGSTER_HOME/.mlops_audit_locks` (else the
  temp folder). That lock serializes the processes of one machine only: appends from several machines
  rely on the champion decision already being serialized by the `mlops_champion_<p>` concurrency pool
  (one decision of a pipeline at a time, wherever it runs).

A torn last line (a process killed mid-write: no trailing newline, or a last line that is not a JSON
record) is cut off by the next append, which first appends a `repair` record carrying
`dropped_bytes` and `dropped_sha256` of what it removed: the repair stays visible in the chain. An
unterminated last line that is a whole, correctly chained record is kept and given its newline (no
decision is lost for want of one byte). Locally a repair rewrites the file through a temporary file
and a rename, so a crash during it leaves the old bytes or the new.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from upath import UPath

from mlops_dagster.errors import MlopsDagsterError

AUDIT_FOLDER = "audit"
GENESIS = "0" * 64
ACTIONS = (
    "promote", "keep", "rollback", "manual_promote", "quarantine", "release", "export", "import", "repair",
    "void",
)  # fmt: skip
CORE_FIELDS = (
    "seq", "time", "pipeline", "action", "version", "previous", "reasons", "trigger", "run_id", "by",
    "environment", "prev_sha256", "sha256",
)  # fmt: skip
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_BLOCK = 64 * 1024
_LOCAL = ("", "file", "local")


class AuditError(MlopsDagsterError):
    """The audit log cannot be found or written (bad pipeline name, unreachable storage)."""


def audit_path(pipeline: str, root: str | None = None) -> UPath:
    """`<storage root>/audit/<pipeline>.jsonl`.

    Args:
        pipeline: The pipeline name (one safe path segment).
        root: A folder or URL; default `mlops_dagster.io.parquet.default_storage_root()`, the active
            environment's storage root.

    Raises:
        AuditError: the name cannot be a file name.
    """
    if not _SAFE_NAME.match(pipeline or ""):
        raise AuditError(f"pipeline name {pipeline!r} cannot name an audit log (letters, digits, _ . -)")
    if root is None:
        from mlops_dagster.io.parquet import default_storage_root

        root = default_storage_root()
    base = UPath(root)
    if base.protocol in _LOCAL:
        base = UPath(Path(base.path).expanduser().absolute())
    return base / AUDIT_FOLDER / f"{pipeline}.jsonl"


def is_local(path: UPath) -> bool:
    return path.protocol in _LOCAL


def canonical(record: dict[str, Any]) -> bytes:
    """The canonical JSON of a record: sorted keys, compact separators, ASCII only."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def record_hash(record: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of `record` without its `sha256` field."""
    return hashlib.sha256(canonical({k: v for k, v in record.items() if k != "sha256"})).hexdigest()


def parse_record(line: bytes) -> dict[str, Any] | None:
    """The record on one line (without its newline), or None when it is not a JSON audit record."""
    try:
        obj = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("sha256"), str):
        return None
    if not isinstance(obj.get("seq"), int) or not isinstance(obj.get("prev_sha256"), str):
        return None
    return obj


def iter_lines(path: UPath) -> Iterator[bytes]:
    """The raw lines of a log (with their newline; a torn last line without), streamed; none if absent."""
    if not is_local(path):
        invalidate = getattr(path.fs, "invalidate_cache", None)
        if invalidate is not None:
            invalidate(path.path)  # s3fs caches listings and ETags: read the object as it is now
    try:
        f = open(path.path, "rb") if is_local(path) else path.open("rb")  # noqa: SIM115
    except FileNotFoundError:
        return
    with f:
        yield from f


# -- appending -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Tail:
    keep: int  # the log is cut to this many bytes (its length when nothing is torn)
    dropped: bytes  # the torn bytes removed
    last: dict[str, Any] | None  # the last record kept
    last_raw: bytes | None  # its line, without the newline
    newline: bool  # the last record kept lacks its newline: write one first


def _line_before(buf: bytes, cut: int) -> bytes | None:
    if cut == 0:
        return None
    return buf[buf.rfind(b"\n", 0, cut - 1) + 1 : cut - 1]


def _follows(record: dict[str, Any], last: dict[str, Any] | None) -> bool:
    prev, seq = (last["sha256"], last["seq"]) if last else (GENESIS, 0)
    linked = record["prev_sha256"] == prev and record["seq"] == seq + 1
    return linked and record_hash(record) == record["sha256"]


def _analyse(buf: bytes, start: int) -> _Tail:
    """The end of a log (`buf`, read from offset `start`, holding at least its last three newlines)."""
    cut = len(buf) if buf.endswith(b"\n") else buf.rfind(b"\n") + 1
    last_raw = _line_before(buf, cut)
    last = parse_record(last_raw) if last_raw is not None else None
    if last_raw is not None and last is None:  # a terminated last line that is no record: torn too
        cut -= len(last_raw) + 1
        last_raw = _line_before(buf, cut)
        last = parse_record(last_raw) if last_raw is not None else None
    torn = buf[cut:]
    if torn and b"\n" not in torn:
        whole = parse_record(torn)
        if whole is not None and _follows(whole, last):
            return _Tail(start + len(buf), b"", whole, torn, newline=True)
    return _Tail(start + cut, torn, last, last_raw, newline=False)


def _seal(
    tail: _Tail, count: Callable[[], int], pending: Sequence[dict[str, Any]]
) -> tuple[bytes, list[dict[str, Any]]]:
    """The bytes to append after the kept part of the log, and the records they hold (chained)."""
    if tail.last is not None:
        seq, prev = int(tail.last["seq"]), str(tail.last["sha256"])
    elif tail.last_raw is not None:  # the line before is no record: chain to its bytes (verify flags it)
        seq, prev = count(), hashlib.sha256(tail.last_raw).hexdigest()
    else:
        seq, prev = 0, GENESIS
    records = list(pending)
    if tail.dropped:
        first = records[0]
        digest = hashlib.sha256(tail.dropped).hexdigest()
        repair = new_record(
            first["pipeline"],
            "repair",
            version=None,
            reasons=[
                f"removed a torn last line ({len(tail.dropped)} bytes, sha256 {digest}): a write was cut "
                "off, e.g. by a killed process"
            ],
            extra={"dropped_bytes": len(tail.dropped), "dropped_sha256": digest},
        )
        records.insert(0, repair)
    chunks = [b"\n"] if tail.newline else []
    out = []
    for record in records:
        seq += 1
        sealed = {**record, "seq": seq, "prev_sha256": prev}
        sealed["sha256"] = prev = record_hash(sealed)
        chunks.append(canonical(sealed) + b"\n")
        out.append(sealed)
    return b"".join(chunks), out


def new_record(
    pipeline: str,
    action: str,
    *,
    version: str | None,
    previous: str | None = None,
    reasons: Sequence[str] = (),
    trigger: str | None = None,
    run_id: str | None = None,
    by: str | None = None,
    environment: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A record's fields before it is chained (no seq, prev_sha256, sha256), as JSON values.

    Raises:
        AuditError: an unknown action, or `extra` reusing a field of the record.
    """
    if action not in ACTIONS:
        raise AuditError(f"unknown audit action {action!r} (one of {', '.join(ACTIONS)})")
    clash = sorted(set(extra or {}) & set(CORE_FIELDS))
    if clash:
        raise AuditError(f"extra fields {', '.join(clash)} would overwrite the record's own")
    record = {
        **(extra or {}),
        "time": datetime.now(UTC).isoformat(timespec="microseconds"),
        "pipeline": pipeline,
        "action": action,
        "version": version,
        "previous": previous,
        "reasons": [str(r) for r in reasons],
        "trigger": trigger,
        "run_id": run_id,
        "by": by,
        "environment": environment,
    }
    return dict(json.loads(json.dumps(record, default=str)))  # what a reader parses back is what is hashed


def append_records(path: UPath, pending: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Append `pending` (from `new_record`) to the log at `path`, serialized; returns them as written."""
    if is_local(path):
        target = Path(path.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        with _flock(target.with_name(f".{target.name}.lock")):
            return _append_local(target, pending)
    from mlops_dagster.io.storage import check_root

    check_root(path)
    home = os.environ.get("DAGSTER_HOME")
    folder = Path(home) / ".mlops_audit_locks" if home else Path(tempfile.gettempdir()) / "mlops-audit-locks"
    folder.mkdir(parents=True, exist_ok=True)
    with _flock(folder / f"{hashlib.sha256(str(path).encode()).hexdigest()[:32]}.lock"):
        return _append_remote(path, pending)


@contextmanager
def _flock(lock: Path) -> Iterator[None]:
    with open(lock, "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _read_tail(fd: int, size: int) -> tuple[bytes, int]:
    block = _BLOCK
    while True:
        start = max(0, size - block)
        buf = os.pread(fd, size - start, start)
        if start == 0 or buf.count(b"\n") >= 3:
            return buf, start
        block *= 4


def _count_lines(fd: int, upto: int) -> int:
    n, offset = 0, 0
    while offset < upto:
        chunk = os.pread(fd, min(_BLOCK * 16, upto - offset), offset)
        if not chunk:
            break
        n += chunk.count(b"\n")
        offset += len(chunk)
    return n


def _append_local(target: Path, pending: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    fd = os.open(target, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        size = os.fstat(fd).st_size
        tail = _analyse(*_read_tail(fd, size)) if size else _Tail(0, b"", None, None, False)
        data, written = _seal(tail, lambda: _count_lines(fd, tail.keep), pending)
        if tail.keep < size:  # a repair: rewrite the file whole, so a crash leaves the old bytes or new
            _rewrite(fd, target, tail.keep, data)
            return written
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
        return written
    finally:
        os.close(fd)


def _rewrite(fd: int, target: Path, keep: int, data: bytes) -> None:
    tmp_fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(tmp_fd, "wb") as out:
            offset = 0
            while offset < keep:
                chunk = os.pread(fd, min(_BLOCK * 16, keep - offset), offset)
                out.write(chunk)
                offset += len(chunk)
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _append_remote(path: UPath, pending: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    from mlops_dagster.io.storage import write_bytes

    invalidate = getattr(path.fs, "invalidate_cache", None)
    if invalidate is not None:
        invalidate(path.path)
    try:
        data = path.fs.cat_file(path.path)
    except FileNotFoundError:
        data = b""
    tail = _analyse(data, 0) if data else _Tail(0, b"", None, None, False)
    kept = data[: tail.keep]
    new, written = _seal(tail, lambda: kept.count(b"\n"), pending)
    write_bytes(path, kept + new)
    return written
