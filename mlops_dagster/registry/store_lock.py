"""One writer at a time per BentoML tag, across processes.

BentoML copies a new model or bento into its store file by file (`shutil.copytree`), so a process that
looks the tag up meanwhile can find it half copied: no `model.yaml` yet, or a model file cut short.
Versions here are content-addressed, so two runs that train on the same data (or two processes of a
test suite) do save the same tag at the same moment. `tag_lock` serialises "is it there? if not, store
it" per tag with an advisory `flock` on a file under `$BENTOML_HOME/.mlops_locks/`; readers of a tag that
is already stored never wait. Where `fcntl` does not exist (Windows) it does nothing.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

LOCK_DIR = ".mlops_locks"


def bentoml_home() -> Path:
    """BentoML's home folder, as BentoML resolves it: `$BENTOML_HOME`, else `~/bentoml`."""
    return Path(os.environ.get("BENTOML_HOME") or Path.home() / "bentoml")


def lock_path(tag: str) -> Path:
    return bentoml_home() / LOCK_DIR / (re.sub(r"[^A-Za-z0-9_.-]", "_", tag) + ".lock")


@contextmanager
def tag_lock(tag: str) -> Iterator[None]:
    """Hold the store's write lock for `tag` (blocking until no other process or thread holds it)."""
    if fcntl is None:  # pragma: no cover - not POSIX
        yield
        return
    path = lock_path(tag)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+b") as handle:  # its own open file: flock then excludes other threads too
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
