"""Signed model versions (CONTRACT section 7): OpenSSF `model-signing` with a local EC key, offline.

A version's files (the model, its card as JSON and Markdown, its extra files) are signed when the
version is made; the signature is the file `model.sig`, stored with the version, in its mirror and in
its exports. Only the private-key path of `model-signing` is used: no Sigstore, no transparency log,
no network. The keys come from the environment variables:

- `MLOPS_SIGNING_KEY`: path of a PEM private key (EC P-256, P-384 or P-521) used to sign;
- `MLOPS_VERIFY_KEYS`: comma-separated paths of PEM public keys; a signature made by any of them
  verifies, so a key is rotated by listing the new key beside the old one, then dropping the old one.

What is done follows the active environment's `signing` setting (`environments.active().signing`):

- `off` (the default): nothing is signed or checked.
- `optional`: sign when `MLOPS_SIGNING_KEY` is set; check a signature that is present when
  `MLOPS_VERIFY_KEYS` is set (a bad signature is always refused); an unsigned version passes.
- `required`: saving needs `MLOPS_SIGNING_KEY`; loading refuses a version that is unsigned, badly
  signed, or cannot be checked because no verification key is configured.

The check runs before the model is unpickled or stored; `model_signing` is imported only here, inside
the functions, so loading the definitions does not import it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from mlops_dagster.errors import IntegrityError, RegistryError

SIGNATURE_FILE = "model.sig"
SIGNING_KEY_VAR = "MLOPS_SIGNING_KEY"
VERIFY_KEYS_VAR = "MLOPS_VERIFY_KEYS"
# Files beside a version that the signature does not cover: itself, the mirror's manifest (written
# after it, and checked against the signed files' sha256s), and BentoML's own `model.yaml`.
UNSIGNED_FILES = frozenset({SIGNATURE_FILE, "manifest.json", "model.yaml"})


class SignatureError(IntegrityError):
    """A version's signature is missing, bad, or by no trusted key: the version is refused."""


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


def signing_key(environ: Mapping[str, str] | None = None) -> Path | None:
    """The private key `MLOPS_SIGNING_KEY` names, or None when it is unset or empty."""
    value = (os.environ if environ is None else environ).get(SIGNING_KEY_VAR, "").strip()
    return Path(value) if value else None


def verify_keys(environ: Mapping[str, str] | None = None) -> list[Path]:
    """The public keys `MLOPS_VERIFY_KEYS` lists (comma-separated), in order; empty when unset."""
    value = (os.environ if environ is None else environ).get(VERIFY_KEYS_VAR, "")
    return [Path(part.strip()) for part in value.split(",") if part.strip()]


def _signed_names(files: Mapping[str, bytes]) -> list[str]:
    return sorted(name for name in files if name not in UNSIGNED_FILES)


def sign_files(files: Mapping[str, bytes], what: str) -> bytes | None:
    """Sign a version's files with `MLOPS_SIGNING_KEY`, as the policy says; returns `model.sig`'s bytes.

    Args:
        files: File name -> bytes; `model.sig`, `manifest.json` and `model.yaml` are not signed.
        what: The version, for messages (`churn:0123...`).

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
                f"cannot save model version {what}: {_env_label()} needs every version signed, but "
                f"{SIGNING_KEY_VAR} is not set; set it to the path of a PEM EC private key "
                f"(and list its public key in {VERIFY_KEYS_VAR} where the version is loaded)"
            )
        return None
    if not key.is_file():
        raise SigningConfigError(f"cannot sign model version {what}: {SIGNING_KEY_VAR}={key} is not a file")
    import model_signing.signing

    with tempfile.TemporaryDirectory(prefix="mlops-sign-") as tmp:
        folder = Path(tmp) / "version"
        folder.mkdir()
        for name in _signed_names(files):
            (folder / name).write_bytes(files[name])
        signature = Path(tmp) / SIGNATURE_FILE
        try:
            config = model_signing.signing.Config().use_elliptic_key_signer(private_key=key)
        except (ValueError, TypeError) as e:
            raise SigningConfigError(
                f"cannot sign model version {what}: {SIGNING_KEY_VAR}={key} is not a usable PEM EC "
                f"private key (P-256, P-384 or P-521, unencrypted): {e}"
            ) from e
        config.sign(folder, signature)
        return signature.read_bytes()


def _keys_to_check(has_signature: bool, what: str, where: str) -> list[Path] | None:
    """The keys to check a version with, or None when the policy lets it pass unchecked.

    Raises:
        SignatureError: `required`, and the version is unsigned or no key is configured.
    """
    mode = policy()
    if mode == "off":
        return None
    if not has_signature:
        if mode == "required":
            raise SignatureError(
                f"model version {what} is not signed ({where} is missing) and {_env_label()} refuses "
                f"unsigned versions; sign it with {SIGNING_KEY_VAR} when it is saved"
            )
        return None
    keys = verify_keys()
    if not keys:
        if mode == "required":
            raise SignatureError(
                f"model version {what}: {_env_label()} must check {where}, but {VERIFY_KEYS_VAR} is "
                "not set; list the trusted PEM public keys there (comma-separated)"
            )
        return None
    missing = [str(k) for k in keys if not k.is_file()]
    if missing:
        raise SigningConfigError(
            f"model version {what}: {VERIFY_KEYS_VAR} lists {', '.join(missing)}, which "
            f"{'is not a file' if len(missing) == 1 else 'are not files'}"
        )
    return keys


def _verify(folder: Path, signature: Path, keys: list[Path], what: str, *, strict: bool) -> None:
    """Accept when a key in `keys` signed `signature` and every signed file in `folder` matches it.

    `strict`: also refuse files in `folder` that the signature does not cover (besides
    `UNSIGNED_FILES`, which are never in `folder` then).
    """
    import model_signing.verifying

    rejected: list[str] = []
    for key in keys:
        try:
            config = model_signing.verifying.Config().use_elliptic_key_verifier(public_key=key)
        except (ValueError, TypeError) as e:
            raise SigningConfigError(
                f"model version {what}: {VERIFY_KEYS_VAR} lists {key}, which is not a usable PEM EC "
                f"public key: {e}"
            ) from e
        try:
            config.set_ignore_unsigned_files(not strict).verify(folder, signature)
            return
        except ValueError as e:  # a wrong key raises "Key mismatch"; changed files "Signature mismatch"
            message = str(e)
            if message.startswith("Key mismatch"):
                rejected.append(str(key))
                continue
            if message.startswith("Signature mismatch") or "Cannot use" in message:
                raise SignatureError(
                    f"model version {what}: its files do not match the signature {signature} made by "
                    f"{key}: the version was changed after it was signed; refusing it "
                    f"({message[:400]})"
                ) from e
            raise SignatureError(
                f"model version {what}: {signature} is not a valid signature ({message[:300]}); refusing it"
            ) from e
        except Exception as e:  # noqa: BLE001 - a malformed bundle fails in many ways (JSON, protobuf)
            from cryptography.exceptions import InvalidSignature

            if isinstance(e, InvalidSignature):
                rejected.append(str(key))
                continue
            raise SignatureError(
                f"model version {what}: {signature} is not a valid signature "
                f"({type(e).__name__}: {str(e)[:300]}); refusing it"
            ) from e
    raise SignatureError(
        f"model version {what}: {signature} was not signed by any key in {VERIFY_KEYS_VAR} "
        f"({', '.join(rejected)}); refusing it (a rotated key? list its public key there)"
    )


def check_folder(folder: Path, what: str) -> None:
    """Check the signature of a version folder on disk (the local model store), as the policy says.

    Files the signature does not cover (BentoML's `model.yaml`) are ignored; every file it covers
    must be there and unchanged. Nothing is unpickled.

    Raises:
        SignatureError: refused (unsigned under `required`, changed, or signed by no trusted key).
        SigningConfigError: a key in `MLOPS_VERIFY_KEYS` cannot be used.
    """
    signature = folder / SIGNATURE_FILE
    keys = _keys_to_check(signature.is_file(), what, str(signature))
    if keys is not None:
        _verify(folder, signature, keys, what, strict=False)


def check_files(files: Mapping[str, bytes], what: str, where: str) -> None:
    """Check the signature of a version's files read into memory (a mirror or an export), before they
    are stored or unpickled; every file but `UNSIGNED_FILES` must be covered by the signature.

    Args:
        files: File name -> bytes, `model.sig` among them when signed.
        what: The version, for messages.
        where: The folder they were read from, for messages.

    Raises:
        SignatureError: refused (unsigned under `required`, changed, or signed by no trusted key).
        SigningConfigError: a key in `MLOPS_VERIFY_KEYS` cannot be used.
    """
    keys = _keys_to_check(SIGNATURE_FILE in files, what, f"{where}/{SIGNATURE_FILE}")
    if keys is None:
        return
    with tempfile.TemporaryDirectory(prefix="mlops-verify-") as tmp:
        folder = Path(tmp) / "version"
        folder.mkdir()
        for name in _signed_names(files):
            (folder / name).write_bytes(files[name])
        signature = Path(tmp) / SIGNATURE_FILE
        signature.write_bytes(files[SIGNATURE_FILE])
        try:
            _verify(folder, signature, keys, what, strict=True)
        except SignatureError as e:
            raise SignatureError(str(e).replace(str(signature), f"{where}/{SIGNATURE_FILE}")) from e
