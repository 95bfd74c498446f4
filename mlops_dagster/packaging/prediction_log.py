"""What the served bento and the edge predictor predicted, logged to Parquet through a bounded queue.

The bento copies this file into its `mlops_bento_runtime` package, and it can sit beside an edge
bundle's `predictor.py` on a device: like them it imports only the standard library at the top (the
writer thread imports pyarrow, and fsspec for an object store) and needs neither Dagster nor the rest
of `mlops_dagster` (`settings_for`, the one function that reads a spec, runs at build time only).

Files: `<root>/<pipeline>/predictions/served/<YYYY-MM-DD>/<time>-<pid>-<id>.parquet`, one folder per
UTC day of the rows' timestamps (the dataset's daily partitions), in the shape of the batch predictions
(`<p>/predictions`): the dataset's entity and timestamp columns, `prediction`, `proba_<class>` per class
for a classifier, `model_version` and `partition`. A row without an entity logs a null one; a row
without a readable timestamp logs the request's time; timestamps are UTC without a zone, like the
partitions. The entity is logged as text, as the sha256 `quality/pii.py` stores when it is declared
PII (a PII timestamp is never read: the request's time stands in). Features are never logged.

`log()` is what a request pays (about 2 µs for a row): values appended to columns under a lock, no
I/O. A call whose rows do not fit in the queue (`queue_size` rows) is dropped and counted; it never
blocks nor raises. A thread writes the queue every `flush_interval` seconds, or once `flush_rows` rows
wait; a failed write is logged and counted, and the thread goes on. `close()` (also run at exit)
writes what is left, so a clean stop loses nothing.
"""

from __future__ import annotations

import atexit
import hashlib
import io
import logging
import math
import os
import threading
import time
import uuid
from array import array
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

ROOT_ENV = "MLOPS_PREDICTION_LOG_ROOT"  # overrides the root baked into a bento, at serve time
SERVED_DIR = ("predictions", "served")
LOCAL_PREFIX = "file://"
CLOSE_TIMEOUT = 60.0  # seconds `close()` waits for the last write by default
logger = logging.getLogger("mlops_dagster.prediction_log")
NAN = float("nan")
_EPOCH = datetime(1970, 1, 1)  # request times are seconds since it, in UTC

Writer = Callable[[str, bytes], None]


def hash_text(value: Any) -> str | None:
    """`quality.pii.hash_value`, restated here so the bento needs no `mlops_dagster`: sha256 of the text."""
    return None if value is None else hashlib.sha256(str(value).encode()).hexdigest()


def _class_key(value: Any) -> str:
    """`quality.baseline.value_key`, restated like `hash_text`: the class in `proba_<class>` (1.0 -> 1)."""
    value = value.item() if hasattr(value, "item") and not isinstance(value, (str, bytes)) else value
    integral = isinstance(value, float) and math.isfinite(value) and value.is_integer()
    return str(int(value)) if integral else str(value)


def served_dir(root: str, pipeline: str) -> str:
    """`<root>/<pipeline>/predictions/served`: where the files of one pipeline go."""
    return "/".join([root.rstrip("/"), pipeline, *SERVED_DIR])


class StoreWriter:
    """Writes one file whole: locally to a hidden temporary file renamed into place (readers never see
    a part), on an object store with one PUT through fsspec (`storage_options`: e.g. the environment's
    `s3_additional_kwargs` for server-side encryption). No folder is made on an object store."""

    def __init__(self, storage_options: Mapping[str, Any] | None = None) -> None:
        self.storage_options = dict(storage_options or {})
        self._fs: dict[str, Any] = {}

    def __call__(self, path: str, data: bytes) -> None:
        if "://" not in path or path.startswith(LOCAL_PREFIX):
            local = path[len(LOCAL_PREFIX) :] if path.startswith(LOCAL_PREFIX) else path
            folder, name = os.path.split(local)
            os.makedirs(folder, exist_ok=True)
            tmp = os.path.join(folder, f".{name}.{uuid.uuid4().hex}.tmp")
            try:
                with open(tmp, "wb") as f:
                    f.write(data)
                os.replace(tmp, local)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
            return
        import fsspec

        protocol = path.split("://", 1)[0]
        fs = self._fs.get(protocol)
        if fs is None:
            fs = self._fs[protocol] = fsspec.filesystem(protocol, **self.storage_options)
        with fs.open(path, "wb") as f:
            f.write(data)


class _Rows:
    """Queued rows of one model version, kept as columns: a request appends values to lists and arrays
    and leaves no new container behind (retained containers would wake the garbage collector, whose full
    passes over a server's objects cost more than the rest of logging)."""

    __slots__ = ("version", "classes", "entities", "stamps", "times", "predictions", "probabilities")

    def __init__(self, version: str | None, classes: Sequence[Any] | None) -> None:
        self.version, self.classes = version, list(classes or ())
        self.entities: list[Any] = []
        self.stamps: list[Any] = []
        self.predictions: list[Any] = []
        self.times, self.probabilities = array("d"), array("d")  # per row: request time; class probabilities

    def __len__(self) -> int:
        return len(self.predictions)


class PredictionLog:
    """A bounded queue of predictions and the thread writing it to Parquet (see the module docstring).

    Args:
        root: the storage root (a folder or an fsspec URL such as `s3://bucket/mlops/data`).
        pipeline: the pipeline, the first folder under `root`.
        entity, timestamp: the dataset's entity and timestamp column names (read from each row).
        hash_entity: the entity is declared PII: log its sha256.
        ignore_timestamp: the timestamp is declared PII: never read it, log the request's time.
        queue_size: rows held waiting for the writer before calls are dropped.
        flush_rows: rows per file at most; this many waiting wake the writer.
        flush_interval: seconds a row waits at most before it is written.
        storage_options: fsspec options for an object-store root.
        write: `write(path, data)` stores one file; default a `StoreWriter`.
        row_attributes: the attribute names of the entity and timestamp on rows that are not mappings
            (the bento's validated request rows).
    """

    def __init__(
        self,
        root: str,
        pipeline: str,
        *,
        entity: str,
        timestamp: str,
        hash_entity: bool = False,
        ignore_timestamp: bool = False,
        queue_size: int = 10_000,
        flush_rows: int = 1_000,
        flush_interval: float = 10.0,
        storage_options: Mapping[str, Any] | None = None,
        write: Writer | None = None,
        row_attributes: tuple[str, str] = ("entity", "timestamp"),
    ) -> None:
        if queue_size < 1 or flush_rows < 1 or flush_interval <= 0:
            raise ValueError(
                f"prediction log: queue_size ({queue_size}) and flush_rows ({flush_rows}) must be >= 1 "
                f"and flush_interval ({flush_interval}) > 0"
            )
        self.root, self.pipeline = root, pipeline
        self.entity, self.timestamp = entity, timestamp
        self.hash_entity, self.ignore_timestamp = hash_entity, ignore_timestamp
        self.queue_size, self.flush_rows, self.flush_interval = queue_size, flush_rows, flush_interval
        self.folder = served_dir(root, pipeline)
        self._write = write or StoreWriter(storage_options)
        self._attributes = row_attributes
        self._rows, self._sealed = _Rows(None, None), list[_Rows]()  # sealed: earlier versions' rows
        self._lock = threading.Lock()  # `log` takes it bare: a Condition's `with` costs 5x more
        self._cond = threading.Condition(self._lock)
        self._queued = 0  # rows waiting in `_rows` and `_sealed`
        self._accepted = self._handled = 0  # calls queued, calls written or failed (for `flush`)
        self._dropped = self._reported_dropped = 0
        self._written = self._failed = self._files = self._write_errors = 0
        self._closing = self._flush_wanted = False
        self._thread = threading.Thread(target=self._run, name=f"prediction-log-{pipeline}", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any] | None, **kwargs: Any) -> PredictionLog | None:
        """The log `settings_for` describes, or None when it is off; `$MLOPS_PREDICTION_LOG_ROOT`, when
        set, replaces the root. `kwargs` go to the constructor (`write`, `row_attributes`)."""
        if not settings or not settings.get("enabled"):
            return None
        root = os.environ.get(ROOT_ENV) or settings.get("root")
        if not root:
            raise ValueError(f"prediction log of {settings.get('pipeline')!r}: no root; set ${ROOT_ENV}")
        return cls(root, **{k: v for k, v in settings.items() if k not in ("enabled", "root")}, **kwargs)

    def log(
        self,
        rows: Mapping[str, Any] | Sequence[Any],
        predictions: Sequence[Any],
        probabilities: Sequence[Sequence[float]] | None = None,
        *,
        version: str,
        classes: Sequence[Any] | None = None,
    ) -> bool:
        """Queue one call's predictions (a mapping is one row); False when they were dropped.

        Reads the rows' entity and timestamp and copies the values: nothing of the arguments is kept.
        Never raises and never waits for the writer.
        """
        n = 0
        try:  # `type(x) is dict` first: isinstance against an ABC costs more than the rest of the call
            n = len(predictions)
            if type(rows) is dict or (type(rows) is not list and isinstance(rows, Mapping)):
                rows = (rows,)
            first = rows[0] if n else None
            if type(first) is dict or isinstance(first, Mapping):
                entity, ts = self.entity, self.timestamp
                if n == 1:  # the common call, without the comprehensions' frames
                    entities, stamps = [first.get(entity)], [first.get(ts)]
                else:
                    entities, stamps = [r.get(entity) for r in rows], [r.get(ts) for r in rows]
            else:
                entity, ts = self._attributes
                entities = [getattr(r, entity, None) for r in rows]
                stamps = [getattr(r, ts, None) for r in rows]
            labels = classes if type(classes) is list else list(classes or ())
            if not labels:
                flat = []
            elif not probabilities:
                flat = [NAN] * (n * len(labels))
            else:
                flat = list(probabilities[0]) if n == 1 else [p for row in probabilities for p in row]
            if len(entities) != n or len(flat) != n * len(labels):
                raise ValueError(f"{n} predictions, {len(entities)} rows, {len(flat)} probabilities")
            now = time.time()
            with self._lock:
                if self._closing or self._queued + n > self.queue_size:
                    self._dropped += n
                    return False
                queued = self._rows
                if queued.version != version or queued.classes != labels:
                    if len(queued):
                        self._sealed.append(queued)
                    queued = self._rows = _Rows(version, labels)
                queued.probabilities.fromlist(flat)  # first: it changes nothing when a value is no float
                queued.times.fromlist([now] * n)
                queued.entities += entities
                queued.stamps += stamps
                queued.predictions += predictions
                self._queued += n
                self._accepted += 1
                if self._queued >= self.flush_rows and self._queued - n < self.flush_rows:
                    self._cond.notify_all()
            return True
        except Exception:  # a request is never failed by its log
            with self._lock:
                self._dropped += n
            return False

    def stats(self) -> dict[str, Any]:
        """Counters: rows written, dropped (queue full or closed), lost to failed writes, waiting."""
        with self._lock:
            return {
                "enabled": True,
                "folder": self.folder,
                "rows_written": self._written,
                "rows_dropped": self._dropped,
                "rows_failed": self._failed,
                "rows_queued": self._queued,
                "files_written": self._files,
                "write_errors": self._write_errors,
                "queue_size": self.queue_size,
            }

    def flush(self, timeout: float | None = None) -> bool:
        """Write what is queued now; True once it is written (or failed), False after `timeout` s."""
        with self._cond:
            target = self._accepted
            self._flush_wanted = True
            self._cond.notify_all()
            return self._cond.wait_for(
                lambda: self._handled >= target or not self._thread.is_alive(), timeout
            )

    def close(self, timeout: float | None = CLOSE_TIMEOUT) -> None:
        """Write what is left and stop the thread (idempotent; later calls to `log` are dropped)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        atexit.unregister(self.close)

    def _run(self) -> None:
        try:  # now, not on the first write: a missing pyarrow shows at start, and no request waits for it
            import pyarrow.parquet  # noqa: F401
        except ImportError as e:
            logger.error("prediction log %s: nothing can be written: %r", self.folder, e)
        while True:
            with self._cond:
                deadline = time.monotonic() + self.flush_interval
                while not (self._closing or self._flush_wanted or self._queued >= self.flush_rows):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                taken = [*self._sealed, self._rows] if len(self._rows) else self._sealed
                self._sealed, self._rows = [], _Rows(self._rows.version, self._rows.classes)
                self._queued, self._flush_wanted, calls = 0, False, self._accepted
                closing = self._closing
                dropped = self._dropped - self._reported_dropped
                self._reported_dropped = self._dropped
            if dropped:
                logger.warning("prediction log %s: queue full: %d rows dropped", self.folder, dropped)
            counts = [0, 0, 0, 0]  # rows written, rows failed, files, errors
            for queued in taken:
                self._write_rows(queued, counts)
            with self._cond:
                self._written += counts[0]
                self._failed += counts[1]
                self._files += counts[2]
                self._write_errors += counts[3]
                self._handled = calls
                self._cond.notify_all()
            if closing:  # `log` queues nothing once closing is set: everything was taken above
                return

    def _write_rows(self, queued: _Rows, counts: list[int]) -> None:
        """One file per UTC day of the rows, at most `flush_rows` rows each; a failure is logged and
        counted, and the writer goes on with the next file."""
        try:
            table, days = self._table(queued)
        except Exception as e:  # malformed values (not a store failure) must not stop the writer either
            counts[1], counts[3] = counts[1] + len(queued), counts[3] + 1
            logger.error("prediction log %s: %d rows not logged: %r", self.folder, len(queued), e)
            return
        import pyarrow.compute as pc

        unique = days.unique()
        for day in unique.to_pylist():
            part = table.filter(pc.equal(days, day)) if len(unique) > 1 else table
            for start in range(0, len(part), self.flush_rows):
                chunk = part.slice(start, self.flush_rows)
                path = f"{self.folder}/{day.isoformat()}/{_file_name()}"
                try:
                    self._write(path, _parquet_bytes(chunk))
                    counts[0], counts[2] = counts[0] + len(chunk), counts[2] + 1
                except Exception as e:  # logged and counted; the writer goes on with the next file
                    counts[1], counts[3] = counts[1] + len(chunk), counts[3] + 1
                    logger.error("prediction log: writing %d rows to %s failed: %r", len(chunk), path, e)

    def _table(self, queued: _Rows) -> tuple[Any, Any]:
        """The rows as an Arrow table in the shape of batch predictions, and each row's UTC day."""
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        stamps = [None] * len(queued) if self.ignore_timestamp else queued.stamps
        times = queued.times
        moments = [_utc(stamps[i]) or _EPOCH + timedelta(seconds=times[i]) for i in range(len(queued))]
        when = pa.array(moments, pa.timestamp("us"))
        days = pc.cast(when, pa.date32())
        text = hash_text if self.hash_entity else str
        kind = _prediction_type(queued.classes)
        predictions = queued.predictions
        if kind == pa.string():
            predictions = [None if p is None else str(p) for p in predictions]
        columns: dict[str, Any] = {
            self.entity: pa.array([None if e is None else text(e) for e in queued.entities], pa.string()),
            self.timestamp: when,
            "prediction": pa.array(predictions, kind),
        }
        if queued.classes:
            matrix = np.frombuffer(queued.probabilities, dtype=np.float64).reshape(len(queued), -1)
            for i, label in enumerate(queued.classes):
                columns[f"proba_{_class_key(label)}"] = pa.array(matrix[:, i])
        columns["model_version"] = pa.array([queued.version] * len(queued), pa.string())
        columns["partition"] = pc.cast(days, pa.string())
        return pa.table(columns), days


def _utc(value: Any) -> datetime | None:
    """A row's timestamp (a datetime, ISO 8601 text or epoch seconds) as a UTC datetime without zone;
    None when it is absent or unreadable (the request's time stands in)."""
    try:
        if isinstance(value, str):
            text = value.strip()
            value = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            value = datetime.fromtimestamp(float(value), timezone.utc)  # noqa: UP017 - Python 3.9
        if not isinstance(value, datetime):
            return None
        return value.astimezone(timezone.utc).replace(tzinfo=None) if value.tzinfo else value  # noqa: UP017
    except (ValueError, OverflowError, OSError):
        return None


def _file_name() -> str:
    now = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")  # noqa: UP017 - Python 3.9
    return f"{now}-{os.getpid()}-{uuid.uuid4().hex[:12]}.parquet"


def _prediction_type(classes: Sequence[Any]) -> Any:
    import pyarrow as pa

    if not classes:
        return pa.float64()  # regression
    if all(isinstance(c, bool) for c in classes):
        return pa.bool_()
    if all(isinstance(c, int) and not isinstance(c, bool) for c in classes):
        return pa.int64()
    if all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in classes):
        return pa.float64()
    return pa.string()


def _parquet_bytes(table: Any) -> bytes:
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def settings_for(spec: Any, root: str | None) -> dict[str, Any]:
    """`PredictionLog.from_settings`'s input (the constructor's arguments, and `enabled`), baked into a
    bento's config: a pipeline spec's `serving.prediction_log` and dataset columns; `root`, where files
    go (`<root>/<pipeline>/predictions/served`), for s3:// with the encryption of the spec's environment
    (`build_definitions` sets it). Reads attributes only: the bento imports nothing of `mlops_dagster`.

    Raises:
        ValueError: logging is on and `root` is None.
    """
    setting, dataset, pii = spec.serving.prediction_log, spec.dataset, spec.pii_columns
    if setting.enabled and not root:
        raise ValueError(f"{spec.name}: serving.prediction_log is enabled but no storage root was given")
    encryption = getattr(spec.environment.spec if spec.environment else None, "encryption", None)
    s3 = setting.enabled and str(root).startswith("s3://")
    options = (
        {"s3_additional_kwargs": encryption.request_arguments()} if s3 and encryption is not None else {}
    )
    return {
        "enabled": bool(setting.enabled),
        "root": root if setting.enabled else None,
        "pipeline": spec.name,
        "entity": dataset.entity,
        "timestamp": dataset.timestamp,
        "hash_entity": dataset.entity in pii,
        "ignore_timestamp": dataset.timestamp in pii,
        "queue_size": setting.queue_size,
        "flush_rows": setting.flush_rows,
        "flush_interval": setting.flush_interval.total_seconds(),
        "storage_options": options,
    }
