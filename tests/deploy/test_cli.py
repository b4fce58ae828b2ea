"""``sk-decaf train`` writes a checked model; ``sk-decaf predict`` prints one label and score per image."""

import shutil

import numpy as np
import pytest

from sk_decaf.cli import main
from sk_decaf.deploy import OnnxPipeline, read_metadata
from tests.conftest import TINY


@pytest.fixture(scope="module")
def folder(demo, tmp_path_factory):
    """Three demo classes, five images each, as DIR/<class>/<image>."""
    root = tmp_path_factory.mktemp("train_data")
    for k in range(3):
        name = demo.target_names[k]
        (root / name).mkdir()
        for path in np.asarray(demo.paths)[demo.target == k][:5]:
            shutil.copy(path, root / name)
    return root


@pytest.fixture(scope="module")
def trained(folder, tmp_path_factory):
    model = tmp_path_factory.mktemp("train_out") / "model.onnx"
    status = main(
        [
            "train",
            "--data",
            str(folder),
            "-o",
            str(model),
            "--backbone",
            TINY,
            "--weights",
            "random",
            "--layers",
            "-3",
            "-2",
            "--cv",
            "3",
        ]
    )
    assert status == 0
    return model


def test_train_reports_cv_and_writes_a_model(folder, trained, demo):
    meta = read_metadata(trained)
    assert meta["sk_decaf.steps"] == [["decaf", "DeCAFTransformer"], ["sqrt", "SignedSqrt"], ["svm", "LinearSVC"]]
    assert meta["sk_decaf.outputs"]["classes"] == sorted(demo.target_names[:3])
    assert meta["sk_decaf.network"]["layers"][0] in ("blocks.4", "pre_logits")


def test_train_output(folder, tmp_path, capsys):
    model = tmp_path / "m.onnx"
    assert (
        main(
            [
                "train",
                "--data",
                str(folder),
                "-o",
                str(model),
                "--backbone",
                TINY,
                "--weights",
                "random",
                "--layers",
                "-2",
                "--cv",
                "9",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "5-fold stratified CV" in out  # capped at the smallest class's size
    assert "CV accuracy" in out and f"wrote {model}" in out and "outputs label, decision_function" in out


def test_predict_prints_label_and_score(trained, folder, capsys):
    images = sorted(str(p) for p in folder.glob("*/*"))[::4]
    assert main(["predict", str(trained), *images]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.strip().splitlines()]
    model = OnnxPipeline(trained)
    assert [row[0] for row in rows] == images
    assert [row[1] for row in rows] == model.predict(images).tolist()
    scores = model.decision_function(images).max(axis=1)
    np.testing.assert_allclose([float(row[2]) for row in rows], scores, rtol=1e-5)


def test_predict_json_and_errors(trained, folder, tmp_path, capsys):
    image = str(next(folder.glob("*/*")))
    assert main(["predict", str(trained), image, "--json"]) == 0
    row = __import__("json").loads(capsys.readouterr().out)
    assert set(row) == {"image", "label", "decision_function"} and len(row["decision_function"]) == 3
    assert main(["predict", str(trained), str(tmp_path / "missing.jpg")]) == 2
    assert "no such image file" in capsys.readouterr().err
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    assert main(["predict", str(trained), image, str(tmp_path / "bad.jpg")]) == 2
    assert f"image 1 ({str(tmp_path / 'bad.jpg')!r}): cannot decode" in capsys.readouterr().err


def test_train_takes_several_backbones_and_tta():
    from sk_decaf.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["train", "--data", "d", "-o", "m.onnx", "--backbone", "a", "b", "--tta", "10crop"])
    assert (args.backbone, args.tta) == (["a", "b"], "10crop")
    args = parser.parse_args(["train", "--data", "d", "-o", "m.onnx"])
    assert (args.backbone, args.tta) == (["efficientnet_lite0"], None)
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--data", "d", "-o", "m.onnx", "--tta", "5crop"])


def test_train_an_ensemble_with_tta(folder, tmp_path, demo, capsys):
    """Two backbones prepared differently (160 and 224 pixels), flip augmentation: one model, two inputs,
    checked against the pipeline by to_onnx before it is written."""
    model = tmp_path / "ensemble.onnx"
    argv = ["train", "--data", str(folder), "-o", str(model), "--weights", "random", "--cv", "3", "--tta", "flip"]
    assert main([*argv, "--backbone", TINY, "mobilenetv3_small_050", "--layers", "-3", "-2"]) == 0
    out = capsys.readouterr().out
    assert f"make_ensemble('{TINY}', 'mobilenetv3_small_050') -> LinearSVC(C=1.0); tta=flip; 3-fold" in out
    assert "CV over layers blocks.4 + blocks.5, pre_logits" in out and out.count("<- best") == 1
    assert "inputs images, images_1; outputs label, decision_function" in out
    meta = read_metadata(model)
    assert meta["sk_decaf.steps"] == [["features", "FeatureUnion"], ["svm", "LinearSVC"]]
    branches = meta["sk_decaf.branches"]
    assert [(b["backbone"], b["tta"], b["input"]) for b in branches] == [
        (TINY, "flip", "images"),
        ("mobilenetv3_small_050", "flip", "images_1"),
    ]
    # One grid point per layer, set on both backbones (never blocks.4 with the other's pre_logits).
    assert [b["layers"] for b in branches] in ([["blocks.4"], ["blocks.5"]], [["pre_logits"], ["pre_logits"]])
    images = sorted(str(p) for p in folder.glob("*/*"))
    assert set(OnnxPipeline(model).predict(images)) <= set(demo.target_names[:3])
