"""Fine-tuning vs frozen DeCAF features on a task far from ImageNet: scikit-learn's digits drawn as images.

Azizpour et al. (2015, Table 4) find that fine-tuning helps most on the tasks furthest from ImageNet.
Office-Caltech (``bench_finetune.py``) is close to ImageNet; this task is not: the 1,797 8x8 digits of
``sklearn.datasets.load_digits`` drawn as 64x64 RGB images, dark ink on white
(``sk_decaf.datasets._digits.load_digits_images``). Nothing is downloaded.

Protocol: ``PerClassSplit(n_train=30)``: 30 training images per class (300 in all), every other image
(1,497) tested; mean per-class accuracy (``balanced_accuracy_score``); every method sees the same splits.

Methods, on the ImageNet-pretrained ``efficientnet_lite0`` (shipped offline):

* raw pixels: ``LinearSVC(C=1)`` on the 64 original grey levels (scaled to [0, 1]);
* frozen: ``DeCAFTransformer(layer="pre_logits") -> SignedSqrt -> LinearSVC(C=1)``;
* fine-tuned: ``FineTunedClassifier(max_epochs=6, early_stopping=False, augment=False, batchnorm=...)``
  (``--max-epochs``, ``--early-stopping``, ``--augment``) with every other parameter at its default
  (the whole network trained, linear-probe initialisation, AdamW, ``lr=1e-3`` for the new layer and
  ``1e-4`` for the network, cosine schedule), once per ``--batchnorm`` policy. For each, the accuracy
  of its predictions (evaluation mode) on its own training images is printed next to the last epoch's
  training loss: the two must tell the same story.

Run::

    python benchmarks/bench_finetune_digits.py [--batchnorm frozen,recompute,train] [--max-epochs 6]
        [--augment] [--early-stopping] [--freeze-until none] [--n-splits 1] [--seed 0] [--threads N]

``--max-epochs 10 --augment --early-stopping --batchnorm frozen`` is ``FineTunedClassifier()`` itself.

On a busy machine ``--threads 1`` avoids PyTorch's spin-waiting threads.
"""

import argparse
import platform
import time

import numpy as np
import torch
from sklearn.metrics import balanced_accuracy_score
from sklearn.pipeline import make_pipeline
from sklearn.svm import LinearSVC

from sk_decaf import DeCAFTransformer, FineTunedClassifier
from sk_decaf.datasets._digits import load_digits_images
from sk_decaf.model_selection import PerClassSplit
from sk_decaf.transformers import SignedSqrt


def _parse():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--batchnorm",
        default="frozen,recompute,train",
        help="comma-separated BatchNorm policies of FineTunedClassifier to run",
    )
    parser.add_argument("--max-epochs", type=int, default=6)
    parser.add_argument("--augment", action="store_true", help="timm's training augmentation (default off)")
    parser.add_argument("--early-stopping", action="store_true", help="hold out 10%% for early stopping")
    parser.add_argument("--freeze-until", default="none")
    parser.add_argument("--n-train", type=int, default=30)
    parser.add_argument("--n-splits", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    return parser.parse_args()


def _score(y_true, y_pred):
    return 100 * balanced_accuracy_score(y_true, y_pred)


def main():
    args = _parse()
    if args.threads:
        torch.set_num_threads(args.threads)
    freeze = None if args.freeze_until.lower() == "none" else args.freeze_until
    policies = [p for p in args.batchnorm.split(",") if p]
    digits = load_digits_images()
    images, y = digits.images, digits.target
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or 'cpu'}, "
        f"CUDA: {torch.cuda.is_available()}"
    )
    print(
        f"digits as 64x64 images: {len(images)} images, {args.n_train} training images per class, "
        f"{args.n_splits} split(s), seed {args.seed}; fine-tuning: {args.max_epochs} epochs, "
        f"augment={args.augment}, early_stopping={args.early_stopping}, freeze_until={freeze!r}\n",
        flush=True,
    )

    start = time.perf_counter()
    features = DeCAFTransformer(layer="pre_logits").fit_transform(images)
    t_features = time.perf_counter() - start
    cv = PerClassSplit(args.n_train, n_splits=args.n_splits, random_state=args.seed)
    results = {}  # name -> list of (test, train_eval, train_loss, seconds) per split
    for k, (train, test) in enumerate(cv.split(y, y)):
        raw = LinearSVC().fit(digits.data[train] / 16, y[train])
        results.setdefault("raw pixels + LinearSVC", []).append(
            (_score(y[test], raw.predict(digits.data[test] / 16)), None, None, 0.0)
        )
        start = time.perf_counter()
        frozen = make_pipeline(SignedSqrt(), LinearSVC()).fit(features[train], y[train])
        row = (
            _score(y[test], frozen.predict(features[test])),
            _score(y[train], frozen.predict(features[train])),
            None,
            t_features * len(train) / len(y) + time.perf_counter() - start,
        )
        results.setdefault("frozen pre_logits + SignedSqrt + LinearSVC", []).append(row)
        print(f"split {k}: frozen {row[0]:.2f} (train {row[1]:.2f})", flush=True)
        for policy in policies:
            clf = FineTunedClassifier(
                max_epochs=args.max_epochs,
                early_stopping=args.early_stopping,
                augment=args.augment,
                freeze_until=freeze,
                batchnorm=policy,
                random_state=args.seed + k,
            )
            start = time.perf_counter()
            clf.fit([images[i] for i in train], y[train])
            seconds = time.perf_counter() - start
            row = (
                _score(y[test], clf.predict([images[i] for i in test])),
                _score(y[train], clf.predict([images[i] for i in train])),
                float(clf.history_[-1, "train_loss"]),
                seconds,
            )
            results.setdefault(f"fine-tuned, batchnorm={policy!r}", []).append(row)
            losses = np.round(clf.history_[:, "train_loss"], 3).tolist()
            print(
                f"split {k}: batchnorm={policy!r}: test {row[0]:.2f}, training images in evaluation mode "
                f"{row[1]:.2f}, training loss per epoch {losses}, fit {seconds:.0f} s",
                flush=True,
            )

    base = np.mean([r[0] for r in results["frozen pre_logits + SignedSqrt + LinearSVC"]])
    print(
        "\n| method | test | training images, evaluation mode | last training loss | gain over frozen "
        "(points) | fit time |"
    )
    print("|---|---|---|---|---|---|")
    for name, rows in results.items():
        test, train, loss, seconds = (np.array([r[i] for r in rows], dtype=float) for i in range(4))
        print(
            f"| {name} | {test.mean():.2f} ± {test.std():.2f} | "
            f"{'—' if np.isnan(train).all() else f'{train.mean():.2f}'} | "
            f"{'—' if np.isnan(loss).all() else f'{loss.mean():.3f}'} | {test.mean() - base:+.2f} | "
            f"{seconds.mean():.0f} s |"
        )


if __name__ == "__main__":
    main()
