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

Signatures: a bundle made with a signing key carries `model.sig` (OpenSSF model-signing, offline, over
every other file). Set `MLOPS_VERIFY_KEYS` to the trusted PEM public keys (comma-separated; several
for a key rotation) and `pip install model-signing pyopenssl`: a bundle is then loaded only when one of
them signed it, checked before any file is used. `MLOPS_SIGNING=required` (or a bundle built under
`signing: required`) refuses an unsigned bundle even without keys; `MLOPS_SIGNING=optional` lets an
unsigned one pass, `off` checks nothing. The same check guards the model a cloud bento serves.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import sys
import tempfile
import threading
import types
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

MANIFEST = "manifest.json"
PREDICTOR = "predictor.py"
BUNDLE_FORMAT = "mlops-edge-bundle/1"
# Entries a bundle folder may hold besides its manifest's files: Python's bytecode cache (written when a
# device imports predictor.py; no loader here reads it) and BentoML's record of a stored bundle.
TOLERATED = ("__pycache__", "model.yaml")
# Signatures (model-signing): the file, what a loader reads, and (named in messages) the signing key.
SIGNATURE_FILE = "model.sig"
SIGNING_VAR = "MLOPS_SIGNING"
VERIFY_KEYS_VAR = "MLOPS_VERIFY_KEYS"
SIGNING_KEY_VAR = "MLOPS_SIGNING_KEY"
SIGNING_MODES = ("required", "optional", "off")
_NUMPY_TYPES = {"float": np.float32, "double": np.float64, "int64": np.int64, "string": object}


class BundleIntegrityError(Exception):
    """A bundle file is missing, altered or unexpected, or the bundle is not the one expected: refused."""


class SignatureRefused(BundleIntegrityError):
    """An artifact's signature is missing, bad, by no trusted key, or cannot be checked: refused."""


class UnusableKeyError(SignatureRefused):
    """A key `MLOPS_VERIFY_KEYS` lists is not a file, or not a PEM EC public key."""


def signing_policy(required: bool = False) -> tuple[str, str]:
    """(mode, what set it) for a loader outside any environment: `MLOPS_SIGNING` (`required`, `optional`
    or `off`) when set; else `required` for an artifact built under `signing: required`; else `listed`:
    a signature is needed exactly when `MLOPS_VERIFY_KEYS` lists a key.

    Raises:
        SignatureRefused: `MLOPS_SIGNING` holds another value.
    """
    value = os.environ.get(SIGNING_VAR, "").strip().lower()
    if value and value not in SIGNING_MODES:
        raise SignatureRefused(f"{SIGNING_VAR}={value!r} is not one of {', '.join(SIGNING_MODES)}")
    if value:
        return value, f"{SIGNING_VAR}={value}"
    if required:
        return "required", "its build (made under `signing: required`)"
    return "listed", f"a loader with {VERIFY_KEYS_VAR} set"


def keys_to_check(policy: tuple[str, str], signed: bool, label: str, where: str) -> list[Path] | None:
    """The trusted keys to check a signature with; None when `policy` (see `signing_policy`; an
    environment's `signing` in the registry) lets the artifact pass unchecked. `label` names the
    artifact and `where` its signature file in messages.

    Raises:
        SignatureRefused: the policy refuses an unsigned artifact, or needs keys and none are listed.
        UnusableKeyError: a listed key is not a file.
    """
    mode, why = policy
    if mode == "off":
        return None
    keys = [Path(part.strip()) for part in os.environ.get(VERIFY_KEYS_VAR, "").split(",") if part.strip()]
    if not signed:
        if mode == "required" or (mode == "listed" and keys):
            raise SignatureRefused(
                f"{label} is not signed ({where} is missing) and {why} refuses unsigned artifacts; "
                f"sign it with {SIGNING_KEY_VAR} where it is made"
            )
        return None
    if not keys:
        if mode == "required":
            raise SignatureRefused(
                f"{label}: {why} must check {where}, but {VERIFY_KEYS_VAR} is not set; list the trusted "
                "PEM public keys there (comma-separated)"
            )
        return None
    missing = [str(k) for k in keys if not k.is_file()]
    if missing:
        which = "is not a file" if len(missing) == 1 else "are not files"
        raise UnusableKeyError(f"{label}: {VERIFY_KEYS_VAR} lists {', '.join(missing)}, which {which}")
    return keys


def verify_signature(
    folder: Path, signature: Path, keys: Sequence[Path], label: str, *, strict: bool = True
) -> None:
    """Accept when a key in `keys` made `signature` and every file it covers in `folder` is unchanged
    (`strict`: and `folder` holds no other file). model-signing's offline key path: no network.

    Raises:
        SignatureRefused: a file differs, the signature is malformed or by no key in `keys`, or
            model-signing is not installed.
        UnusableKeyError: a key is not a PEM EC public key.
    """
    try:
        import model_signing.verifying
        from cryptography.exceptions import InvalidSignature
    except ImportError as e:
        raise SignatureRefused(
            f"{label}: checking {signature} needs model-signing: `pip install model-signing pyopenssl`"
        ) from e
    rejected: list[str] = []
    for key in keys:
        try:
            config = model_signing.verifying.Config().use_elliptic_key_verifier(public_key=key)
        except (ValueError, TypeError) as e:
            raise UnusableKeyError(
                f"{label}: {VERIFY_KEYS_VAR} lists {key}, which is not a usable PEM EC public key: {e}"
            ) from e
        try:
            config.set_ignore_unsigned_files(not strict).verify(folder, signature)
            return
        except Exception as e:  # noqa: BLE001 - a malformed signature fails in many ways (JSON, protobuf)
            message = str(e)
            if isinstance(e, InvalidSignature) or message.startswith("Key mismatch"):
                rejected.append(str(key))  # made by another key: try the next one
                continue
            if message.startswith("Signature mismatch") or "Cannot use" in message:
                raise SignatureRefused(
                    f"{label}: its files do not match the signature {signature} made by {key}: it was "
                    f"changed after it was signed; refusing it ({_mismatch(message)})"
                ) from e
            raise SignatureRefused(
                f"{label}: {signature} is not a valid signature ({type(e).__name__}: {message[:300]}); "
                "refusing it"
            ) from e
    raise SignatureRefused(
        f"{label}: {signature} was not signed by any key in {VERIFY_KEYS_VAR} ({', '.join(rejected)}); "
        "refusing it (a rotated key? list its public key there)"
    )


def _mismatch(message: str) -> str:
    """model-signing's diff (which quotes digests as raw bytes) as the names of the files at fault."""
    changed = re.findall(r"Hash mismatch for \\?'([^'\\]+)", message)  # quoted `'` or `\'`
    parts = [f"changed: {', '.join(changed)}"] if changed else []
    for kind, names in re.findall(r"(Extra|Missing) files (?:found )?in model [^:]*: ([^'\"\]\\]+)", message):
        parts.append(f"{'not signed' if kind == 'Extra' else 'missing'}: {names}")
    return "; ".join(parts) if parts else message[:400]


def check_signed_files(files: Mapping[str, bytes], label: str, where: str, policy: tuple[str, str]) -> None:
    """Check, as `policy` says, the signature over files read into memory (from the folder `where`):
    `files` holds every file it must cover (one more or less is refused) and `model.sig` when signed.

    Raises:
        SignatureRefused: refused (unsigned where a signature is needed, changed, by no trusted key).
        UnusableKeyError: a key in `MLOPS_VERIFY_KEYS` cannot be used.
    """
    keys = keys_to_check(policy, SIGNATURE_FILE in files, label, f"{where}/{SIGNATURE_FILE}")
    if keys is None:
        return
    with tempfile.TemporaryDirectory(prefix="mlops-verify-") as tmp:
        folder, signature = Path(tmp) / "artifact", Path(tmp) / SIGNATURE_FILE
        folder.mkdir()
        for name, data in files.items():
            (signature if name == SIGNATURE_FILE else folder / name).write_bytes(data)
        try:
            verify_signature(folder, signature, keys, label)
        except SignatureRefused as e:
            raise type(e)(str(e).replace(str(signature), f"{where}/{SIGNATURE_FILE}")) from e


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
    signing: tuple[str, str] | None = None,
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Check the whole bundle before anything in it is used; returns the manifest and the checked bytes.

    In order: manifest.json against `manifest_sha256`, the manifest's `model_sha256` and `version`
    against the expected ones, the folder against the manifest (a file it does not name is refused,
    but for `model.sig` and the `tolerated` entries), the signature `model.sig` over the bytes read
    (as `signing` says), then every named file against its sha256. Callers use the returned bytes, so
    what was checked is what runs: nothing can swap a file in between.

    Args:
        bundle_dir: the bundle folder.
        manifest_sha256: the sha256 of manifest.json recorded when the bundle was stored (it pins every
            file's hash); None skips that check.
        model_sha256: the champion the bundle must package; None skips that check.
        version: the model version the bundle must package; None skips that check.
        tolerated: folder entries allowed besides the manifest's files.
        signing: (mode, what set it), see `keys_to_check`: the policy of the process that loads the
            bundle; None: `signing_policy` (`MLOPS_SIGNING`, else the manifest's `signing_required`).

    Raises:
        BundleIntegrityError: naming the file or field at fault.
        SignatureRefused: the signature is missing where one is needed, bad, or by no trusted key.
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
    unknown = sorted(p.name for p in root.iterdir() if p.name not in (*files, MANIFEST, SIGNATURE_FILE))
    unknown = [name for name in unknown if name not in tolerated]
    if unknown:
        shown = ", ".join(str(root / name) for name in unknown[:3])
        more = f" (and {len(unknown) - 3} more)" if len(unknown) > 3 else ""
        raise BundleIntegrityError(
            f"bundle file {shown}{more} is not named in {MANIFEST}; refusing the bundle"
        )
    contents: dict[str, bytes] = {}
    for name in sorted(files):
        if not (root / name).is_file():
            raise BundleIntegrityError(f"bundle file {root / name} is missing")
        contents[name] = (root / name).read_bytes()
    signed = {**contents, MANIFEST: manifest_bytes}
    if (root / SIGNATURE_FILE).is_file():
        signed[SIGNATURE_FILE] = (root / SIGNATURE_FILE).read_bytes()
    policy = signing or signing_policy(manifest.get("signing_required") is True)
    check_signed_files(signed, f"edge bundle {root}", str(root), policy)
    for name, data in contents.items():
        digest = hashlib.sha256(data).hexdigest()
        if digest != files[name]:
            raise BundleIntegrityError(
                f"sha256 of {root / name} is {digest}, manifest.json says {files[name]}; refusing the bundle"
            )
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
    folder, so no cache or neighbouring file is read). Keywords as for `verified_bundle`; the bundle's
    `Predictor` checks it again, with the same `signing`.

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
    # The bundle's own Predictor checks it again under the same policy (a bundle's predictor.py from
    # before signatures takes no `signing`).
    signing = expected.get("signing")
    forward = {"signing": signing} if signing and hasattr(module, "SIGNATURE_FILE") else {}
    return module.Predictor(bundle_dir, threads=threads, **forward)


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
        prediction_log: a `prediction_log.PredictionLog` (that file sits beside this one in the bento;
            copy it beside the bundle on a device): every prediction is then queued to it, with its
            probabilities, the row's entity and timestamp and this bundle's version. None: no logging.
        expected: `manifest_sha256`, `model_sha256`, `version`: what the bundle must be (see
            `verified_bundle`); unchecked when not given. `signing`: the signature policy, by default
            `signing_policy()` (`MLOPS_SIGNING`, the bundle's own, `MLOPS_VERIFY_KEYS`).

    Raises:
        BundleIntegrityError: a bundle file is missing, altered or not named in the manifest, or the
            bundle is not the expected one (`SignatureRefused`: its signature is refused). Every file
            is checked before the model is read.
    """

    def __init__(
        self, bundle_dir: str | Path, *, threads: int = 1, prediction_log: Any = None, **expected: Any
    ) -> None:
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
        self.prediction_log = prediction_log

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
        if self.prediction_log is not None:
            return self._logged(rows)[0]
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
        if self.prediction_log is not None:
            return self._logged(rows)  # type: ignore[return-value]
        labels, probabilities = self._session.run(self._prediction + self._probabilities, self._feeds(rows))
        return labels.ravel().tolist(), probabilities.tolist()

    def predict_proba(self, rows: dict[str, Any] | Sequence[dict[str, Any]]) -> list[list[float]]:
        """Class probabilities per row, in the order of `self.classes` (classification only)."""
        if self._probabilities is None:
            raise ValueError(f"predict_proba needs a classification bundle; this one is {self.task}")
        if not isinstance(rows, dict) and len(rows) == 0:
            return []
        if self.prediction_log is not None:
            return self._logged(rows)[1]  # type: ignore[return-value]
        return self._session.run(self._probabilities, self._feeds(rows))[0].tolist()  # type: ignore[no-any-return]

    def _logged(self, rows: dict[str, Any] | Sequence[dict[str, Any]]) -> tuple[list[Any], list[Any] | None]:
        """Labels (and a classifier's probabilities) from one model run, queued to `prediction_log`."""
        results = self._session.run(self._prediction + (self._probabilities or []), self._feeds(rows))
        labels = results[0].ravel().tolist()
        probabilities = results[1].tolist() if self._probabilities is not None else None
        version, classes = self.manifest["version"], self.classes or None
        self.prediction_log.log(rows, labels, probabilities, version=version, classes=classes)
        return labels, probabilities


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
