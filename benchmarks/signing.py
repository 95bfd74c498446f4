"""Signing model versions and edge bundles: what `model-signing` costs, against hashing the same files.

Run from the repo root:

    .venv/bin/python benchmarks/signing.py [--trees 10 200] [--rounds 20]

For a RandomForest of each size in `--trees` (its joblib file, a card, a markdown card and a drift
profile: the files of a version), one P-256 key made for the run:

(a) baseline: sha256 of every file, which every load already does.
(b) sign:     `registry.signing.sign_files` (what `save_version` adds under `signing: required`).
(c) check, store:  `check_folder` on the version's folder (every load from the local store).
(d) check, memory: `check_files` on the files in memory (a mirror fetch or an import).

A sklearn bento checks its model's folder as (d) does, once per worker when it starts.

Then the same forests as edge bundles (a pipeline with a ColumnTransformer, converted to ONNX, written
by `write_bundle`: model.onnx, manifest.json, predictor.py, README.txt), where a device or an ONNX
bento loads them:

(e) hashes:    `verified_bundle` with signatures off (the manifest's sha256s, as before signing).
(f) sign:      `sign_files` over the bundle's files (what `write_bundle` adds with a key).
(g) check:     `verified_bundle` with `MLOPS_VERIFY_KEYS` set: the signature, then the sha256s.
(h) load:      `Predictor(bundle)` with the check: everything a device pays, onnxruntime included.

Warmed up once, then `--rounds` rounds; the tables show medians in ms and ratios.
"""

import os

os.environ["BENTOML_DO_NOT_TRACK"] = "true"
os.environ["GX_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"

import argparse  # noqa: E402
import hashlib  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _keys(folder: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (folder / "key.pem").write_bytes(private)
    (folder / "key.pub").write_bytes(public)
    os.environ["MLOPS_SIGNING_KEY"] = str(folder / "key.pem")
    os.environ["MLOPS_VERIFY_KEYS"] = str(folder / "key.pub")


def _median_ms(fn: Callable[[], object], rounds: int) -> float:
    fn()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trees", type=int, nargs="+", default=[10, 200])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()

    import numpy as np
    from sklearn.ensemble import RandomForestClassifier

    from mlops_dagster.environments import ActiveEnvironment, activate
    from mlops_dagster.registry.signing import check_files, check_folder, sign_files
    from mlops_dagster.registry.store import serialize
    from mlops_dagster.spec.environments import EnvironmentSpec

    work = Path(tempfile.mkdtemp(prefix="mlops-bench-signing-"))
    os.environ["DAGSTER_HOME"] = str(work)
    _keys(work)
    activate(ActiveEnvironment("bench", EnvironmentSpec(name="bench", signing="required")))
    x = np.random.default_rng(0).normal(size=(2000, 8))
    y = (x[:, 0] > 0).astype(int)

    print(f"Machine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"{args.rounds} rounds after one warm-up; P-256 key; medians in ms\n")
    print("| model.joblib | (a) sha256 | (b) sign | (c) check, store | (d) check, memory | (b)/(a) |", end="")
    print(" (c)/(a) |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for trees in args.trees:
        model = RandomForestClassifier(n_estimators=trees, random_state=0).fit(x, y)
        files = {
            "model.joblib": serialize(model),
            "model_card.json": b'{"metrics": {}}' * 50,
            "model_card.md": b"# card\n" * 100,
            "drift_profile.json": b"{}" * 2000,
        }
        signature = sign_files(files, f"bench:{trees}")
        assert signature is not None
        folder = work / f"v{trees}"
        folder.mkdir()
        for name, data in {**files, "model.sig": signature}.items():
            (folder / name).write_bytes(data)
        signed = {**files, "model.sig": signature}
        hashed = _median_ms(lambda f=files: [hashlib.sha256(b).hexdigest() for b in f.values()], args.rounds)
        sign = _median_ms(lambda f=files: sign_files(f, "bench"), args.rounds)
        store = _median_ms(lambda d=folder: check_folder(d, "bench"), args.rounds)
        memory = _median_ms(lambda f=signed, d=folder: check_files(f, "bench", str(d)), args.rounds)
        size = len(files["model.joblib"]) / 1e6
        print(
            f"| {size:.2f} MB ({trees} trees) | {hashed:.3f} | {sign:.2f} | {store:.2f} | {memory:.2f} "
            f"| {sign / hashed:.0f}x | {store / hashed:.0f}x |"
        )
    _bundles(args, work)


def _bundles(args: argparse.Namespace, work: Path) -> None:
    """The second table: edge bundles of the same forests."""
    import numpy as np
    import pandas as pd

    from mlops_dagster.packaging.edge_predictor import Predictor, verified_bundle
    from mlops_dagster.packaging.onnx_bundle import SIGNATURE_FILE, convert_to_onnx, write_bundle
    from mlops_dagster.registry.signing import sign_files
    from mlops_dagster.spec.models import PipelineSpec
    from mlops_dagster.training.train import train_candidate

    rng = np.random.default_rng(0)
    n = 2000
    data = pd.DataFrame({"id": np.arange(n), "ts": pd.date_range("2026-01-01", periods=n, freq="min")})
    for i in range(7):
        data[f"x{i}"] = rng.normal(size=n)
    data["plan"] = rng.choice(["basic", "pro", "team"], n)
    data["y"] = (data["x0"] > 0).astype(int)
    features = [*(f"x{i}" for i in range(7)), "plan"]
    print("\n| model.onnx | (e) hashes | (f) sign | (g) check | (h) load | (g)/(e) | (g) - (e) |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for trees in args.trees:
        spec = PipelineSpec.model_validate(
            {
                "name": "bench",
                "dataset": {"source": {"uri": "x.parquet"}, "entity": "id", "timestamp": "ts", "label": "y"},
                "model": {
                    "task": "classification",
                    "estimator": "sklearn.ensemble.RandomForestClassifier",
                    "params": {"n_estimators": trees, "random_state": 0},
                    "metric": "roc_auc",
                },
            }
        )
        result = train_candidate(spec, data, features)
        bundle = write_bundle(
            work / f"bundle{trees}",
            convert_to_onnx(result.model, result.schema, "classification"),
            pipeline="bench",
            version="v",
            model_sha256="0" * 64,
            features=result.features,
            feature_schema=result.schema,
            task="classification",
            classes=result.model.classes_,
        )
        assert (bundle / SIGNATURE_FILE).is_file()
        files = {p.name: p.read_bytes() for p in bundle.iterdir() if p.name != SIGNATURE_FILE}
        hashes = _median_ms(lambda b=bundle: verified_bundle(b, signing=("off", "bench")), args.rounds)
        sign = _median_ms(
            lambda f=files: sign_files(f, "bench", kind="edge bundle", unsigned=frozenset()), args.rounds
        )
        check = _median_ms(lambda b=bundle: verified_bundle(b), args.rounds)
        load = _median_ms(lambda b=bundle: Predictor(b), args.rounds)
        size = len(files["model.onnx"]) / 1e6
        print(
            f"| {size:.2f} MB ({trees} trees) | {hashes:.2f} | {sign:.2f} | {check:.2f} | {load:.2f} "
            f"| {check / hashes:.0f}x | {check - hashes:.2f} |"
        )


if __name__ == "__main__":
    main()
