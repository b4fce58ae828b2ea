"""
Domain adaptation with DomainAugment and metadata routing (amazon → webcam)
===========================================================================

DeCAF (Donahue et al. 2014, Sec. 4.2, Table 1) trains a linear SVM on DeCAF features of product photos
from amazon.com (the *source* domain) plus three labelled webcam photos per class (the *target*
domain), and tests on the other webcam photos: the supervised protocol of Saenko et al. (2010), here on
the 10 classes of Office-Caltech-10. Daumé III's "frustratingly easy" feature augmentation
(:class:`~sk_decaf.DomainAugment`) maps a source sample ``x`` to ``[x, x, 0]`` and a target sample to
``[x, 0, x]``, so the SVM learns shared weights plus a correction per domain.

:class:`~sk_decaf.DomainAugment` needs the domain of each image, its ``sample_domain`` (skada's name).
scikit-learn carries such per-sample *metadata* through a :class:`~sklearn.pipeline.Pipeline` with
metadata routing: enable it with ``sklearn.set_config(enable_metadata_routing=True)`` (here,
``sklearn.config_context`` for this script only), then call ``pipe.fit(X, y, sample_domain=d)``; the
domain-adaptation steps request it by default. At prediction time images without a domain are target
images, so ``pipe.predict(X_target)`` needs nothing more.

The script compares the plain ST pipeline (DeCAF → L2 normalisation → LinearSVC on source + labelled
target) with the
DomainAugment pipeline on the same split, then on five splits with
:func:`~sk_decaf.evaluation.evaluate_office`, which routes the domains itself. The features come from an
activation cache: the network runs once per image. The figure shows the per-class accuracy of both on
the first split.

Run ``python examples/plot_domain_adaptation.py [--data DIR] [--output DIR]``. ``--data`` is the
Office-Caltech-10 root (``<root>/<domain>/<class>/*.jpg``; default ``../shared/data/office_caltech10``
next to the repository).
"""

# %%
# The data and a figure of per-class accuracy
# -------------------------------------------
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import sklearn
from sklearn.metrics import balanced_accuracy_score, recall_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import Normalizer
from sklearn.svm import LinearSVC

from sk_decaf import DeCAFTransformer, DomainAdaptationSplit, DomainAugment
from sk_decaf.datasets import load_office_caltech10
from sk_decaf.evaluation import evaluate_office

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "office_caltech10"


def per_class_figure(names, accuracies):
    """Grouped bars: recall of each class for each pipeline."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 4), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / len(accuracies)
    x = np.arange(len(names))
    for k, (label, acc) in enumerate(accuracies.items()):
        ax.bar(
            x + (k - (len(accuracies) - 1) / 2) * width,
            100 * acc,
            width,
            label=f"{label} (mean {100 * acc.mean():.1f} %)",
        )
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set(
        ylabel="accuracy on webcam test images (%)",
        ylim=(0, 105),
        title="amazon → webcam, 20 source + 3 target images per class",
    )
    ax.legend(loc="lower right")
    return fig


# %%
# The protocol: one split in detail, then five splits
# ---------------------------------------------------
def main(argv=None):
    parser = argparse.ArgumentParser(description="DomainAugment vs. plain ST on amazon -> webcam.")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="Office-Caltech-10 root")
    parser.add_argument("--output", default=None, help="folder for the figure (default: a temporary one)")
    args = parser.parse_args(argv)
    if not Path(args.data).is_dir():
        sys.exit(
            f"Office-Caltech-10 not found at {args.data}: pass --data <root> with the layout "
            "<root>/<domain>/<class>/*.jpg (sk_decaf never downloads data)."
        )
    output = args.output or tempfile.mkdtemp(prefix="sk_decaf_example_")
    os.makedirs(output, exist_ok=True)

    data = load_office_caltech10(args.data, domain=["amazon", "webcam"])
    X, y, domain = np.asarray(data.paths), data.target, np.asarray(data.domain, dtype=str)
    print(
        f"{len(X)} images: {np.sum(domain == 'amazon')} amazon, {np.sum(domain == 'webcam')} webcam, "
        f"{len(data.target_names)} classes"
    )
    # One split of the protocol: 20 amazon + 3 webcam labelled images per class; the rest of webcam is test.
    cv = DomainAdaptationSplit("amazon", "webcam", n_splits=5, random_state=0)
    train, test = next(cv.split(X, y, sample_domain=domain))

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, sklearn.config_context(enable_metadata_routing=True):
        decaf = DeCAFTransformer("efficientnet_lite0", cache=os.path.join(tmp, "activations.sqlite"))
        # L2-normalised features, as in benchmarks/bench_office_caltech.py (raw ones slow LinearSVC down).
        plain = make_pipeline(decaf, Normalizer(), LinearSVC())
        adapted = make_pipeline(decaf, Normalizer(), DomainAugment(target_domain="webcam"), LinearSVC())

        plain.fit(X[train], y[train])
        adapted.fit(X[train], y[train], sample_domain=domain[train])  # reaches DomainAugment only
        predictions = {
            "SVM (ST)": plain.predict(X[test]),
            "SVM (ST) + DomainAugment": adapted.predict(X[test]),  # no domain given: target layout
        }
        print(f"\nfirst split ({len(train)} training images, {len(test)} webcam test images):")
        for name, y_pred in predictions.items():
            print(f"  {name:<26} mean per-class accuracy {100 * balanced_accuracy_score(y[test], y_pred):.2f} %")
        print(
            f"  DomainAugment maps {decaf.n_features_out_} features to "
            f"{adapted.named_steps['domainaugment'].n_features_in_ * 3} ([shared, amazon, webcam])."
        )

        # The five splits of the protocol; features are computed once (cache hits here).
        print("\nfive splits (evaluate_office, same draws for both pipelines):")
        for name, pipe in (("SVM", plain), ("SVM + DomainAugment", adapted)):
            results = evaluate_office(pipe, data, source="amazon", target="webcam", settings=("ST",))
            print(f"  {name:<26} {results['ST']!r}")
        info = decaf.cache_info()
    print(f"\n{time.perf_counter() - start:.0f} s; {info['computed']} images went through the network")

    recalls = {name: recall_score(y[test], y_pred, average=None) for name, y_pred in predictions.items()}
    path = os.path.join(output, "domain_adaptation.png")
    per_class_figure(list(data.target_names), recalls).savefig(path, dpi=100)
    print(f"figure saved to {path}")


# %%
# Run
# ---
# Without the data (``--data`` or ``../shared/data/office_caltech10``) the script stops with a message.
if __name__ == "__main__":
    main()
