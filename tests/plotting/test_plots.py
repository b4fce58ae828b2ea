"""Each figure draws the expected artists, and shows where pyplot figures show."""

import io

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.datasets import make_blobs
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.backend_bases import FigureManagerBase  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from sk_decaf.evaluation import FewShotCurve  # noqa: E402
from sk_decaf.plotting import (  # noqa: E402
    plot_few_shot,
    plot_layer_sweep,
    plot_layer_times,
    plot_tsne,
)


def _legend(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


class FigureManager(FigureManagerBase):
    """This module is also a matplotlib backend (``module://<this module>``) whose ``plt.show()`` records each
    figure it shows as PNG bytes, as Jupyter's inline backend sends figures to the notebook."""

    shown = []

    def show(self):
        buffer = io.BytesIO()
        self.canvas.figure.savefig(buffer, format="png")
        self.shown.append((self.canvas.figure, buffer.getvalue()))


class FigureCanvas(FigureCanvasAgg):
    manager_class = FigureManager


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture
def shown():
    """Figures shown by ``plt.show()`` while the test runs, with their PNG bytes."""
    plt.switch_backend(f"module://{__name__}")
    FigureManager.shown.clear()
    yield FigureManager.shown
    plt.switch_backend("Agg")


class PickLayer(TransformerMixin, BaseEstimator):
    """Stand-in featurizer: `layer` picks a block of columns."""

    def __init__(self, layer="fc6"):
        self.layer = layer

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        start = {"conv5": 0, "fc6": 2, "fc7": 4}[self.layer]
        return X[:, start : start + 2]


@pytest.mark.parametrize("n_features, projection_dim", [(30, "auto"), (30, 8), (5000, "auto")])
def test_plot_tsne_one_scatter_per_label(n_features, projection_dim):
    X, y = make_blobs(n_samples=45, n_features=n_features, centers=3, random_state=0)
    fig = plot_tsne(X, y, label_names=["cat", "dog", "eel"], projection_dim=projection_dim)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert len(ax.collections) == 3
    assert sum(len(c.get_offsets()) for c in ax.collections) == 45
    assert _legend(ax) == ["cat", "dog", "eel"]


def test_plot_tsne_many_labels_no_legend_and_given_axes():
    X, y = make_blobs(n_samples=50, n_features=6, centers=25, random_state=0)
    fig = Figure()
    ax = fig.subplots()
    assert plot_tsne(X, y, ax=ax) is fig
    assert len(ax.collections) == 25 and ax.get_legend() is None


def _search(with_classifier=True):
    X, y = make_blobs(n_samples=60, n_features=6, centers=3, random_state=0)
    pipe = Pipeline([("decaf", PickLayer()), ("clf", LinearSVC())])
    grid = {"decaf__layer": ["conv5", "fc6", "fc7"]}
    if with_classifier:
        grid = [{**grid, "clf": [LinearSVC()], "clf__C": [0.01, 1.0]}, {**grid, "clf": [LogisticRegression()]}]
    return GridSearchCV(pipe, grid, cv=3).fit(X, y)


def test_plot_layer_sweep_lines_per_classifier():
    search = _search()
    fig = plot_layer_sweep(search)
    ax = fig.axes[0]
    assert len(ax.containers) == 2  # one errorbar per classifier
    assert _legend(ax) == ["LinearSVC", "LogisticRegression", "best"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["conv5", "fc6", "fc7"]
    svc_line = ax.containers[0].lines[0]
    res = search.cv_results_
    best_svc = [
        max(
            m
            for m, lay, clf in zip(res["mean_test_score"], res["param_decaf__layer"], res["param_clf"])
            if lay == layer and isinstance(clf, LinearSVC)
        )
        for layer in ("conv5", "fc6", "fc7")
    ]
    assert_allclose(svc_line.get_ydata(), best_svc)
    star = [line for line in ax.lines if line.get_marker() == "*"]
    assert len(star) == 1 and star[0].get_ydata()[0] == pytest.approx(search.best_score_)


def test_plot_layer_sweep_without_classifier_param():
    fig = plot_layer_sweep(_search(with_classifier=False))
    assert len(fig.axes[0].containers) == 1
    assert _legend(fig.axes[0]) == ["score", "best"]


def test_plot_layer_sweep_errors():
    with pytest.raises(ValueError, match="fitted"):
        plot_layer_sweep(GridSearchCV(LinearSVC(), {"C": [1]}))
    X, y = make_blobs(n_samples=30, centers=2, random_state=0)
    search = GridSearchCV(LinearSVC(), {"C": [0.1, 1]}, cv=3).fit(X, y)
    with pytest.raises(ValueError, match="__layer"):
        plot_layer_sweep(search)


def test_plot_few_shot_lines_and_ticks():
    n_train = np.array([1, 2, 5])
    curves = {
        "SVM": FewShotCurve(n_train, np.array([[0.3, 0.4], [0.5, 0.5], [0.8, 0.9]]), "p"),
        "LogReg": FewShotCurve(n_train, np.array([[0.2, 0.3], [0.4, 0.6], [0.7, 0.8]]), "p"),
    }
    fig = plot_few_shot(curves)
    ax = fig.axes[0]
    assert len(ax.containers) == 2 and _legend(ax) == ["SVM", "LogReg"]
    assert_array_equal(ax.get_xticks(), [1, 2, 5])
    assert_allclose(ax.containers[0].lines[0].get_ydata(), [0.35, 0.5, 0.85])
    single = plot_few_shot(curves["SVM"])
    assert single.axes[0].get_legend() is None and len(single.axes[0].containers) == 1


def _profile():
    return {
        "layers": ["conv1", "relu1", "pool1", "conv2", "fc6", "fc7"],
        "types": ["conv", "neuron", "pool", "conv", "fc", "fc"],
        "seconds": np.array([0.3, 0.05, 0.05, 0.2, 0.25, 0.15]),
        "batch_size": 1,
    }


def test_plot_layer_times_bars_and_pie():
    fig = plot_layer_times(_profile(), top_k=2)
    bars, pie = fig.axes
    assert len(bars.patches) == 6
    assert_allclose([p.get_height() for p in bars.patches], _profile()["seconds"])
    assert sorted(t.get_text() for t in bars.texts) == ["conv1", "fc6"]
    wedges = pie.patches
    assert len(wedges) == 4
    shares = [(w.theta2 - w.theta1) / 360 for w in wedges]
    assert_allclose(shares, [0.5, 0.4, 0.05, 0.05])  # conv, fc, pool, neuron
    labels = [t.get_text() for t in pie.texts if "%" not in t.get_text()]
    assert labels == ["conv", "fc", "pool", "neuron"]
    assert "batch_size=1" in fig._suptitle.get_text()


def test_plot_layer_times_validates_profile():
    bad = {**_profile(), "types": ["conv"] * 5 + ["softmax"]}
    with pytest.raises(ValueError, match="softmax"):
        plot_layer_times(bad)
    with pytest.raises(ValueError, match="same length"):
        plot_layer_times({**_profile(), "seconds": [1.0]})


def _draw(kind):
    """(figure, the y values of its first artist, the values they must equal) for each plotting function."""
    if kind == "tsne":
        X, y = make_blobs(n_samples=30, n_features=5, centers=3, random_state=0)
        fig = plot_tsne(X, y)
        return fig, len(fig.axes[0].collections[0].get_offsets()), np.sum(y == 0)
    if kind == "layer_sweep":
        search = _search(with_classifier=False)
        fig = plot_layer_sweep(search)
        return fig, fig.axes[0].containers[0].lines[0].get_ydata(), search.cv_results_["mean_test_score"]
    if kind == "few_shot":
        curve = FewShotCurve(np.array([1, 5]), np.array([[0.4, 0.6], [0.7, 0.9]]), "p")
        fig = plot_few_shot(curve)
        return fig, fig.axes[0].containers[0].lines[0].get_ydata(), curve.mean
    fig = plot_layer_times(_profile())
    return fig, [bar.get_height() for bar in fig.axes[0].patches], _profile()["seconds"]


@pytest.mark.parametrize("kind", ["tsne", "layer_sweep", "few_shot", "layer_times"])
def test_new_figures_show_with_pyplot(kind, shown):
    """A new figure is pyplot's: plt.show() (and Jupyter's inline backend, which shows pyplot's figures after
    each cell) displays it, with the data drawn."""
    fig, drawn, expected = _draw(kind)
    assert isinstance(fig, Figure)
    assert_allclose(drawn, expected)
    plt.show()
    assert [figure for figure, _ in shown] == [fig]
    assert shown[0][1].startswith(b"\x89PNG")
