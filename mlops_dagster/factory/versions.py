"""Code versions: a hash of the spec section an asset is built from and of the user code it runs.

User modules are hashed from their source file (found with `importlib.util.find_spec`), so computing
a code version never executes user code.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from functools import lru_cache
from typing import Any

from pydantic import BaseModel

LIBRARY_STAGE_VERSION = "1"  # bump when a stage's own logic changes in a way that should restale assets


def _canonical(value: Any) -> str:
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    return json.dumps(value, sort_keys=True, default=str)


@lru_cache(maxsize=512)
def module_source_hash(import_path: str) -> str:
    """sha256 of the source file of the module an import path points into ('' if not found)."""
    module = import_path.partition(":")[0] if ":" in import_path else import_path.rpartition(".")[0]
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return ""
    origin = getattr(spec, "origin", None) if spec else None
    if not origin or not origin.endswith(".py"):
        return ""
    try:
        with open(origin, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return ""


def code_version(*parts: Any, code: tuple[str, ...] = ()) -> str:
    """A short, stable hash of spec sections plus the sources of the user code paths in `code`."""
    h = hashlib.sha256(LIBRARY_STAGE_VERSION.encode())
    for part in parts:
        h.update(_canonical(part).encode())
    for path in code:
        h.update(path.encode())
        h.update(module_source_hash(path).encode())
    return h.hexdigest()[:16]
