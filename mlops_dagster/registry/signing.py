"""Signed artifacts (CONTRACT section 7): OpenSSF `model-signing` with a local EC key, offline.

A model version's files (the model, its card as JSON and Markdown, its extra files) are signed when the
version is made; the signature is the file `model.sig`, stored with the version, in its mirror and in
its exports. An edge bundle is signed the same way when it is written (`kind="edge bundle"`, over all
its files), and a bento carries the signed folder of the model it serves (the version, or the bundle).
Only the private-key path of `model-signing` is used: no Sigstore, no transparency log, no network.
The keys come from the environment variables:

- `MLOPS_SIGNING_KEY`: path of a PEM private key (EC P-256, P-384 or P-521) used to sign;
- `MLOPS_VERIFY_KEYS`: comma-separated paths of PEM public keys; a signature made by any of them
  verifies, so a key is rotated by listing the new key beside the old one, then dropping the old one.

What is done follows the active environment's `signing` setting (`environments.active().signing`):

- `off` (the default): nothing is signed or checked.
- `optional`: sign when `MLOPS_SIGNING_KEY` is set; check a signature that is present when
  `MLOPS_VERIFY_KEYS` is set (a bad signature is always refused); an unsigned artifact passes.
- `required`: saving needs `MLOPS_SIGNING_KEY`; loading refuses an artifact that is unsigned, badly
  signed, or cannot be checked because no verification key is configured. Bentos and bundles made
  here record it, so that they refuse to load unsigned where no environment is declared.

The check runs before the model is unpickled or stored. Its core (`keys_to_check`, the model-signing
verification) is `packaging.edge_predictor`'s, which bundles and bentos carry to check themselves where
no environment is declared; this module gives it the environment's policy and the registry's errors.
`model_signing` is imported only inside functions, so loading the definitions does not import it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from mlops_dagster.errors import IntegrityError, RegistryError

SIGNATURE_FILE = "model.sig"
SIGNING_KEY_VAR = "MLOPS_SIGNING_KEY"
VERIFY_KEYS_VAR = "MLOPS_VERIFY_KEYS"
# Files beside a version that the signature does not cover: itself, the mirror's manifest (written
# after it, and checked against the signed files' sha256s), and BentoML's own `model.yaml`.
UNSIGNED_FILES = frozenset({SIGNATURE_FILE, "manifest.json", "model.yaml"})
VERSION = "model version"


class SignatureError(IntegrityError):
    """An artifact's signature is missing, bad, or by no trusted key: the artifact is refused."""


class SigningConfigError(RegistryError):
    """Signing is required or asked for, but the keys in the environment cannot be used."""


def policy() -> str:
    """The active environment's `signing`: `required`, `optional` or `off`."""
    from mlops_dagster.environments import active

    return active().signing


def _env_label() -> str:
    from mlops_dagster.environments import active

    env = active()
    return f"environment {env.name or 'default'!r} (signing: {env.signing})"


def host_policy() -> tuple[str, str]:
    """(the active environment's `signing`, its description): the `signing` argument with which this
    process checks a bundle through `packaging.edge_predictor`."""
    return policy(), _env_label()


@contextmanager
def refusals() -> Iterator[None]:
    """The standalone check's refusals as the registry's errors: an unusable key is a
    `SigningConfigError`, any other refusal a `SignatureError`."""
    from mlops_dagster.packaging.edge_predictor import SignatureRefused, UnusableKeyError

    try:
        yield
    except UnusableKeyError as e:
        raise SigningConfigError(str(e)) from e
    except SignatureRefused as e:
        raise SignatureError(str(e)) from e


def signing_key(environ: Mapping[str, str] | None = None) -> Path | None:
    """The private key `MLOPS_SIGNING_KEY` names, or None when it is unset or empty."""
    value = (os.environ if environ is None else environ).get(SIGNING_KEY_VAR, "").strip()
    return Path(value) if value else None


def verify_keys(environ: Mapping[str, str] | None = None) -> list[Path]:
    """The public keys `MLOPS_VERIFY_KEYS` lists (comma-separated), in order; empty when unset."""
    value = (os.environ if environ is None else environ).get(VERIFY_KEYS_VAR, "")
    return [Path(part.strip()) for part in value.split(",") if part.strip()]


def _signed(files: Mapping[str, bytes], unsigned: frozenset[str]) -> dict[str, bytes]:
    return {name: files[name] for name in sorted(files) if name not in unsigned | {SIGNATURE_FILE}}


def sign_files(
    files: Mapping[str, bytes], what: str, *, kind: str = VERSION, unsigned: frozenset[str] = UNSIGNED_FILES
) -> bytes | None:
    """Sign an artifact's files with `MLOPS_SIGNING_KEY`, as the policy says; returns `model.sig`'s bytes.

    Args:
        files: File name -> bytes; the names in `unsigned` (and `model.sig`) are not signed.
        what: The artifact, for messages (`churn:0123...`).
        kind: What it is, for messages: `model version`, `edge bundle`.
        unsigned: Names left out of the signature: for a version, `model.sig`, the mirror's
            `manifest.json` and `model.yaml`; a bundle signs its manifest too.

    Returns:
        The signature, or None when nothing is to be signed (`off`, or `optional` without a key).

    Raises:
        SigningConfigError: `required` without `MLOPS_SIGNING_KEY`, or the key cannot be used.
    """
    mode = policy()
    if mode == "off":
        return None
    key = signing_key()
    if key is None:
        if mode == "required":
            raise SigningConfigError(
                f"cannot save {kind} {what}: {_env_label()} needs every artifact signed, but "
                f"{SIGNING_KEY_VAR} is not set; set it to the path of a PEM EC private key "
                f"(and list its public key in {VERIFY_KEYS_VAR} where the artifact is loaded)"
            )
        return None
    if not key.is_file():
        raise SigningConfigError(f"cannot sign {kind} {what}: {SIGNING_KEY_VAR}={key} is not a file")
    import model_signing.signing

    with tempfile.TemporaryDirectory(prefix="mlops-sign-") as tmp:
        folder = Path(tmp) / "artifact"
        folder.mkdir()
        for name, data in _signed(files, unsigned).items():
            (folder / name).write_bytes(data)
        signature = Path(tmp) / SIGNATURE_FILE
        try:
            config = model_signing.signing.Config().use_elliptic_key_signer(private_key=key)
        except (ValueError, TypeError) as e:
            raise SigningConfigError(
                f"cannot sign {kind} {what}: {SIGNING_KEY_VAR}={key} is not a usable PEM EC "
                f"private key (P-256, P-384 or P-521, unencrypted): {e}"
            ) from e
        config.sign(folder, signature)
        return signature.read_bytes()


def check_folder(folder: Path, what: str, *, kind: str = VERSION) -> None:
    """Check the signature of a version folder on disk (the local model store), as the policy says.

    Files the signature does not cover (BentoML's `model.yaml`) are ignored; every file it covers
    must be there and unchanged. Nothing is unpickled.

    Raises:
        SignatureError: refused (unsigned under `required`, changed, or signed by no trusted key).
        SigningConfigError: a key in `MLOPS_VERIFY_KEYS` cannot be used.
    """
    from mlops_dagster.packaging.edge_predictor import keys_to_check, verify_signature

    signature = folder / SIGNATURE_FILE
    with refusals():
        keys = keys_to_check(host_policy(), signature.is_file(), f"{kind} {what}", str(signature))
        if keys is not None:
            verify_signature(folder, signature, keys, f"{kind} {what}", strict=False)


def check_files(
    files: Mapping[str, bytes],
    what: str,
    where: str,
    *,
    kind: str = VERSION,
    unsigned: frozenset[str] = UNSIGNED_FILES,
) -> None:
    """Check the signature of an artifact's files read into memory (a mirror or an export), before they
    are stored or unpickled; every file but those in `unsigned` must be covered by the signature.

    Args:
        files: File name -> bytes, `model.sig` among them when signed.
        what: The artifact, for messages.
        where: The folder they were read from, for messages.
        kind, unsigned: As for `sign_files`.

    Raises:
        SignatureError: refused (unsigned under `required`, changed, or signed by no trusted key).
        SigningConfigError: a key in `MLOPS_VERIFY_KEYS` cannot be used.
    """
    from mlops_dagster.packaging.edge_predictor import check_signed_files

    signed = _signed(files, unsigned)
    if SIGNATURE_FILE in files:
        signed[SIGNATURE_FILE] = files[SIGNATURE_FILE]
    with refusals():
        check_signed_files(signed, f"{kind} {what}", where, host_policy())
