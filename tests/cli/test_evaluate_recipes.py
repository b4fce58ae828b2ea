"""``sk-decaf evaluate`` with several backbones (make_ensemble) and test-time augmentation (--tta)."""

import re
import shutil

import pytest
from numpy.testing import assert_allclose
from sklearn.pipeline import make_pipeline
from sklearn.svm import LinearSVC

from sk_decaf import DeCAFTransformer, make_ensemble
from sk_decaf.cli import build_parser, main
from sk_decaf.datasets import load_image_folder
from sk_decaf.evaluation import evaluate
from tests.conftest import TINY

OTHER = "test_efficientnet_gn"  # a second tiny random-weight model
NET = ["--weights", "random", "--engine", "torch"]
DECAF = {"weights": "random", "engine": "torch", "random_state": 0}


@pytest.fixture(scope="module")
def class_folder(tmp_path_factory, demo):
    """3 classes x 5 demo images."""
    root = tmp_path_factory.mktemp("classes")
    for c in range(3):
        folder = root / demo.target_names[c]
        folder.mkdir()
        for path in [p for p, t in zip(demo.paths, demo.target) if t == c][:5]:
            shutil.copy(path, folder)
    return root


def _cells(text):
    """(mean, std) of each "mean ± std" cell of the printed table, in percent."""
    return [(float(m), float(s)) for m, s in re.findall(r"(\d+\.\d\d) ± (\d+\.\d\d)", text)]


def _run(folder, cache, extra, capsys):
    argv = [
        "evaluate",
        "--data",
        str(folder),
        "--protocol",
        "per-class",
        "--n-train",
        "2",
        "--splits",
        "3",
        "--cache",
        cache,
        *NET,
        *extra,
    ]
    assert main(argv) == 0
    return capsys.readouterr().out


def _api_score(features, folder):
    res = evaluate(
        make_pipeline(features, LinearSVC()),
        load_image_folder(folder),
        protocol="per-class",
        n_train=2,
        n_splits=3,
        random_state=0,
    )
    return [100 * res.mean, 100 * res.std]


def test_backbone_takes_several_names_and_tta_a_mode():
    parser = build_parser()
    args = parser.parse_args(["evaluate", "--data", "d", "--backbone", "a", "b", "--tta", "12jitter"])
    assert (args.backbone, args.tta) == (["a", "b"], "12jitter")
    args = parser.parse_args(["evaluate", "--data", "d"])
    assert (args.backbone, args.tta) == (["efficientnet_lite0"], None)
    with pytest.raises(SystemExit):
        parser.parse_args(["evaluate", "--data", "d", "--tta", "5crop"])


def test_several_backbones_score_as_make_ensemble(class_folder, tmp_path, capsys):
    cache = str(tmp_path / "activations.sqlite")
    out = _run(class_folder, cache, ["--backbone", TINY, OTHER], capsys)
    assert f"backbone {TINY} + {OTHER}, LinearSVC" in out
    # Each backbone ran once per image; the printed score is the Python API's on the same splits and features.
    assert "15 + 15 images went through the networks" in out
    [cell] = _cells(out)
    assert_allclose(
        cell, _api_score(make_ensemble(TINY, OTHER, cache=cache, decaf_params=DECAF), class_folder), atol=0.006
    )


def test_tta_scores_as_the_transformer_with_tta(class_folder, tmp_path, capsys):
    cache = str(tmp_path / "activations.sqlite")
    out = _run(class_folder, cache, ["--backbone", TINY, "--tta", "flip"], capsys)
    assert f"backbone {TINY}, tta=flip, LinearSVC" in out
    assert "15 images went through the network\n" in out
    flip = DeCAFTransformer(TINY, tta="flip", cache=cache, **DECAF)
    [cell] = _cells(out)
    assert_allclose(cell, _api_score(flip, class_folder), atol=0.006)
    # The flipped features are the ones the command cached.
    assert flip.fit(load_image_folder(class_folder).paths).cache_info()["computed"] == 15


@pytest.mark.parametrize("terminal", [True, False])
def test_progress_shows_in_a_terminal_without_verbose(class_folder, tmp_path, capsys, monkeypatch, terminal):
    """Evaluations take minutes: a terminal sees the progress bar without -v; logs and pipes stay quiet."""
    monkeypatch.setattr("sys.stderr.isatty", lambda: terminal)
    argv = [
        "evaluate",
        "--data",
        str(class_folder),
        "--protocol",
        "per-class",
        "--n-train",
        "2",
        "--splits",
        "2",
        "--cache",
        str(tmp_path / "c.sqlite"),
        *NET,
    ]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert ("DeCAF: 100%" in err) == terminal
