"""Fine-tuning vs frozen DeCAF features on a task far from ImageNet: scikit-learn's digits drawn as images.

Azizpour et al. (2015, Table 4) find that fine-tuning helps most on the tasks furthest from ImageNet.
Office-Caltech (``bench_finetune.py``) is close to ImageNet; this task is not: the 1,797 8x8 digits of
``sklearn.datasets.load_digits`` drawn as 64x64 RGB images, dark ink on white
(``sk_decaf.datasets._digits.load_digits_images``). Nothing is downloaded.

Protocol, in two stages so that the test images choose nothing:

1. **Split.** ``PerClassSplit(n_train=30, n_splits=1)``: 30 training images per class (300), every other
   image (1,497) is the test set.
2. **Selection, on the training images only.** They are split again, ``PerClassSplit(n_train=30 - n_valid)``:
   20 images per class to fit, ``--n-valid`` (10) per class to validate. Each ``--batchnorm`` policy of
   ``FineTunedClassifier`` is fitted on the 200 and scored on the 100 validation images; the policy with the
   highest validation accuracy is selected (ties: the lower validation log loss).
3. **Test, once.** The selected policy is refitted on all 300 training images and scored on the test set,
   next to the baselines fitted on the same 300 images. The other policies are not scored on the test set.

Scores are mean per-class accuracy (``balanced_accuracy_score``, %). Methods, on the ImageNet-pretrained
``efficientnet_lite0`` (shipped offline):

* raw pixels: ``LinearSVC(C=1)`` on the 64 original grey levels (scaled to [0, 1]);
* frozen: ``DeCAFTransformer(layer="pre_logits") -> SignedSqrt -> LinearSVC(C=1)``;
* fine-tuned: ``FineTunedClassifier(max_epochs=6, early_stopping=False, augment=False, batchnorm=...)``
  (``--max-epochs``, ``--early-stopping``, ``--augment``) with every other parameter at its default
  (the whole network trained, linear-probe initialisation, AdamW, ``lr=1e-3`` for the new layer and
  ``1e-4`` for the network, cosine schedule). For each policy the accuracy of its predictions (evaluation
  mode) on the images it was fitted on is printed next to the last epoch's training loss: the two must
  tell the same story.

Run::

    python benchmarks/bench_finetune_digits.py [--batchnorm frozen,recompute,train] [--max-epochs 6]
        [--n-valid 10] [--augment] [--early-stopping] [--freeze-until none] [--seed 0] [--threads N]
    python benchmarks/bench_finetune_digits.py --quick     # a check that it runs: 4 + 2 images per class, 1 epoch

The figures are accuracies, not timings: a loaded machine changes the fit times, not the scores (the thread
count changes float rounding, hence ``--threads``). On a busy machine ``--threads 1`` avoids PyTorch's
spin-waiting threads.
"""

import argparse
import platform
import time

import numpy as np
import torch
from sklearn.metrics import balanced_accuracy_score, log_loss
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
        help="comma-separated BatchNorm policies of FineTunedClassifier to select from",
    )
    parser.add_argument("--max-epochs", type=int, default=6)
    parser.add_argument("--augment", action="store_true", help="timm's training augmentation (default off)")
    parser.add_argument("--early-stopping", action="store_true", help="hold out 10%% for early stopping")
    parser.add_argument("--freeze-until", default="none")
    parser.add_argument("--n-train", type=int, default=30, help="training images per class (fit + validation)")
    parser.add_argument("--n-valid", type=int, default=10, help="of those, validation images per class")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--quick", action="store_true", help="check that it runs: 4 + 2 images per class, 1 epoch, 200 test images"
    )
    args = parser.parse_args()
    if args.quick:
        args.n_train, args.n_valid, args.max_epochs = 6, 2, 1
    if not 0 < args.n_valid < args.n_train:
        parser.error("--n-valid must be between 1 and --n-train - 1")
    return args


def _score(y_true, y_pred):
    return 100 * balanced_accuracy_score(y_true, y_pred)


def _fine_tuned(args, policy, freeze, seed):
    return FineTunedClassifier(
        max_epochs=args.max_epochs,
        early_stopping=args.early_stopping,
        augment=args.augment,
        freeze_until=freeze,
        batchnorm=policy,
        random_state=seed,
    )


def _fit(clf, images, y, idx):
    start = time.perf_counter()
    clf.fit([images[i] for i in idx], y[idx])
    return time.perf_counter() - start


def main():
    args = _parse()
    if args.threads:
        torch.set_num_threads(args.threads)
    freeze = None if args.freeze_until.lower() == "none" else args.freeze_until
    policies = [p for p in args.batchnorm.split(",") if p]
    digits = load_digits_images()
    images, y = digits.images, digits.target
    train, test = next(PerClassSplit(args.n_train, n_splits=1, random_state=args.seed).split(y, y))
    if args.quick:
        test = test[:: max(1, len(test) // 200)]
    fit_part, valid_part = next(
        PerClassSplit(args.n_train - args.n_valid, n_splits=1, random_state=args.seed).split(y[train], y[train])
    )
    fit_idx, valid_idx = train[fit_part], train[valid_part]
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or 'cpu'}, "
        f"CUDA: {torch.cuda.is_available()}"
    )
    print(
        f"digits as 64x64 images: {len(images)} images; {len(train)} training images "
        f"({args.n_train} per class: {len(fit_idx)} to fit and {len(valid_idx)} to validate during selection), "
        f"{len(test)} test images; seed {args.seed}; fine-tuning: {args.max_epochs} epochs, "
        f"augment={args.augment}, early_stopping={args.early_stopping}, freeze_until={freeze!r}\n",
        flush=True,
    )

    start = time.perf_counter()
    features = DeCAFTransformer(layer="pre_logits").fit_transform(images)
    t_features = time.perf_counter() - start

    def frozen(idx):
        return make_pipeline(SignedSqrt(), LinearSVC()).fit(features[idx], y[idx])

    def raw(idx):
        return LinearSVC().fit(digits.data[idx] / 16, y[idx])

    # -- 1. selection: fit on fit_idx, score on valid_idx --------------------------------------------------
    print("selection: fitted on the fit images, scored on the validation images (the test images are not used)")
    print(
        "\n| method | validation | fit images, evaluation mode | last training loss | validation log loss | fit time |"
    )
    print("|---|---|---|---|---|---|")
    baselines = (
        ("raw pixels + LinearSVC", raw(fit_idx).predict(digits.data[valid_idx] / 16)),
        ("frozen + SignedSqrt + LinearSVC", frozen(fit_idx).predict(features[valid_idx])),
    )
    for name, predicted in baselines:
        print(f"| {name} | {_score(y[valid_idx], predicted):.2f} | — | — | — | — |", flush=True)
    selection = {}
    for policy in policies:
        clf = _fine_tuned(args, policy, freeze, args.seed)
        seconds = _fit(clf, images, y, fit_idx)
        valid_images = [images[i] for i in valid_idx]
        proba = clf.predict_proba(valid_images)
        valid_acc = _score(y[valid_idx], clf.classes_[proba.argmax(axis=1)])
        valid_loss = log_loss(y[valid_idx], proba, labels=clf.classes_)
        fit_acc = _score(y[fit_idx], clf.predict([images[i] for i in fit_idx]))
        losses = np.round(clf.history_[:, "train_loss"], 3).tolist()
        selection[policy] = (valid_acc, valid_loss)
        print(
            f"| fine-tuned, `batchnorm={policy!r}` | {valid_acc:.2f} | {fit_acc:.2f} | {losses[-1]:.3f} | "
            f"{valid_loss:.3f} | {seconds:.0f} s |",
            flush=True,
        )
        print(f"  (training loss per epoch: {losses})", flush=True)
    chosen = max(policies, key=lambda p: (selection[p][0], -selection[p][1]))
    print(f"\nselected on validation: batchnorm={chosen!r}")

    # -- 2. test, once: the selected policy refitted on every training image --------------------------------
    clf = _fine_tuned(args, chosen, freeze, args.seed)
    seconds = _fit(clf, images, y, train)
    test_images = [images[i] for i in test]
    rows = [
        ("raw pixels + LinearSVC", _score(y[test], raw(train).predict(digits.data[test] / 16)), "0 s"),
        (
            "frozen `pre_logits` + SignedSqrt + LinearSVC",
            _score(y[test], frozen(train).predict(features[test])),
            f"{t_features:.0f} s (features of all {len(images)} images)",
        ),
        (
            f"fine-tuned, `batchnorm={chosen!r}` (selected)",
            _score(y[test], clf.predict(test_images)),
            f"{seconds:.0f} s",
        ),
    ]
    base = rows[1][1]
    print(f"\ntest, once: fitted on the {len(train)} training images, scored on the {len(test)} test images")
    print("\n| method | test | gain over frozen (points) | fit time |")
    print("|---|---|---|---|")
    for name, score, fit_time in rows:
        print(f"| {name} | {score:.2f} | {score - base:+.2f} | {fit_time} |")
    losses = np.round(clf.history_[:, "train_loss"], 3).tolist()
    print(f"\nselected policy refitted: training loss per epoch {losses}")


if __name__ == "__main__":
    main()
