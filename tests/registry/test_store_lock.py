"""Two writers of the same content-addressed version: the second waits for the first to finish copying.

BentoML copies a new model into its store file by file, so without the lock a second `save_version` of
the same bytes (two runs training on the same data) could find the version half copied and fail.
"""

from __future__ import annotations

import shutil
import threading
import time
from contextlib import nullcontext
from typing import Any

import numpy as np
import pytest

from mlops_dagster.registry import store
from mlops_dagster.registry.store import load_version, save_version


def _model() -> Any:
    from sklearn.linear_model import LogisticRegression

    X = np.random.default_rng(3).normal(size=(120, 4))
    return LogisticRegression().fit(X, (X[:, 0] > 0).astype(int))


def _save_while_another_copies(monkeypatch: pytest.MonkeyPatch, pipeline: str) -> list[Any]:
    """Start a save whose copy into the store stalls half way, then save the same model again."""
    real_copytree = shutil.copytree
    copying = threading.Event()

    def stalling_copytree(src: Any, dst: Any, *args: Any, **kwargs: Any) -> Any:
        if not copying.is_set():  # only the first writer stalls, with its folder already in the store
            copying.set()
            time.sleep(0.5)
        return real_copytree(src, dst, *args, **kwargs)

    monkeypatch.setattr(shutil, "copytree", stalling_copytree)
    model, results = _model(), []
    first = threading.Thread(
        target=lambda: results.append(save_version(pipeline, model, {"features": []}, "# {version}"))
    )
    first.start()
    assert copying.wait(30), "the first save never reached the store"
    try:
        results.append(save_version(pipeline, model, {"features": []}, "# {version}"))
    finally:
        first.join(30)
    return results


def test_a_second_save_of_the_same_bytes_waits_for_the_first(monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = _save_while_another_copies(monkeypatch, "lock_demo")
    assert first == second
    load_version(second.pipeline, second.version, second.sha256)  # complete and verified


def test_without_the_lock_the_second_save_sees_a_half_copied_version(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test above would catch the lock's removal: this is what happens then."""
    from bentoml.exceptions import BentoMLException

    monkeypatch.setattr(store, "tag_lock", lambda tag: nullcontext())
    with pytest.raises(BentoMLException, match="model.yaml"):
        _save_while_another_copies(monkeypatch, "nolock_demo")
