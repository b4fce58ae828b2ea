"""The evaluation protocols on the embedded demo set: accuracy, and what computing the features once saves.

On ``load_demo()`` (10 Caltech-101 classes x 20 images), with ``make_pipeline(DeCAFTransformer(), LinearSVC())``
(EfficientNet-Lite0, its default layer), prints:

* ``evaluate(protocol="per-class", n_train=10, n_splits=5)``: mean per-class accuracy, mean ± std over the splits;
* the wall time of that evaluation with ``precompute="auto"`` (features computed once, the classifier fitted per
  split) against ``precompute=False`` (the whole pipeline refitted per split, no cache), in one run, as a ratio,
  and whether both gave the same scores. The network is loaded and its ONNX graph exported before either is
  timed;
* one-shot accuracy (``few_shot_curve(n_train=(1,), n_splits=5)``) of ``LinearSVC()`` and of
  ``LogisticRegression(max_iter=1000)``.

Run::

    python benchmarks/bench_protocols.py
"""

import os
import time

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.svm import LinearSVC

from sk_decaf import DeCAFTransformer
from sk_decaf.datasets import load_demo
from sk_decaf.evaluation import evaluate, few_shot_curve


def main():
    demo = load_demo()
    print(f"demo set: {len(demo.paths)} images, {len(demo.target_names)} classes; {os.cpu_count()} CPU cores")
    DeCAFTransformer().fit(demo.paths[:2]).transform(demo.paths[:2])  # network loaded, ONNX graph exported

    timed = {}
    for precompute in ("auto", False):
        pipe = make_pipeline(DeCAFTransformer(), LinearSVC())
        start = time.perf_counter()
        result = evaluate(pipe, demo, protocol="per-class", n_train=10, n_splits=5, precompute=precompute)
        timed[precompute] = (time.perf_counter() - start, result)
    (auto_s, auto), (plain_s, plain) = timed["auto"], timed[False]
    print(
        f"\nper-class, 10 training images per class, 5 splits: {100 * auto.mean:.2f} ± {100 * auto.std:.2f} % "
        "mean per-class accuracy"
    )
    print(
        f'wall time: precompute="auto" {auto_s:.1f} s, precompute=False {plain_s:.1f} s '
        f"({plain_s / auto_s:.1f}x); same scores: {bool(np.allclose(auto.scores, plain.scores))}"
    )

    print("\none training image per class, 5 splits (few_shot_curve):")
    for name, classifier in (
        ("LinearSVC()", LinearSVC()),
        ("LogisticRegression(max_iter=1000)", LogisticRegression(max_iter=1000)),
    ):
        curve = few_shot_curve(make_pipeline(DeCAFTransformer(), classifier), demo, n_train=(1,), n_splits=5)
        print(f"  {name:<36} {100 * curve.mean[0]:.1f} ± {100 * curve.std[0]:.1f} %")
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
