"""Deployment: a fitted pipeline as one ONNX graph, and the small runtime that serves it.

* :func:`to_onnx` writes a fitted ``Pipeline([DeCAFTransformer(...), ..., classifier])``, or one that starts
  with a ``FeatureUnion`` of DeCAF branches (``make_ensemble``), as one ONNX graph from uint8 images to labels
  and scores, test-time augmentation included (needs torch, scikit-learn and skl2onnx: ``pip install
  "sk-decaf[export]"``); :func:`unsupported_steps` says what cannot be exported and why;
  :func:`register_converters` makes ``skl2onnx.to_onnx`` convert sk_decaf's estimators too.
* :mod:`sk_decaf.deploy.runtime` runs the graph with onnxruntime, numpy and Pillow only:
  :class:`OnnxPipeline` decodes and prepares images as the fitted pipeline did and returns its outputs.
  The module is one self-contained file: copy it next to the model where sk_decaf is not installed.
"""

from typing import TYPE_CHECKING, Any

from .runtime import OnnxPipeline, preprocess, read_metadata

if TYPE_CHECKING:  # loaded on first use at run time (below); type checkers see the real signatures
    from ._converters import register_converters
    from ._export import to_onnx, unsupported_steps

__all__ = ["to_onnx", "unsupported_steps", "register_converters", "OnnxPipeline", "preprocess", "read_metadata"]

# The exporter needs torch, scikit-learn and skl2onnx; the runtime must not. Loading the exporter on first use
# keeps ``from sk_decaf.deploy import OnnxPipeline`` free of them.
_EXPORTER = {"to_onnx": "._export", "unsupported_steps": "._export", "register_converters": "._converters"}


def __getattr__(name: str) -> Any:
    if name in _EXPORTER:
        import importlib

        return getattr(importlib.import_module(_EXPORTER[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
