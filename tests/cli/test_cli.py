"""The ``sk-decaf`` command line: demo, extract and evaluate, on the tiny random-weight backbone."""

import re
import shutil

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.svm import LinearSVC

from sk_decaf import DeCAFTransformer
from sk_decaf.cli import build_parser, main
from sk_decaf.datasets import load_image_folder, load_office31, load_office_caltech10
from sk_decaf.evaluation import evaluate, evaluate_office
from tests.conftest import TINY, assert_features_close

# torch engine: no ONNX export, so each command starts in about a second.
NET = ["--backbone", TINY, "--weights", "random", "--engine", "torch"]
PNG = b"\x89PNG\r\n\x1a\n"


def _copy(demo, root, classes, images):
    """Copy `images` (a slice) of each of `classes` demo classes to root/<class>/."""
    for c in range(classes):
        paths = [p for p, t in zip(demo.paths, demo.target) if t == c][images]
        folder = root / demo.target_names[c]
        folder.mkdir(parents=True)
        for path in paths:
            shutil.copy(path, folder)


@pytest.fixture(scope="module")
def class_folder(tmp_path_factory, demo):
    """3 classes x 5 demo images."""
    root = tmp_path_factory.mktemp("classes")
    _copy(demo, root, 3, slice(0, 5))
    return root


@pytest.fixture(scope="module", params=["office_caltech10", "office31"])
def office_folder(request, tmp_path_factory, demo):
    """Two domains of 3 classes: amazon (5 images per class) and webcam (4 other images per class)."""
    root = tmp_path_factory.mktemp(request.param)
    sub = "images" if request.param == "office31" else ""
    _copy(demo, root / "amazon" / sub, 3, slice(0, 5))
    _copy(demo, root / "webcam" / sub, 3, slice(5, 9))
    return root, request.param


def _decaf(layer, cache=None):
    return DeCAFTransformer(TINY, weights="random", engine="torch", random_state=0, layer=layer, cache=cache)


def _check_features(cache, paths, layer, n_images):
    """The command's features, read back from its --cache, are the library's; the API runs computed none.

    Scores are then compared on these very features: exact, whatever kernels the CPU picks, whereas
    features computed twice in different batches differ by float32 rounding and may flip a near-tie
    prediction, one image being 11 points on these tiny test sets.
    """
    cached = _decaf(layer, cache=cache).fit(paths)
    assert_features_close(cached.transform(paths), _decaf(layer).fit_transform(paths))
    assert cached.cache_info()["computed"] == n_images  # every API lookup above was a cache hit


def _cells(text):
    """(mean, std) of each "mean ± std" cell of a printed table, in percent."""
    return [(float(m), float(s)) for m, s in re.findall(r"(\d+\.\d\d) ± (\d+\.\d\d)", text)]


def test_parser_lists_the_three_commands():
    text = build_parser().format_help()
    for command in ("demo", "extract", "evaluate"):
        assert command in text


def test_evaluate_per_class_table_and_figures(class_folder, tmp_path, capsys):
    figures, cache = tmp_path / "figures", str(tmp_path / "activations.sqlite")
    argv = [
        "evaluate",
        "--data",
        str(class_folder),
        "--protocol",
        "per-class",
        "--n-train",
        "2",
        "--splits",
        "3",
        "--layer",
        "-1",
        "-2",
        "--figures",
        str(figures),
        "--cache",
        cache,
        *NET,
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "15 images, 3 classes" in out
    assert "per-class: 2 train / the rest test images per class, 3 random splits" in out
    rows = [line.split()[0] for line in out.splitlines() if "±" in line]
    assert rows == ["logits", "pre_logits"]
    # The printed numbers are those of the Python API on the same splits and features.
    data = load_image_folder(class_folder)
    for (mean, std), layer in zip(_cells(out), rows):
        res = evaluate(
            make_pipeline(_decaf(layer, cache), LinearSVC()),
            data,
            protocol="per-class",
            n_train=2,
            n_splits=3,
            random_state=0,
        )
        assert_allclose([mean, std], [100 * res.mean, 100 * res.std], atol=0.006)
    for layer in rows:
        _check_features(cache, data.paths, layer, 15)
    # One forward pass per image for both layers, every split, the few-shot curve and the t-SNE.
    assert "15 images went through the network" in out
    for name in ("few_shot.png", "tsne.png"):
        assert (figures / name).read_bytes()[:8] == PNG
        assert f"saved {figures / name}" in out


def test_evaluate_logreg_default_layer(class_folder, tmp_path, capsys):
    cache = str(tmp_path / "activations.sqlite")
    argv = [
        "evaluate",
        "--data",
        str(class_folder),
        "--protocol",
        "per-class",
        "--n-train",
        "3",
        "--splits",
        "2",
        "--classifier",
        "logreg",
        "-C",
        "0.5",
        "--cache",
        cache,
        *NET,
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "LogisticRegression(C=0.5)" in out
    assert [line.split()[0] for line in out.splitlines() if "±" in line] == ["pre_logits"]
    data = load_image_folder(class_folder)
    res = evaluate(
        make_pipeline(_decaf(None, cache), LogisticRegression(C=0.5, max_iter=2000)),
        data,
        protocol="per-class",
        n_train=3,
        n_splits=2,
        random_state=0,
    )
    assert_allclose(_cells(out), [(100 * res.mean, 100 * res.std)], atol=0.006)
    _check_features(cache, data.paths, None, 15)


def test_evaluate_office(office_folder, tmp_path, capsys):
    root, layout = office_folder
    figures, cache = tmp_path / "figures", str(tmp_path / "activations.sqlite")
    argv = [
        "evaluate",
        "--data",
        str(root),
        "--protocol",
        "office",
        "--source",
        "amazon",
        "--target",
        "webcam",
        "--n-source",
        "3",
        "--n-target",
        "1",
        "--splits",
        "2",
        "--figures",
        str(figures),
        "--cache",
        cache,
        *NET,
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "27 images, 3 classes" in out
    assert (
        "protocol office: amazon -> webcam: 3 source + 1 target images per class, rest of the "
        "target tested, 2 random splits; settings S, T, ST"
    ) in out
    settings = [line.split()[1] for line in out.splitlines() if "±" in line]
    assert settings == ["S", "T", "ST"]
    loader = load_office31 if layout == "office31" else load_office_caltech10
    data = loader(root, domain=["amazon", "webcam"])
    expected = evaluate_office(
        make_pipeline(_decaf(None, cache), LinearSVC()),
        data,
        source="amazon",
        target="webcam",
        n_source_per_class=3,
        n_target_per_class=1,
        n_splits=2,
    )
    assert_allclose(_cells(out), [(100 * r.mean, 100 * r.std) for r in expected.values()], atol=0.006)
    _check_features(cache, data.paths, None, 27)
    # 9 test images per split: the 4 - 1 unlabelled webcam images of each class.
    assert all(line.split()[-1] == "9" for line in out.splitlines() if "±" in line)
    assert (figures / "tsne_office.png").read_bytes()[:8] == PNG


def test_evaluate_office_settings_subset(office_folder, capsys):
    root, _ = office_folder
    argv = [
        "evaluate",
        "--data",
        str(root),
        "--protocol",
        "office",
        "--settings",
        "ST",
        "--n-source",
        "2",
        "--n-target",
        "2",
        "--splits",
        "2",
        *NET,
    ]
    assert main(argv) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if "±" in line]
    assert [row[1] for row in rows] == ["ST"]
    assert rows[0][-2:] == ["12", "6"]  # 3 classes x (2 + 2) training, 3 x (4 - 2) test


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--protocol", "caltech101"], "fewer than 31"),
        (["--protocol", "per-class"], "n_train is required"),
        (["--protocol", "office", "--source", "webcam"], "both 'webcam'"),
    ],
)
def test_evaluate_errors_exit_2(class_folder, capsys, extra, message):
    assert main(["evaluate", "--data", str(class_folder), *extra, *NET]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sk-decaf evaluate: error:") and message in err


def test_evaluate_office_unknown_domain(office_folder, capsys):
    root, _ = office_folder
    argv = ["evaluate", "--data", str(root), "--protocol", "office", "--target", "dslr", *NET]
    assert main(argv) == 2
    assert "unknown domain(s) ['dslr']" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["evaluate", "demo", "extract"])
def test_missing_folder_exit_2(tmp_path, capsys, command):
    missing = str(tmp_path / "no_such_folder")
    argv = {
        "evaluate": ["evaluate", "--data", missing],
        "demo": ["demo", "--data", missing],
        "extract": ["extract", missing, "-o", str(tmp_path / "f.npz")],
    }[command]
    assert main([*argv, *NET]) == 2
    err = capsys.readouterr().err
    assert f"sk-decaf {command}: error:" in err
    assert "no_such_folder" in err and "not found" in err and "Expected layout" in err


def test_empty_folder_exit_2(tmp_path, capsys):
    (tmp_path / "empty_class").mkdir()
    assert main(["evaluate", "--data", str(tmp_path), *NET]) == 2
    assert "no images found" in capsys.readouterr().err


def test_demo_on_a_folder(class_folder, tmp_path, capsys):
    cache = str(tmp_path / "activations.sqlite")
    argv = ["demo", "--data", str(class_folder), "--cv", "2", "--layers", "-1", "-2", "--cache", cache, *NET]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "15 images, 3 classes" in out
    assert "2-fold stratified CV" in out
    # The table and the best layer are those of the same grid search written with the API, on the same
    # features (read from the command's cache).
    data = load_image_folder(class_folder)
    pipe = Pipeline([("decaf", _decaf(None, cache)), ("svm", LinearSVC())])
    grid = GridSearchCV(pipe, {"decaf__layer": [-1, -2]}, cv=StratifiedKFold(2, shuffle=True, random_state=0))
    grid.fit(data.paths, data.target)
    table = re.findall(r"^(-\d)\s+(\d\.\d{3})\s+(\d\.\d{3})", out, flags=re.M)
    assert [int(layer) for layer, _, _ in table] == [-1, -2]
    assert_allclose(
        [[float(m), float(s)] for _, m, s in table],
        np.c_[grid.cv_results_["mean_test_score"], grid.cv_results_["std_test_score"]],
        atol=6e-4,
    )
    match = re.search(r"best layer: (\S+) \(mean accuracy (\d\.\d+)", out)
    assert match is not None and int(match.group(1)) == grid.best_params_["decaf__layer"]
    assert_allclose(float(match.group(2)), grid.best_score_, atol=6e-4)
    for layer in (-1, -2):
        _check_features(cache, data.paths, layer, 15)


@pytest.mark.parametrize("layers", [["-1"], ["-1", "-2"]])
def test_extract_writes_npz(class_folder, tmp_path, capsys, layers):
    out = tmp_path / "features.npz"
    assert main(["extract", str(class_folder), "-o", str(out), "--layer", *layers, *NET]) == 0
    assert "15 images" in capsys.readouterr().out
    with np.load(out) as npz:
        assert set(npz.files) == {"features", "paths", "target", "target_names", "layers", "feature_names"}
        decaf = _decaf([int(k) for k in layers]).fit(["x.jpg"])
        assert npz["features"].shape == (15, decaf.n_features_out_)
        assert npz["features"].dtype == np.float32 and np.isfinite(npz["features"]).all()
        assert npz["layers"].tolist() == decaf.layers_
        assert npz["feature_names"].tolist() == decaf.get_feature_names_out().tolist()
        data = load_image_folder(class_folder)
        assert npz["paths"].tolist() == data.paths
        assert npz["target"].tolist() == data.target.tolist()
        assert npz["target_names"].tolist() == data.target_names.tolist()
        # --weights random is seeded (--weights-seed 0): the file holds the library's features
        assert_features_close(npz["features"], decaf.transform(data.paths))


@pytest.mark.parametrize("command", ["demo", "extract"])
def test_a_corrupt_image_stops_the_command_and_names_the_file(command, class_folder, tmp_path, capsys):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(class_folder, root)
    first_class = sorted(p for p in root.iterdir() if p.is_dir())[0]
    bad = first_class / "zz_truncated.jpg"
    bad.write_bytes(next(first_class.glob("*.jpg")).read_bytes()[:300])
    args = (
        ["demo", "--data", str(root), "--cv", "2"]
        if command == "demo"
        else ["extract", str(root), "-o", str(tmp_path / "f.npz")]
    )
    assert main([*args, *NET]) == 2
    err = capsys.readouterr().err
    assert "zz_truncated.jpg" in err and "error" in err
    assert "nan" not in err.lower()  # no silent NaN scores: the first failure stops the run


def test_extract_with_input_size_and_a_class_token(class_folder, tmp_path, capsys):
    """--input-size and the token poolings reach DeCAFTransformer: a ViT's final norm, cls+avg, at 96 x 96."""
    out = tmp_path / "vit.npz"
    args = ["extract", str(class_folder), "-o", str(out), "--layer", "norm", "--pooling", "cls+avg"]
    net = ["--backbone", "test_vit", "--weights", "random", "--engine", "torch", "--input-size", "96"]
    assert main([*args, *net]) == 0
    decaf = DeCAFTransformer(
        "test_vit", weights="random", engine="torch", random_state=0, layer="norm", pooling="cls+avg", input_size=96
    )
    data = load_image_folder(class_folder)
    with np.load(out) as npz:
        assert_features_close(npz["features"], decaf.fit_transform(data.paths))
    assert decaf.data_config_["input_size"] == (3, 96, 96)
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main([*args, *net[:-1], "96x"])
    assert "expected N or HxW" in capsys.readouterr().err


def test_backbone_at_its_own_input_size_in_an_ensemble(capsys):
    """--backbone NAME@SIZE: that branch runs at SIZE, the others at theirs (or at --input-size)."""
    from sk_decaf.cli._common import feature_transformers, make_features, transformer_kwargs

    args = build_parser().parse_args(["evaluate", "--data", "x", *NET, "--backbone", TINY, f"{TINY}@96", "test_vit"])
    union = make_features(args, layer=None, cache=None)
    assert [d.input_size for d in feature_transformers(union)] == [None, 96, None]
    assert [d.backbone for d in feature_transformers(union)] == [TINY, TINY, "test_vit"]
    single = ["extract", "x", "-o", "f.npz", *NET, "--backbone", f"{TINY}@64x80", "--input-size", "96"]
    kwargs = transformer_kwargs(build_parser().parse_args(single))
    assert (kwargs["backbone"], kwargs["input_size"]) == (TINY, (64, 80))
    with pytest.raises(SystemExit):
        build_parser().parse_args(["evaluate", "--data", "x", *NET, "--backbone", f"{TINY}@big"])
    assert "expected N or HxW" in capsys.readouterr().err
