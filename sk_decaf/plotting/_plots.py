"""Figures of DeCAF (Fig. 1-5) and Azizpour et al. (Fig. 6) with matplotlib.

matplotlib is imported inside each function (it is an optional dependency). New
figures are made with ``matplotlib.pyplot``, as scikit-learn's ``*Display`` objects
make theirs, so they show wherever pyplot figures show: below the cell in Jupyter,
on ``plt.show()`` in a script, in sphinx-gallery; headless (Agg) they are saved
with ``savefig``. pyplot holds each figure until ``plt.close(fig)``: close those
made in a loop, or draw into given axes (``ax=``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import ArrayLike

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from .._sklearn_compat import BaseSearchCV
    from ..evaluation import FewShotCurve

from .._docstrings import fill_doc

#: Layer types of a profile, in the order of the pie of DeCAF Fig. 3(b).
LAYER_TYPES = ("conv", "fc", "pool", "neuron", "norm", "other")


#: The ``ax`` parameter and the return value of the single-panel figures (see sk_decaf._docstrings).
_DOCS = {
    "ax": """ax : matplotlib Axes, default=None
        Axes to draw in; a new pyplot figure is made when None.

    Returns
    -------
    fig : matplotlib.figure.Figure
        The figure of ``ax``, or the new pyplot figure.""",
}


def _axes(ax: Any, ncols: int = 1, figsize: tuple[float, float] = (6.4, 4.8)) -> tuple[Figure, Any]:
    """(figure, axes): the figure of `ax`, or a new pyplot figure with `ncols` axes."""
    if ax is not None:
        first = ax[0] if isinstance(ax, (list, tuple, np.ndarray)) else ax
        return first.figure, ax
    import matplotlib.pyplot as plt

    return plt.subplots(1, ncols, figsize=figsize, layout="constrained")


def _colors(n: int) -> list[tuple[float, float, float, float]]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20" if n <= 20 else "turbo"]
    return [cmap(i) if n <= 20 else cmap(i / max(n - 1, 1)) for i in range(n)]


def _label(value: object) -> str:
    """Short label of a parameter value: class name for estimators."""
    if hasattr(value, "fit"):
        return type(value).__name__
    if isinstance(value, (list, tuple)):
        return "+".join(map(str, value))
    return str(value)


@fill_doc(_DOCS)
def plot_tsne(
    features: ArrayLike,
    labels: ArrayLike,
    *,
    label_names: Sequence[str] | None = None,
    projection_dim: Literal["auto"] | int | None = "auto",
    perplexity: float = 30.0,
    random_state: int | np.random.RandomState | None = 0,
    legend: Literal["auto"] | bool = "auto",
    ax: Axes | None = None,
) -> Figure:
    """Scatter plot of a 2-D t-SNE embedding of features, one colour per label.

    As in DeCAF Fig. 1, 2 and 5: very high-dimensional features are first
    projected at random to ``projection_dim`` dimensions (DeCAF footnote 4),
    which keeps distances, all t-SNE cares about.

    Parameters
    ----------
    features : array-like of shape (n_samples, n_features)
        Features, e.g. the output of a DeCAFTransformer.
    labels : array-like of shape (n_samples,)
        Class (or domain) of each sample; one scatter per distinct label.
    label_names : sequence of str, default=None
        Names of the labels when they are integer indices (``target_names``).
    projection_dim : "auto", int or None, default="auto"
        Dimension of a :class:`~sklearn.random_projection.GaussianRandomProjection`
        applied first when the features have more dimensions; "auto" projects to
        512 when there are more than 4096 features, None never projects.
    perplexity : float, default=30.0
        t-SNE perplexity, lowered to ``n_samples - 1`` for tiny sets.
    random_state : int, RandomState instance or None, default=0
        Seed of the projection and of t-SNE.
    legend : "auto" or bool, default="auto"
        Draw a legend; "auto" draws it for at most 20 labels.
    %(ax)s

    References
    ----------
    .. [1] L. van der Maaten and G. Hinton, "Visualizing data using t-SNE",
       JMLR, 2008.
    .. [2] J. Donahue et al., "DeCAF", ICML, 2014, Fig. 1 and 5.

    Examples
    --------
    >>> from sklearn.datasets import make_blobs
    >>> from sk_decaf.plotting import plot_tsne
    >>> X, y = make_blobs(n_samples=60, n_features=20, centers=3, random_state=0)
    >>> fig = plot_tsne(X, y, label_names=["a", "b", "c"])
    >>> len(fig.axes[0].collections)
    3
    """
    from sklearn.manifold import TSNE
    from sklearn.random_projection import GaussianRandomProjection

    X = np.asarray(features, dtype=float)
    y = np.asarray(labels)
    if projection_dim == "auto":
        projection_dim = 512 if X.shape[1] > 4096 else None
    if projection_dim is not None and X.shape[1] > projection_dim:
        projection = GaussianRandomProjection(projection_dim, random_state=random_state)
        X = projection.fit_transform(X)
    tsne = TSNE(2, perplexity=min(perplexity, len(X) - 1), init="pca", random_state=random_state)
    embedding = tsne.fit_transform(X)
    fig, ax = _axes(ax)
    values = np.unique(y)
    for value, color in zip(values, _colors(len(values))):
        name = label_names[value] if label_names is not None else value
        mask = y == value
        points = embedding[mask]
        ax.scatter(points[:, 0], points[:, 1], s=10, color=color, label=str(name))
    if legend is True or (legend == "auto" and len(values) <= 20):
        ax.legend(fontsize="small", markerscale=1.5, loc="best")
    ax.set(xticks=[], yticks=[], title="t-SNE embedding")
    return fig


@fill_doc(_DOCS)
def plot_layer_sweep(
    search: BaseSearchCV, *, layer_param: str | None = None, classifier_param: str | None = None, ax: Axes | None = None
) -> Figure:
    """Validation score per layer and classifier of a fitted search (DeCAF Fig. 4 left).

    One line per classifier, with the standard deviation over the search's
    folds as error bars (Azizpour et al. Fig. 6). For each layer and classifier,
    the best score over the other parameters is shown; a star marks the best
    combination (the one DeCAF prints in bold).

    Parameters
    ----------
    search : fitted GridSearchCV or RandomizedSearchCV
        Search whose ``cv_results_`` hold a layer parameter.
    layer_param : str, default=None
        Name of the layer parameter; None finds the one named ``layer`` or
        ``*__layer``.
    classifier_param : str, default=None
        Parameter giving the classifier (one line each); None picks the first
        other parameter whose values are estimators, if any.
    %(ax)s

    References
    ----------
    .. [1] H. Azizpour et al., "From generic to specific deep representations
       for visual recognition", CVPR Workshops, 2015, Fig. 6.

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.model_selection import GridSearchCV
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.svm import LinearSVC
    >>> from sk_decaf import DeCAFTransformer
    >>> from sk_decaf.datasets import load_demo
    >>> from sk_decaf.plotting import plot_layer_sweep
    >>> data = load_demo()
    >>> pipe = make_pipeline(DeCAFTransformer(), LinearSVC())
    >>> grid = {"decaftransformer__layer": [-3, -2, -1],
    ...         "linearsvc": [LinearSVC(), LogisticRegression()]}
    >>> search = GridSearchCV(pipe, grid).fit(data.paths, data.target)  # doctest: +SKIP
    >>> fig = plot_layer_sweep(search)  # doctest: +SKIP
    """
    if not hasattr(search, "cv_results_"):
        raise ValueError("plot_layer_sweep needs a fitted search (with cv_results_).")
    results = search.cv_results_
    params = [k[len("param_") :] for k in results if k.startswith("param_")]
    if layer_param is None:
        found = [p for p in params if p == "layer" or p.endswith("__layer")]
        if not found:
            raise ValueError(f"No parameter named like '*__layer' among {params}.")
        layer_param = found[0]

    def column(name: str) -> list[str]:
        col = results[f"param_{name}"]
        mask = np.ma.getmaskarray(col)
        return ["default" if m else _label(v) for v, m in zip(np.ma.getdata(col), mask)]

    if classifier_param is None:
        classifier_param = next(
            (
                p
                for p in params
                if p != layer_param and any(hasattr(v, "fit") for v in np.ma.compressed(results[f"param_{p}"]))
            ),
            None,
        )
    layers = column(layer_param)
    classifiers = column(classifier_param) if classifier_param else ["score"] * len(layers)
    order = list(dict.fromkeys(layers))
    mean, std = results["mean_test_score"], results["std_test_score"]
    best: dict[tuple[str, str], int] = {}
    for i, key in enumerate(zip(classifiers, layers)):
        if key not in best or mean[i] > mean[best[key]]:
            best[key] = i
    fig, ax = _axes(ax)
    handles = []
    for clf, color in zip(dict.fromkeys(classifiers), _colors(len(set(classifiers)))):
        xs = [x for x, layer in enumerate(order) if (clf, layer) in best]
        rows = [best[(clf, order[x])] for x in xs]
        handles.append(ax.errorbar(xs, mean[rows], yerr=std[rows], marker="o", capsize=3, color=color, label=clf))
    top = max(best.values(), key=lambda i: mean[i])
    x_top = order.index(layers[top])
    handles += ax.plot(x_top, mean[top], "*", ms=14, color="k", label="best")
    ax.set_xticks(range(len(order)), order)
    ax.set(xlabel=layer_param, ylabel="validation score", title="Accuracy per layer")
    ax.legend(handles=handles, fontsize="small")
    return fig


@fill_doc(_DOCS)
def plot_few_shot(results: FewShotCurve | Mapping[str, FewShotCurve], *, ax: Axes | None = None) -> Figure:
    """Accuracy against training images per class (DeCAF Fig. 4 right).

    Parameters
    ----------
    results : FewShotCurve or mapping of str to FewShotCurve
        Output(s) of :func:`sk_decaf.evaluation.few_shot_curve`; a mapping draws
        one line per entry, labelled by its key (e.g. "SVM", "LogReg").
    %(ax)s

    Examples
    --------
    >>> from sklearn.datasets import make_blobs
    >>> from sklearn.svm import LinearSVC
    >>> from sk_decaf.evaluation import few_shot_curve
    >>> from sk_decaf.plotting import plot_few_shot
    >>> X, y = make_blobs(n_samples=90, centers=3, random_state=0)
    >>> fig = plot_few_shot({"SVM": few_shot_curve(LinearSVC(), (X, y), n_train=[1, 5])})
    >>> [text.get_text() for text in fig.axes[0].get_legend().get_texts()]
    ['SVM']
    """
    curves = dict(results) if isinstance(results, Mapping) else {None: results}
    fig, ax = _axes(ax)
    ticks: set[int] = set()
    for (name, curve), color in zip(curves.items(), _colors(len(curves))):
        n_train = np.asarray(curve.n_train)
        ticks.update(n_train.tolist())
        ax.errorbar(n_train, curve.mean, yerr=curve.std, marker="o", capsize=3, color=color, label=name)
    ax.set_xticks(sorted(ticks))
    ax.set(xlabel="training images per class", ylabel="mean per-class accuracy", title="Accuracy vs. training set size")
    if any(name is not None for name in curves):
        ax.legend()
    return fig


def plot_layer_times(profile: Mapping[str, Any], *, top_k: int = 5, axes: Sequence[Axes] | None = None) -> Figure:
    """Time per layer (bars) and its share per layer type (pie), as DeCAF Fig. 3.

    Parameters
    ----------
    profile : mapping
        A dict or Bunch, e.g. from ``sk_decaf.profile_layers``, with keys:

        - ``layers``: sequence of str, the layer names in forward order;
        - ``types``: sequence of str, the type of each layer, one of "conv",
          "fc", "pool", "neuron" (ReLU, sigmoid, dropout...), "norm" or "other";
        - ``seconds``: array-like of float, the time spent in each layer during
          one forward pass (any unit consistent across layers).

        Optional keys ``batch_size`` (int) and ``device`` (str) go into the title.
    top_k : int, default=5
        Number of most time-consuming layers labelled on the bar chart.
    axes : pair of matplotlib Axes, default=None
        Axes for the bars and the pie; a new pyplot figure is made when None.

    Returns
    -------
    fig : matplotlib.figure.Figure
        The figure of ``axes``, or the new pyplot figure.

    References
    ----------
    .. [1] J. Donahue et al., "DeCAF", ICML, 2014, Sec. 3.3 and Fig. 3.

    Examples
    --------
    >>> from sk_decaf.plotting import plot_layer_times
    >>> profile = {"layers": ["conv1", "relu1", "pool1", "fc6"],
    ...            "types": ["conv", "neuron", "pool", "fc"],
    ...            "seconds": [0.02, 0.001, 0.002, 0.01]}
    >>> fig = plot_layer_times(profile)
    >>> len(fig.axes[0].patches), len(fig.axes[1].patches)
    (4, 4)
    """
    layers = [str(name) for name in profile["layers"]]
    types = [str(t) for t in profile["types"]]
    seconds = np.asarray(profile["seconds"], dtype=float)
    if not len(layers) == len(types) == len(seconds):
        raise ValueError("profile's layers, types and seconds must have the same length.")
    unknown = sorted(set(types) - set(LAYER_TYPES))
    if unknown:
        raise ValueError(f"Unknown layer types {unknown}; use {LAYER_TYPES}.")
    fig, (bars, pie) = _axes(axes, ncols=2, figsize=(11, 4.5))
    palette = dict(zip(LAYER_TYPES, _colors(len(LAYER_TYPES))))
    bars.bar(range(len(layers)), seconds, color=[palette[t] for t in types])
    for i in np.argsort(seconds)[::-1][:top_k]:
        bars.annotate(layers[i], (i, seconds[i]), ha="center", va="bottom", fontsize="small", rotation=45)
    bars.set(xlabel="layer (forward order)", ylabel="seconds", title="(a) time per layer")
    share = {t: seconds[[x == t for x in types]].sum() for t in LAYER_TYPES}
    share = {t: s for t, s in share.items() if s > 0}
    pie.pie(list(share.values()), labels=list(share), colors=[palette[t] for t in share], autopct="%1.1f%%")
    pie.set(title="(b) time per layer type")
    details = [f"{k}={profile[k]}" for k in ("batch_size", "device") if k in profile]
    if details:
        fig.suptitle(", ".join(details))
    return fig
