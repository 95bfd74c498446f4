"""The one storage layer: files under a root that is a local folder or an fsspec URL (s3://, gs://...).

Every artifact the library keeps next to the data (datasets, feature groups, training sets, quarantine,
drift reports, edge bundles) is written through these functions, on a `UPath` under the Parquet IO
manager's root, never through `pathlib` on a URL's string.

Rules kept here:

- Local files are written to a temporary file and renamed into place; a local folder tree is swapped
  in whole. On object stores a single PUT is atomic, and a tree is uploaded with its index file last.
- An object store's bucket (S3, GCS, Azure container) must exist: `check_root` raises a
  `StorageError` naming it. Nothing here creates a bucket, and nothing calls `mkdir` on an object
  store (s3fs's `mkdir` creates a missing bucket as a side effect).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from upath import UPath
from upath.implementations.cloud import CloudPath

from mlops_dagster.errors import MlopsDagsterError

_LOCAL_PROTOCOLS = ("", "file", "local")
_checked_buckets: set[str] = set()
_lock = threading.Lock()


class StorageError(MlopsDagsterError):
    """The storage root cannot be used (for example, its bucket does not exist)."""


def is_local(path: UPath) -> bool:
    """True for a path on the local file system."""
    return path.protocol in _LOCAL_PROTOCOLS


def local_path(path: UPath) -> Path:
    """The `pathlib.Path` of a local UPath.

    Raises:
        StorageError: the path is not on the local file system (an s3:// URL is never a folder here).
    """
    if not is_local(path):
        raise StorageError(f"{path} is not a local path; use the storage functions to write there")
    return Path(path.path)


def bucket_of(path: UPath) -> str | None:
    """The bucket (container) of an object-store path, e.g. `my-bucket` for `s3://my-bucket/root`."""
    return path.drive.rstrip("/") or None if isinstance(path, CloudPath) else None


def check_root(root: UPath) -> None:
    """Check that an object-store root's bucket exists (once per process per bucket).

    The bucket is looked up with `fs.info` (S3: one HeadBucket, retried by botocore on 5xx and
    dropped connections), not `fs.exists`: s3fs's `exists` answers False for a bucket it could not
    reach (throttled, unavailable, wrong endpoint), which would report a missing bucket for what is a
    storage outage.

    Raises:
        StorageError: the bucket does not exist, these credentials cannot see it, or it cannot be
            reached; it is never created.
    """
    bucket = bucket_of(root)
    if bucket is None:
        return
    key = f"{root.protocol}://{bucket}"
    with _lock:
        if key in _checked_buckets:
            return
    try:
        root.fs.info(bucket)
    except FileNotFoundError as e:
        raise StorageError(
            f"storage {root}: bucket '{bucket}' does not exist (or these credentials cannot see it); "
            "create it first: mlops_dagster never creates buckets"
        ) from e
    except PermissionError as e:
        raise StorageError(f"storage {root}: these credentials may not use bucket '{bucket}' ({e})") from e
    except Exception as e:  # credentials, endpoint, network, a store answering 5xx after the retries
        raise StorageError(
            f"storage {root}: cannot reach bucket '{bucket}' after retries ({type(e).__name__}: {e})"
        ) from e
    with _lock:
        _checked_buckets.add(key)


def existing_files(paths: Sequence[UPath]) -> list[UPath]:
    """The paths among `paths` that exist, in their order.

    When several paths share one folder of an object store, that folder is listed once, fresh (the
    file system's listing cache is dropped first, so a file another process wrote since is seen): one
    LIST per 1,000 keys instead of a HEAD and a LIST for each missing path. A listing error is raised,
    never taken for "missing". Local paths, and paths in different folders, are checked one by one.
    """
    folders = {p.parent.path for p in paths}
    if len(paths) < 2 or len(folders) != 1 or is_local(paths[0]):
        return [p for p in paths if p.exists()]
    folder = paths[0].parent
    invalidate = getattr(folder.fs, "invalidate_cache", None)
    if invalidate is not None:
        invalidate(folder.path)
    try:
        entries = folder.fs.ls(folder.path, detail=True)
    except FileNotFoundError:
        return []
    names = {str(e["name"]).rstrip("/").rsplit("/", 1)[-1] for e in entries if e.get("type") == "file"}
    return [p for p in paths if p.name in names]


def _ensure_parent(path: UPath) -> None:
    if not isinstance(path, CloudPath):  # object stores have no folders; mkdir there can create a bucket
        path.parent.mkdir(parents=True, exist_ok=True)


def write_bytes(path: UPath, data: bytes) -> None:
    """Write one file whole: readers see the old content or the new, never a part."""
    if is_local(path):
        target = Path(path.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return
    _ensure_parent(path)
    with path.open("wb") as f:
        f.write(data)


def write_text(path: UPath, text: str) -> None:
    """`write_bytes` of UTF-8 text."""
    write_bytes(path, text.encode("utf-8"))


def remove_tree(path: UPath) -> None:
    """Delete a folder and everything under it; nothing happens when it does not exist."""
    if is_local(path):
        shutil.rmtree(Path(path.path), ignore_errors=True)
        return
    files = [p for p in path.rglob("*") if p.is_file()] if path.exists() else []
    for file in files:
        file.unlink()
    if not isinstance(path, CloudPath) and path.exists():
        path.fs.rm(path.path, recursive=True)  # folders of file-like stores (memory://, sftp)


def put_tree(source: Path, target: UPath, *, last: str) -> UPath:
    """Publish the files of the local folder `source` as the folder `target` (replacing it).

    Locally the new folder is built beside the target and swapped in, so readers see one or the other.
    On object stores `last` (the index file, e.g. a manifest) is deleted first and uploaded after every
    other file: a reader that finds it finds the whole set. Files of an older tree not in `source` are
    removed.

    Returns:
        `target`.
    """
    names = sorted(p.name for p in source.iterdir() if p.is_file())
    if last not in names:
        raise StorageError(f"{source} has no {last}: refusing to publish it as {target}")
    if is_local(target):
        _swap_local_tree(source, Path(target.path), names)
        return target
    index = target / last
    if index.exists():
        index.unlink()
    if target.exists():
        for stale in [p for p in target.iterdir() if p.is_file() and p.name not in names]:
            stale.unlink()
    for name in [n for n in names if n != last] + [last]:
        write_bytes(target / name, (source / name).read_bytes())
    return target


def _swap_local_tree(source: Path, out: Path, names: Iterable[str]) -> None:
    replace_local_folder(out, lambda tmp: [shutil.copyfile(source / name, tmp / name) for name in names])


def replace_local_folder(out: Path, fill: Callable[[Path], object]) -> None:
    """Replace the local folder `out` whole: `fill` writes the new files into a temporary folder beside
    it, which is then renamed into place, so readers see the old folder or the new one, never a mix."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        tmp.chmod(0o755)
        fill(tmp)
        if out.exists():
            old = out.with_name(f".{out.name}.{uuid.uuid4().hex}.old")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def tree_size(path: UPath) -> int:
    """Total bytes of the files directly in a folder."""
    return sum(int(p.stat().st_size) for p in path.iterdir() if p.is_file())
