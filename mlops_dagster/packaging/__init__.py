"""Serving packages for the champion: the ONNX edge bundle (`onnx_bundle`, `edge_store`, `parity`) and
the cloud bento (`bento`, serving the sklearn champion).

Importing this package imports no ML library: skl2onnx, onnx, onnxruntime, sklearn and bentoml load
inside the functions that use them.
"""

from mlops_dagster.packaging.edge_store import store_bundle_in_bentoml
from mlops_dagster.packaging.onnx_bundle import (
    build_manifest,
    convert_to_onnx,
    verify_bundle,
    write_bundle,
)
from mlops_dagster.packaging.parity import ParityResult, check_parity, load_predictor

__all__ = [
    "ParityResult",
    "build_manifest",
    "check_parity",
    "convert_to_onnx",
    "load_predictor",
    "store_bundle_in_bentoml",
    "verify_bundle",
    "write_bundle",
]
