"""Run an mlops_dagster edge bundle with onnxruntime and numpy only (no sklearn, no pandas).

This file is copied into every bundle as `predictor.py` and must stay standalone: it imports nothing
from mlops_dagster, and runs on Python 3.9+. On load it checks the sha256 of every bundle file against
`manifest.json` and refuses a bundle that does not match.

    from predictor import Predictor
    model = Predictor("path/to/bundle")
    model.predict({"tenure_months": 12, "plan": "basic"})      # -> [0]
    model.predict_proba([{"tenure_months": 12}, {"plan": None}])  # -> [[0.8, 0.2], [0.6, 0.4]]
    model.predict_with_proba({"tenure_months": 12})  # -> ([0], [[0.8, 0.2]]), one model run

A missing or None numeric value is NaN (the model imputes it as in training); a missing or None text
value is "" (the model's "missing" category). Keys that are not features are ignored.
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

MANIFEST = "manifest.json"
BUNDLE_FORMAT = "mlops-edge-bundle/1"
_NUMPY_TYPES = {"float": np.float32, "double": np.float64, "int64": np.int64, "string": object}


class BundleIntegrityError(Exception):
    """A bundle file is missing or its sha256 differs from manifest.json: the bundle is refused."""


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_manifest(bundle_dir: str | Path) -> dict[str, Any]:
    path = Path(bundle_dir) / MANIFEST
    if not path.is_file():
        raise BundleIntegrityError(f"{path} is missing: {bundle_dir} is not an edge bundle")
    manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    if manifest.get("format") != BUNDLE_FORMAT:
        raise BundleIntegrityError(
            f"{path}: format {manifest.get('format')!r} is not {BUNDLE_FORMAT!r}; rebuild the bundle"
        )
    return manifest


def verify_bundle(bundle_dir: str | Path) -> dict[str, Any]:
    """Check every file listed in the manifest against its sha256 and return the manifest.

    Raises:
        BundleIntegrityError: the manifest is missing or unknown, or a file is missing or altered.
    """
    manifest = read_manifest(bundle_dir)
    _check_files(Path(bundle_dir), manifest, {})
    return manifest


def _check_files(root: Path, manifest: dict[str, Any], contents: dict[str, bytes]) -> None:
    files = manifest.get("files") or {}
    if manifest.get("model_file") not in files:
        raise BundleIntegrityError(f"{root / MANIFEST} records no sha256 for the model file")
    for name, expected in sorted(files.items()):
        path = root / name
        if Path(name).name != name or not path.is_file():
            raise BundleIntegrityError(f"bundle file {path} is missing")
        data = contents[name] if name in contents else path.read_bytes()
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected:
            raise BundleIntegrityError(
                f"sha256 of {path} is {actual}, manifest.json says {expected}; refusing the bundle"
            )


def _text(value: Any) -> str:
    if value is None or (isinstance(value, (float, np.floating)) and value != value):
        return ""
    return str(value)


class Predictor:
    """The bundle's ONNX model behind a `predict(rows)` that takes dicts keyed by feature name.

    Args:
        bundle_dir: the bundle folder (holding manifest.json, model.onnx, predictor.py, README.txt).
        threads: onnxruntime intra-op threads; 1 (the default) gives the lowest single-row latency.

    Raises:
        BundleIntegrityError: a bundle file is missing or does not match its recorded sha256.
    """

    def __init__(self, bundle_dir: str | Path, *, threads: int = 1) -> None:
        import onnxruntime as ort

        self.bundle_dir = Path(bundle_dir)
        self.manifest = read_manifest(self.bundle_dir)
        model_bytes = (self.bundle_dir / self.manifest["model_file"]).read_bytes()
        # The bytes that were hashed are the bytes that are loaded: nothing can swap the file in between.
        _check_files(self.bundle_dir, self.manifest, {self.manifest["model_file"]: model_bytes})
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(
            model_bytes, sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.task: str = self.manifest["task"]
        self.features: list[str] = list(self.manifest["features"])
        self.classes: list[Any] = list(self.manifest.get("classes") or [])
        inputs = {i["name"]: i["type"] for i in self.manifest["inputs"]}
        self._text_names = [n for n, t in inputs.items() if t == "string"]
        self._number_names = [n for n, t in inputs.items() if t != "string"]
        dtypes = {_NUMPY_TYPES[inputs[n]] for n in self._number_names}
        if len(dtypes) > 1:
            raise BundleIntegrityError(f"numeric inputs of mixed types {sorted(map(str, dtypes))}")
        self._number_dtype = dtypes.pop() if dtypes else np.float32
        roles = {o["role"]: o["name"] for o in self.manifest["outputs"]}
        self._prediction = [roles["prediction"]]
        self._probabilities = [roles["probabilities"]] if "probabilities" in roles else None
        self._local = threading.local()  # one-row input buffers, per thread: predict() is thread-safe

    def _single_buffers(self) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """This thread's preallocated one-row inputs: a call fills them in place, nothing is allocated."""
        numbers = np.empty((len(self._number_names), 1, 1), dtype=self._number_dtype)
        texts = np.empty((len(self._text_names), 1, 1), dtype=object)
        feeds = {name: numbers[i] for i, name in enumerate(self._number_names)}
        feeds.update({name: texts[i] for i, name in enumerate(self._text_names)})
        buffers = (numbers.reshape(-1), texts.reshape(-1), feeds)
        self._local.buffers = buffers
        return buffers

    def _feeds(self, rows: dict[str, Any] | Sequence[dict[str, Any]]) -> dict[str, np.ndarray]:
        if isinstance(rows, dict) or len(rows) == 1:
            row = rows if isinstance(rows, dict) else rows[0]
            try:
                numbers, texts, feeds = self._local.buffers
            except AttributeError:
                numbers, texts, feeds = self._single_buffers()
            try:
                numbers[:] = [row.get(n) for n in self._number_names]  # None becomes NaN
            except (TypeError, ValueError) as e:
                raise ValueError(f"numeric features {self._number_names} need numbers or None: {e}") from e
            texts[:] = [v if type(v) is str else _text(v) for v in [row.get(n) for n in self._text_names]]
            return feeds
        feeds = {}
        if self._number_names:
            names = self._number_names
            try:
                # One conversion for the whole batch, shaped (features, rows, 1) so that each input is a
                # contiguous (rows, 1) view that onnxruntime takes without a copy.
                numbers = np.array(
                    [[row.get(n) for row in rows] for n in names], dtype=self._number_dtype
                ).reshape(len(names), -1, 1)
            except (TypeError, ValueError) as e:
                raise ValueError(f"numeric features {names} need numbers or None: {e}") from e
            for i, name in enumerate(names):
                feeds[name] = numbers[i]
        if self._text_names:
            names = self._text_names
            texts = np.array(
                [[v if type(v) is str else _text(v) for v in [row.get(n) for row in rows]] for n in names],
                dtype=object,
            ).reshape(len(names), -1, 1)
            for i, name in enumerate(names):
                feeds[name] = texts[i]
        return feeds

    def predict(self, rows: dict[str, Any] | Sequence[dict[str, Any]]) -> list[Any]:
        """Class labels (classification) or values (regression), one per row; a dict is one row."""
        if not isinstance(rows, dict) and len(rows) == 0:
            return []
        out = self._session.run(self._prediction, self._feeds(rows))[0]
        return out.ravel().tolist()  # type: ignore[no-any-return]

    def predict_with_proba(
        self, rows: dict[str, Any] | Sequence[dict[str, Any]]
    ) -> tuple[list[Any], list[list[float]]]:
        """Labels and class probabilities from one model run (classification only)."""
        if self._probabilities is None:
            raise ValueError(f"predict_with_proba needs a classification bundle; this one is {self.task}")
        if not isinstance(rows, dict) and len(rows) == 0:
            return [], []
        labels, probabilities = self._session.run(self._prediction + self._probabilities, self._feeds(rows))
        return labels.ravel().tolist(), probabilities.tolist()

    def predict_proba(self, rows: dict[str, Any] | Sequence[dict[str, Any]]) -> list[list[float]]:
        """Class probabilities per row, in the order of `self.classes` (classification only)."""
        if self._probabilities is None:
            raise ValueError(f"predict_proba needs a classification bundle; this one is {self.task}")
        if not isinstance(rows, dict) and len(rows) == 0:
            return []
        return self._session.run(self._probabilities, self._feeds(rows))[0].tolist()  # type: ignore[no-any-return]


def main(argv: Sequence[str]) -> int:
    """`python predictor.py rows.json` (or `-` for stdin): print one JSON prediction per input row."""
    if len(argv) != 1:
        print("usage: python predictor.py ROWS.json|-  (a JSON object or a list of objects)", file=sys.stderr)
        return 2
    text = sys.stdin.read() if argv[0] == "-" else Path(argv[0]).read_text(encoding="utf-8")
    rows = json.loads(text)
    model = Predictor(Path(__file__).resolve().parent)
    batch = [rows] if isinstance(rows, dict) else rows
    probas: list[Any]
    if model.task == "classification":
        labels, probas = model.predict_with_proba(batch)
    else:
        labels, probas = model.predict(batch), [None] * len(batch)
    for i, label in enumerate(labels):
        proba = probas[i]
        result = {"prediction": label} if proba is None else {"prediction": label, "probabilities": proba}
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
