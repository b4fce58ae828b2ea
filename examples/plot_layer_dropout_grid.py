"""
Layer, dropout, power normalisation and classifier in one grid search
=====================================================================

DeCAF (Donahue et al. 2014) asks which layer of a frozen ImageNet network gives the best generic
features (Fig. 4 left: DeCAF6 or DeCAF7, not the logits), whether to regularise the linear classifier
with dropout on the features (Table 2: "+Dropout"), and compares a linear SVM with logistic regression.
Azizpour et al. (2015) add the signed square root ("power normalisation") of the features. All four
choices are steps or parameters of one scikit-learn :class:`~sklearn.pipeline.Pipeline`, so a single
:class:`~sklearn.model_selection.GridSearchCV` cross-validates every combination.

Run ``python examples/plot_layer_dropout_grid.py [--output DIR] [--n-train N] [--splits K] [--n-jobs J]``;
the figure is saved in ``DIR`` (default: a new temporary folder).
"""

# %%
# The pipeline and the grid
# -------------------------
# * ``decaf__layer``: the last four layers of EfficientNet-Lite0 (``blocks.4``, ``blocks.6``,
#   ``pre_logits``, ``logits``);
# * ``dropout``: ``"passthrough"`` or :class:`~sk_decaf.FeatureDropout` (training features zeroed with
#   probability 0.5, test features scaled by 0.5);
# * ``sqrt``: ``"passthrough"`` or :class:`~sk_decaf.SignedSqrt`;
# * ``clf``: :class:`~sklearn.svm.LinearSVC` or :class:`~sklearn.linear_model.LogisticRegression`
#   (a step replaced through the grid).
#
# The :class:`~sk_decaf.DeCAFTransformer` writes every layer of each image to an activation cache on its
# first forward pass, so the network runs once per image for all 32 candidates and every split.
import argparse
import os
import tempfile
import time

from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC

from sk_decaf import DeCAFTransformer, FeatureDropout, SignedSqrt, list_layers
from sk_decaf.datasets import load_demo
from sk_decaf.model_selection import PerClassSplit
from sk_decaf.plotting import plot_layer_sweep

parser = argparse.ArgumentParser(
    description="One GridSearchCV over layer, dropout, SignedSqrt and classifier on the embedded demo set."
)
parser.add_argument("--output", default=None, help="folder for the figure (default: a temporary one)")
parser.add_argument("--n-train", type=int, default=1, help="training images per class (default: %(default)s)")
parser.add_argument("--splits", type=int, default=5, help="random splits (default: %(default)s)")
parser.add_argument("--n-jobs", type=int, default=None, help="candidates fitted in parallel")
args, _ = parser.parse_known_args()  # known options only: the gallery and Jupyter pass their own

data = load_demo()  # 10 Caltech-101 classes x 20 images, shipped with sk_decaf
cache = os.path.join(tempfile.mkdtemp(prefix="sk_decaf_example_"), "activations.sqlite")
pipe = Pipeline(
    [
        ("decaf", DeCAFTransformer("efficientnet_lite0", cache=cache)),
        ("dropout", "passthrough"),
        ("sqrt", "passthrough"),
        ("clf", LinearSVC()),
    ]
)
grid = {
    "decaf__layer": list_layers("efficientnet_lite0")[-4:],
    "dropout": ["passthrough", FeatureDropout(0.5, random_state=0)],
    "sqrt": ["passthrough", SignedSqrt()],
    "clf": [LinearSVC(C=1.0), LogisticRegression(C=1.0, max_iter=2000)],
}
pipe

# %%
# The search
# ----------
# The demo set is easy: with 16 training images per class (5-fold CV) nearly every candidate scores
# 100 %, and with 3 per class still 99 %. The search therefore uses DeCAF's one-shot regime (the first
# point of Fig. 4 right): each of 5 :class:`~sk_decaf.model_selection.PerClassSplit` splits trains on one
# image per class and tests on the other 19 (``--n-train`` changes it).
cv = PerClassSplit(args.n_train, n_splits=args.splits, random_state=0)
search = GridSearchCV(pipe, grid, cv=cv, n_jobs=args.n_jobs)
start = time.perf_counter()
search.fit(data.paths, data.target)
seconds = time.perf_counter() - start
info = search.best_estimator_.named_steps["decaf"].cache_info()
print(
    f"{len(search.cv_results_['params'])} candidates x {args.splits} splits ({args.n_train} training image(s) "
    f"per class, the rest tested) on {len(data.paths)} demo images in {seconds:.1f} s; {info['computed']} "
    f"images went through the network, {info['hits']} lookups served by the activation cache."
)


# %%
# The best candidates
# -------------------
def label(value):
    """An estimator by its class name, anything else as text."""
    return type(value).__name__ if hasattr(value, "fit") else str(value)


res = search.cv_results_
params = ["decaf__layer", "dropout", "sqrt", "clf"]
print(f"{'rank':>4}  {'layer':<11}{'dropout':<16}{'sqrt':<13}{'classifier':<20}{'accuracy':>14}")
for i in sorted(range(len(res["params"])), key=lambda i: res["rank_test_score"][i])[:8]:
    cells = [label(res["params"][i][p]) for p in params]
    score = f"{res['mean_test_score'][i]:.3f} ± {res['std_test_score'][i]:.3f}"
    print(f"{res['rank_test_score'][i]:>4}  {cells[0]:<11}{cells[1]:<16}{cells[2]:<13}{cells[3]:<20}{score:>14}")

print("\nbest score for each choice (maximised over the other parameters):")
for param in params:
    best_of = {}
    for candidate, score in zip(res["params"], res["mean_test_score"]):
        key = label(candidate[param])
        best_of[key] = max(best_of.get(key, 0.0), score)
    print(f"  {param:<13}" + "  ".join(f"{k} {v:.3f}" for k, v in best_of.items()))

# %%
# Accuracy per layer
# ------------------
# DeCAF Fig. 4 (left) / Azizpour et al. Fig. 6: cross-validated accuracy per layer, one line per
# classifier, best over the other parameters; a star marks the best combination.
fig = plot_layer_sweep(search, layer_param="decaf__layer", classifier_param="clf")
output = args.output or os.path.dirname(cache)
os.makedirs(output, exist_ok=True)
fig.savefig(os.path.join(output, "layer_dropout_grid.png"), dpi=100)
print(f"figure saved to {os.path.join(output, 'layer_dropout_grid.png')}")
