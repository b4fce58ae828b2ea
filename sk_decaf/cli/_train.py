"""``sk-decaf train --data DIR -o model.onnx``: fit the recommended pipeline on an image folder and export it.

The pipeline is ``DeCAFTransformer -> SignedSqrt -> LinearSVC`` (Azizpour et al.'s recipe); its layer is chosen
by stratified cross-validation as in ``sk-decaf demo``, every image going through the network once thanks to
an activation cache, and the refitted best pipeline is written with :func:`sk_decaf.to_onnx`.
"""

import os
import tempfile
import time

import numpy as np

from ._common import add_backbone_options, parse_layer, transformer_kwargs


def add_train_parser(sub):
    p = sub.add_parser(
        "train",
        help="fit DeCAF -> SignedSqrt -> LinearSVC on an image folder, export it to ONNX",
        description="Fit the recommended pipeline (DeCAFTransformer -> SignedSqrt -> LinearSVC) on "
        "DIR/<class>/<image>, choose its layer by stratified cross-validation, report "
        "the CV accuracy and write the refitted pipeline as one ONNX model, which "
        "'sk-decaf predict' runs without torch or scikit-learn.",
    )
    p.add_argument("--data", metavar="DIR", required=True, help="image folder, one sub-folder per class")
    p.add_argument("-o", "--output", required=True, metavar="MODEL", help="the .onnx file to write")
    p.add_argument(
        "--layers",
        nargs="+",
        type=parse_layer,
        default=None,
        help="layers to choose from (default: the 5th, 3rd and 2nd last, as 'sk-decaf demo')",
    )
    p.add_argument(
        "--cv", type=int, default=5, help="stratified folds, at most the smallest class's size (default: %(default)s)"
    )
    p.add_argument("-C", type=float, default=1.0, help="LinearSVC regularisation (default: %(default)s)")
    add_backbone_options(p)
    p.set_defaults(func=run_train)


def run_train(args):
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import Pipeline
    from sklearn.svm import LinearSVC

    from ..datasets import load_image_folder
    from ..deploy import to_onnx
    from ..transformers import DeCAFTransformer, SignedSqrt, list_layers

    data = load_image_folder(args.data)
    labels = np.asarray(data.target_names, dtype=object)[data.target]  # the model outputs class names
    smallest = int(np.bincount(data.target).min())
    if len(data.target_names) < 2 or smallest < 2:
        raise ValueError(f"sk-decaf train needs at least 2 classes of at least 2 images each in {args.data!r}.")
    folds = min(args.cv, smallest)
    available = list_layers(args.backbone)
    layers = args.layers or [available[i] for i in (-5, -3, -2) if len(available) >= -i]
    print(f"sk-decaf train: {len(data.paths)} images, {len(data.target_names)} classes from {args.data}")
    print(
        f"DeCAFTransformer({args.backbone!r}) -> SignedSqrt -> LinearSVC(C={args.C}); {folds}-fold stratified "
        f"CV over layers {', '.join(map(str, layers))}\n"
    )
    with tempfile.TemporaryDirectory(prefix="sk_decaf_train_") as tmp:
        cache = args.cache or os.path.join(tmp, "activations.sqlite")
        pipe = Pipeline(
            [
                ("decaf", DeCAFTransformer(cache=cache, **transformer_kwargs(args))),
                ("sqrt", SignedSqrt()),
                ("svm", LinearSVC(C=args.C)),
            ]
        )
        grid = GridSearchCV(
            pipe, {"decaf__layer": layers}, error_score="raise", cv=StratifiedKFold(folds, shuffle=True, random_state=0)
        )
        start = time.perf_counter()
        grid.fit(data.paths, labels)
        fitted = time.perf_counter() - start
        results = grid.cv_results_
        for layer, mean, std in zip(
            results["param_decaf__layer"], results["mean_test_score"], results["std_test_score"]
        ):
            mark = "  <- best" if layer == grid.best_params_["decaf__layer"] else ""
            print(f"  {str(layer):<16} accuracy {mean:.3f} +- {std:.3f}{mark}")
        print(
            f"\nCV accuracy {grid.best_score_:.3f} with layer {grid.best_params_['decaf__layer']} "
            f"(chance {1 / len(data.target_names):.3f}); {fitted:.1f} s"
        )
        # Checked on a few training images before it is written: same labels, scores within 1e-4.
        model = to_onnx(grid.best_estimator_, args.output, X=data.paths[:: max(1, len(data.paths) // 16)])
    outputs = ", ".join(o.name for o in model.graph.output)
    print(f"wrote {args.output} ({os.path.getsize(args.output) / 1e6:.1f} MB; outputs {outputs})")
    print(f"predict with: sk-decaf predict {args.output} IMAGE...")
    return 0 if np.isfinite(grid.best_score_) else 1
