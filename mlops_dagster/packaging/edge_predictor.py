"""Run an mlops_dagster edge bundle with onnxruntime and numpy only (no sklearn, no pandas).

This file is copied into every bundle as `predictor.py` and must stay standalone: it needs no other
part of mlops_dagster, and runs on Python 3.9+. On load it checks the sha256 of every bundle file against
`manifest.json` (before it reads the model) and refuses a bundle that does not match, or whose folder
holds a file the manifest does not name.

    from predictor import Predictor
    model = Predictor("path/to/bundle")
    model.predict({"tenure_months": 12, "plan": "basic"})      # -> [0]
    model.predict_proba([{"tenure_months": 12}, {"plan": None}])  # -> [[0.8, 0.2], [0.6, 0.4]]
    model.predict_with_proba({"tenure_months": 12})  # -> ([0], [[0.8, 0.2]]), one model run

A missing or None numeric value is NaN (the model imputes it as in training); a missing or None text
value is "" (the model's "missing" category). Keys that are not features are ignored. An infinite
number is refused (ValueError naming the feature); in the JSON the command line reads, so are `NaN`,
`Infinity` and numbers too large for a float (`1e309`): write `null` for a missing value.

A program that loads a bundle from a store should not import its `predictor.py` before checking it:
`load_verified_predictor` checks every file first, then runs the very bytes it checked.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import threading
import types
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np

MANIFEST = "manifest.json"
PREDICTOR = "predictor.py"
BUNDLE_FORMAT = "mlops-edge-bundle/1"
# Entries a bundle folder may hold besides its manifest's files: Python's bytecode cache (written when a
# device imports predictor.py; no loader here reads it) and BentoML's record of a stored bundle.
TOLERATED = ("__pycache__", "model.yaml")
_NUMPY_TYPES = {"float": np.float32, "double": np.float64, "int64": np.int64, "string": object}


class BundleIntegrityError(Exception):
    """A bundle file is missing, altered or unexpected, or the bundle is not the one expected: refused."""


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_manifest(bundle_dir: str | Path, data: bytes | None = None) -> dict[str, Any]:
    """The bundle's manifest (from `data`, the bytes of its manifest.json, when given).

    Raises:
        BundleIntegrityError: the manifest is missing, not JSON, or of an unknown format.
    """
    path = Path(bundle_dir) / MANIFEST
    if data is None:
        if not path.is_file():
            raise BundleIntegrityError(f"{path} is missing: {bundle_dir} is not an edge bundle")
        data = path.read_bytes()
    try:
        manifest = json.loads(data.decode("utf-8"))
    except ValueError as e:
        raise BundleIntegrityError(f"{path} is not JSON ({e}); refusing the bundle") from e
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise BundleIntegrityError(f"{path}: format {found!r} is not {BUNDLE_FORMAT!r}; rebuild the bundle")
    return manifest


def verified_bundle(
    bundle_dir: str | Path,
    *,
    manifest_sha256: str | None = None,
    model_sha256: str | None = None,
    version: str | None = None,
    tolerated: Collection[str] = TOLERATED,
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Check the whole bundle before anything in it is used; returns the manifest and the checked bytes.

    In order: manifest.json against `manifest_sha256`, the manifest's `model_sha256` and `version`
    against the expected ones, the folder against the manifest (a file it does not name is refused,
    but for the `tolerated` entries), then every named file against its sha256. Callers use the
    returned bytes, so what was checked is what runs: nothing can swap a file in between.

    Args:
        bundle_dir: the bundle folder.
        manifest_sha256: the sha256 of manifest.json recorded when the bundle was stored (it pins every
            file's hash); None skips that check.
        model_sha256: the champion the bundle must package; None skips that check.
        version: the model version the bundle must package; None skips that check.
        tolerated: folder entries allowed besides the manifest's files.

    Raises:
        BundleIntegrityError: naming the file or field at fault.
    """
    root = Path(bundle_dir)
    path = root / MANIFEST
    if not path.is_file():
        raise BundleIntegrityError(f"{path} is missing: {bundle_dir} is not an edge bundle")
    manifest_bytes = path.read_bytes()
    actual = hashlib.sha256(manifest_bytes).hexdigest()
    if manifest_sha256 is not None and actual != manifest_sha256:
        raise BundleIntegrityError(
            f"sha256 of {path} is {actual}, the bundle was recorded with {manifest_sha256}; "
            "refusing the bundle"
        )
    manifest = read_manifest(root, manifest_bytes)
    for key, expected in (("model_sha256", model_sha256), ("version", version)):
        if expected is not None and manifest.get(key) != expected:
            raise BundleIntegrityError(
                f"{path}: {key} is {manifest.get(key)!r}, expected {expected!r}; refusing the bundle"
            )
    files = manifest.get("files")
    if not isinstance(files, dict) or manifest.get("model_file") not in files:
        raise BundleIntegrityError(f"{path} records no sha256 for the model file")
    for name in files:
        if not isinstance(name, str) or Path(name).name != name or name in (MANIFEST, ".", ".."):
            raise BundleIntegrityError(f"{path} names {name!r}, which is not a bundle file name")
    unknown = sorted(p.name for p in root.iterdir() if p.name not in files and p.name != MANIFEST)
    unknown = [name for name in unknown if name not in tolerated]
    if unknown:
        shown = ", ".join(str(root / name) for name in unknown[:3])
        more = f" (and {len(unknown) - 3} more)" if len(unknown) > 3 else ""
        raise BundleIntegrityError(
            f"bundle file {shown}{more} is not named in {MANIFEST}; refusing the bundle"
        )
    contents: dict[str, bytes] = {}
    for name, expected in sorted(files.items()):
        file = root / name
        if not file.is_file():
            raise BundleIntegrityError(f"bundle file {file} is missing")
        data = file.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if digest != expected:
            raise BundleIntegrityError(
                f"sha256 of {file} is {digest}, manifest.json says {expected}; refusing the bundle"
            )
        contents[name] = data
    return manifest, contents


def verify_bundle(bundle_dir: str | Path, **expected: Any) -> dict[str, Any]:
    """Check the whole bundle (see `verified_bundle`, which takes the same keywords); returns the manifest.

    Raises:
        BundleIntegrityError: the manifest is missing or unknown, a file is missing, altered or not named
            in the manifest, or the bundle is not the expected one.
    """
    return verified_bundle(bundle_dir, **expected)[0]


def load_verified_predictor(bundle_dir: str | Path, *, threads: int = 1, **expected: Any) -> Any:
    """The bundle's own `Predictor`, from its `predictor.py` run only after the whole bundle is checked.

    The bytes of `predictor.py` that were hashed are the bytes that run (nothing is imported from the
    folder, so no cache or neighbouring file is read). Keywords as for `verified_bundle`.

    Raises:
        BundleIntegrityError: the bundle fails a check (then none of its code has run).
    """
    manifest, contents = verified_bundle(bundle_dir, **expected)
    if PREDICTOR not in contents:
        raise BundleIntegrityError(f"{Path(bundle_dir) / MANIFEST} lists no {PREDICTOR}")
    path = Path(bundle_dir) / PREDICTOR
    name = f"_mlops_edge_predictor_{manifest['files'][PREDICTOR][:16]}"
    module = types.ModuleType(name, "an edge bundle's checked predictor.py")
    module.__file__ = str(path)
    sys.modules[name] = module  # dataclasses and pickling look a class's module up here
    try:
        exec(compile(contents[PREDICTOR], str(path), "exec"), module.__dict__)  # noqa: S102 - checked bytes
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module.Predictor(bundle_dir, threads=threads)


def _largest(dtype: Any) -> float:
    """The largest magnitude a numeric input of `dtype` holds (inf for a dtype that is not a float)."""
    return float(np.finfo(dtype).max) if np.issubdtype(dtype, np.floating) else math.inf


def _text(value: Any) -> str:
    if value is None or (isinstance(value, (float, np.floating)) and value != value):
        return ""
    return str(value)


class Predictor:
    """The bundle's ONNX model behind a `predict(rows)` that takes dicts keyed by feature name.

    Args:
        bundle_dir: the bundle folder (holding manifest.json, model.onnx, predictor.py, README.txt).
        threads: onnxruntime intra-op threads; 1 (the default) gives the lowest single-row latency.
        expected: `manifest_sha256`, `model_sha256`, `version`: what the bundle must be (see
            `verified_bundle`); unchecked when not given.

    Raises:
        BundleIntegrityError: a bundle file is missing, altered or not named in the manifest, or the
            bundle is not the expected one. Every file is checked before the model is read.
    """

    def __init__(self, bundle_dir: str | Path, *, threads: int = 1, **expected: Any) -> None:
        import onnxruntime as ort

        self.bundle_dir = Path(bundle_dir)
        self.manifest, contents = verified_bundle(self.bundle_dir, **expected)
        # The bytes that were hashed are the bytes that are loaded: nothing can swap the file in between.
        model_bytes = contents[self.manifest["model_file"]]
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
        self._largest = _largest(self._number_dtype)
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
            values = [row.get(n) for n in self._number_names]
            try:
                numbers[:] = values  # None becomes NaN
            except (TypeError, ValueError, OverflowError) as e:
                raise ValueError(f"numeric features {self._number_names} need numbers or None: {e}") from e
            cast = numbers.tolist()  # a list test is ~20x cheaper than np.isinf on a handful of values
            if math.inf in cast or -math.inf in cast:
                self._refuse_infinite([values])
            texts[:] = [v if type(v) is str else _text(v) for v in [row.get(n) for n in self._text_names]]
            return feeds
        feeds = {}
        if self._number_names:
            names = self._number_names
            columns = [[row.get(n) for row in rows] for n in names]
            try:
                # One conversion for the whole batch, shaped (features, rows, 1) so that each input is a
                # contiguous (rows, 1) view that onnxruntime takes without a copy.
                with np.errstate(over="ignore"):
                    numbers = np.array(columns, dtype=self._number_dtype).reshape(len(names), -1, 1)
            except (TypeError, ValueError, OverflowError) as e:
                raise ValueError(f"numeric features {names} need numbers or None: {e}") from e
            if np.isinf(numbers).any():
                self._refuse_infinite([[column[r] for column in columns] for r in range(len(rows))])
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

    def _refuse_infinite(self, rows: list[list[Any]]) -> None:
        """Raise a ValueError naming the first numeric value that is infinite (or too large) as an input."""
        for i, values in enumerate(rows):
            for j, name in enumerate(self._number_names):
                value = values[j]
                try:
                    finite = value is None or value != value or abs(float(value)) <= self._largest
                except (TypeError, ValueError, OverflowError):
                    finite = False
                if not finite:
                    where = f"row {i}, " if len(rows) > 1 else ""
                    raise ValueError(
                        f"{where}numeric feature {name!r} is {value!r}: only finite numbers up to "
                        f"{self._largest:.4g} in size are accepted (None for a missing value)"
                    )
        raise ValueError(f"numeric features {self._number_names}: an input is not a finite number")

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
    try:
        rows = json.loads(text, parse_constant=_NotFinite, parse_float=_json_float)
        batch = [rows] if isinstance(rows, dict) else rows
        _refuse_json_constants(batch)
    except ValueError as e:
        print(f"error: {argv[0]}: {e}", file=sys.stderr)
        return 2
    model = Predictor(Path(__file__).resolve().parent)
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


class _NotFinite(str):
    """A JSON `NaN`, `Infinity` or `-Infinity` literal, or a number too large for a float, as written."""


def _json_float(text: str) -> float | _NotFinite:
    value = float(text)
    return value if math.isfinite(value) else _NotFinite(text)


def _refuse_json_constants(batch: Any) -> None:
    """Raise a ValueError naming the first row field whose JSON value is not a finite number."""
    if not isinstance(batch, list) or not all(isinstance(row, dict) for row in batch):
        raise ValueError("expected a JSON object or a list of objects")
    for i, row in enumerate(batch):
        for key, value in row.items():
            if isinstance(value, _NotFinite):
                raise ValueError(
                    f"row {i}, field {key!r}: {value} is not a finite number (write null for a missing value)"
                )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
