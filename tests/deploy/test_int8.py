"""to_onnx carries a transformer's int8 network: quantized as its engine quantizes it, checked against float32."""

import json
import warnings

import numpy as np
import pytest
from sklearn.pipeline import make_pipeline
from sklearn.svm import LinearSVC

from sk_decaf import DeCAFTransformer, SignedSqrt, to_onnx
from sk_decaf._torch import quantize
from sk_decaf.deploy import OnnxPipeline
from sk_decaf.deploy._network import network_precision
from tests.conftest import TINY


@pytest.fixture
def calibration(monkeypatch, demo):
    """20 demo images calibrate and check (10 each), so that quantizing the real Lite0 stays fast."""
    paths = [str(p) for p in demo.paths[::10]]
    monkeypatch.setattr("sk_decaf._torch.quantize.calibration_images", lambda: list(paths))
    return paths


def _ops(model):
    return {n.op_type for n in model.graph.node}


def test_to_onnx_carries_the_int8_network_of_lite0(demo, calibration, tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("SK_DECAF_HOME", str(tmp_path / "home"))
    paths, y = np.asarray(demo.paths), demo.target
    train, test = list(paths[::4]), list(paths[1::4])  # 50 train, 50 test images (none calibrates)
    pipes = {
        p: make_pipeline(DeCAFTransformer(precision=p), SignedSqrt(), LinearSVC()).fit(train, y[::4])
        for p in ("float32", "int8")
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Lite0's int8 network agrees: no fallback
        model = to_onnx(pipes["int8"], tmp_path / "int8.onnx")
    f32_model = to_onnx(pipes["float32"], tmp_path / "float32.onnx")
    decaf = pipes["int8"][0]
    assert network_precision(decaf) == "int8"
    assert json.loads(_meta(model)["sk_decaf.network"])["precision"] == "int8"
    assert {"QuantizeLinear", "DequantizeLinear"} <= _ops(model) and "QuantizeLinear" not in _ops(f32_model)
    read = {name for n in model.graph.node for name in n.input}
    assert all(t.name in read for t in model.graph.initializer)  # ReLU6's bounds, folded into ranges, are gone
    capfd.readouterr()
    served = OnnxPipeline(tmp_path / "int8.onnx")
    assert capfd.readouterr().err == ""  # onnxruntime's notes on the constants it folds away stay quiet
    got = served.predict(test)
    # the exported int8 network predicts as the transformer's int8 engine does, and as float32 does
    assert (got == pipes["int8"].predict(test)).mean() >= 0.98
    assert (got == OnnxPipeline(tmp_path / "float32.onnx").predict(test)).mean() >= 0.98
    features = {p: OnnxPipeline(tmp_path / f"{p}.onnx").run(test)["decision_function"] for p in ("float32", "int8")}
    assert np.corrcoef(features["int8"].ravel(), features["float32"].ravel())[0, 1] > 0.99
    # to_onnx's own check of the exported model against the pipeline passes for an int8 network too
    to_onnx(pipes["int8"], tmp_path / "checked.onnx", X=test[:10])


def _meta(model):
    return {p.key: p.value for p in model.metadata_props}


def test_to_onnx_int8_below_the_threshold_warns_and_exports_float32(image_files, calibration, monkeypatch, tmp_path):
    monkeypatch.setattr(quantize, "AGREEMENT", 1.5)  # no int8 network agrees that well
    monkeypatch.setattr("sk_decaf._torch.featurizer._REPORTED", set())
    decaf = DeCAFTransformer(TINY, weights="random", random_state=0, precision="int8").fit(image_files)
    with pytest.warns(RuntimeWarning, match=r"precision='int8'.*cosine of .* \(< 1.5\); exporting it in float32"):
        model = to_onnx(decaf, tmp_path / "model.onnx")
    assert network_precision(decaf) == "float32" and "QuantizeLinear" not in _ops(model)
    assert json.loads(_meta(model)["sk_decaf.network"])["precision"] == "float32"
