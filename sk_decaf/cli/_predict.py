"""``sk-decaf predict MODEL IMAGE...``: the label and score of each image, from a model written by ``to_onnx``.

The work is :mod:`sk_decaf.deploy.runtime`'s, which needs onnxruntime, numpy and Pillow only.
"""

from __future__ import annotations

from ..deploy.runtime import add_predict_arguments, run_predict
from ._common import Subparsers


def add_predict_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "predict",
        help="label images with an exported model (onnxruntime, numpy and Pillow only)",
        description="Print 'image<TAB>label<TAB>score' for each image: the score is the predicted "
        "class's probability when the model has predict_proba, else its decision "
        "value. The model's preprocessing is read from the model file.",
    )
    add_predict_arguments(p)
    p.set_defaults(func=run_predict)
