"""The int8 machinery on its own: shape folding, the calibration set, the agreement measure, quantization."""

import os

import numpy as np
import pytest
import torch
from timm.layers import Conv2dSame
from torch import nn

from sk_decaf._torch import quantize
from sk_decaf._torch.engines import export_onnx

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


class _Same(nn.Module):
    """TensorFlow-style "same" convolutions (EfficientNet-Lite's), whose padding is computed from the input's size,
    then a reshape that reads the batch size: shape arithmetic that depends on the batch and some that does not."""

    def __init__(self):
        super().__init__()
        self.conv1 = Conv2dSame(3, 8, 3, stride=2)
        self.conv2 = Conv2dSame(8, 8, 3, stride=2, groups=8)
        self.conv3 = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        x = self.conv3(torch.relu(self.conv2(torch.relu(self.conv1(x.float() / 255)))))
        return (x.reshape(x.shape[0], -1).mean(dim=1, keepdim=True) + x.mean(dim=(2, 3)),)


def _exported(tmp_path, size=(3, 21, 17)):
    torch.manual_seed(0)
    module = _Same().eval()
    example = torch.zeros((2, *size), dtype=torch.uint8)
    return module, export_onnx(module, tmp_path / "same.onnx", example, output_names=["out"])


def _session(model):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def test_fold_shapes_folds_the_padding_and_keeps_the_outputs(tmp_path):
    module, path = _exported(tmp_path)
    model = onnx.load(path)
    folded = quantize.fold_shapes(model)
    onnx.checker.check_model(folded)
    ops = [n.op_type for n in folded.graph.node]
    assert "Ceil" in [n.op_type for n in model.graph.node] and "Ceil" not in ops  # the pad arithmetic is gone
    assert ops.count("Pad") == 2 and "Shape" in ops  # the batch-dependent reshape still reads the shape
    rng = np.random.default_rng(0)
    for batch in (1, 4, 7):  # other batch sizes than the two it was folded with
        x = rng.integers(0, 256, (batch, 3, 21, 17), dtype=np.uint8)
        expected = _session(model).run(None, {"images": x})[0]
        np.testing.assert_array_equal(_session(folded).run(None, {"images": x})[0], expected)
        with torch.inference_mode():
            np.testing.assert_allclose(expected, module(torch.from_numpy(x))[0].numpy(), rtol=1e-4, atol=1e-5)


def test_fold_shapes_leaves_a_graph_with_another_dynamic_axis(tmp_path):
    _, path = _exported(tmp_path)
    model = onnx.load(path)
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "height"
    assert quantize.fold_shapes(model) is model


def test_cosines_per_image_lowest_over_the_outputs():
    a = np.array([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    b = np.array([[2.0, 0.0], [0.0, 0.0], [1.0, -1.0], [1.0, 0.0]])
    np.testing.assert_allclose(quantize.cosines([a], [b]), [1.0, 1.0, 0.0, 0.0])
    c = np.array([[1.0, 1.0], [1.0, 0.0], [3.0, 3.0], [1.0, 0.0]])
    d = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 1.0], [1.0, 0.0]])
    np.testing.assert_allclose(quantize.cosines([a, c], [b, d]), [np.sqrt(0.5), 1.0, 0.0, 0.0])


def test_the_calibration_set_is_the_demo_set_split_in_two(demo):
    images = quantize.calibration_images()
    assert images == sorted(str(p) for p in demo.paths) and len(images) == 200
    calibrate, check = quantize.calibration_split(reversed(images))
    assert calibrate == images[0::2] and check == images[1::2]
    assert len({os.path.dirname(p) for p in calibrate}) == 10  # every class calibrates


def test_files_digest_follows_names_and_bytes(tmp_path):
    (tmp_path / "set").mkdir()
    a, b = tmp_path / "set" / "a.jpg", tmp_path / "set" / "b.jpg"
    a.write_bytes(b"one")
    b.write_bytes(b"two")
    digest = quantize.files_digest([str(a), str(b)])
    assert digest == quantize.files_digest([str(b), str(a)])  # order does not matter
    b.write_bytes(b"three")
    assert quantize.files_digest([str(a), str(b)]) != digest
    (tmp_path / "elsewhere" / "set").mkdir(parents=True)
    moved = tmp_path / "elsewhere" / "set"
    (moved / "a.jpg").write_bytes(b"one")
    (moved / "b.jpg").write_bytes(b"three")
    assert quantize.files_digest([str(moved / "a.jpg"), str(moved / "b.jpg")]) == quantize.files_digest(
        [str(a), str(b)]
    )
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "a.jpg").write_bytes(b"one")  # the same image in another class folder
    assert quantize.files_digest([str(tmp_path / "other" / "a.jpg"), str(b)]) != quantize.files_digest([str(a), str(b)])


@pytest.mark.parametrize(
    "method", [quantize.Method(format="qdq", float_layers=1), quantize.Method(format="qoperator", float_layers=1)]
)
def test_quantize_keeps_the_first_convolutions_float_and_runs(tmp_path, method):
    _, path = _exported(tmp_path)
    rng = np.random.default_rng(1)
    calibration = rng.integers(0, 256, (24, 3, 21, 17), dtype=np.uint8)
    out = quantize.quantize(path, str(tmp_path / "int8.onnx"), calibration, method)
    model = onnx.load(out)
    ops = [n.op_type for n in model.graph.node]
    assert method.describe() in model.doc_string
    read = {name for n in model.graph.node for name in n.input}
    assert all(t.name in read for t in model.graph.initializer)  # none left unused (onnxruntime would log each)
    dequantized = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    if method.format == "qdq":  # every Conv stays a float Conv, fed dequantized int8 weights, but the first
        convs = [n for n in model.graph.node if n.op_type == "Conv"]
        assert len(convs) == 3 and [c.input[1] in dequantized for c in convs] == [False, True, True]
    else:  # quantized operators, but the first
        assert ops.count("QLinearConv") == 2 and ops.count("Conv") == 1
    x = rng.integers(0, 256, (5, 3, 21, 17), dtype=np.uint8)
    got = _session(model).run(None, {"images": x})[0]
    expected = _session(onnx.load(path)).run(None, {"images": x})[0]
    assert got.shape == expected.shape and quantize.cosines([got], [expected]).min() > 0.9
    assert sorted(p for p in os.listdir(tmp_path) if p.startswith(".quantize-")) == []  # no temporary left


def test_agreement_summarises_the_cosines(tmp_path):
    _, path = _exported(tmp_path)
    x = np.random.default_rng(2).integers(0, 256, (6, 3, 21, 17), dtype=np.uint8)
    agree = quantize.agreement(path, path, x)
    assert agree["images"] == 6 and agree["min"] == pytest.approx(1.0) and agree["mean"] == pytest.approx(1.0)


def test_a_bias_read_through_identity_is_quantized(tmp_path):
    """torch exports a tensor used twice as an initializer and an ``Identity`` of it; quantized operators read a
    bias only from an initializer, so the identity becomes one (the tiny test network has such biases)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)
    w = numpy_helper.from_array(rng.normal(size=(4, 3, 3, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.normal(size=4).astype(np.float32), "b")
    nodes = [
        helper.make_node("Cast", ["images"], ["x"], to=TensorProto.FLOAT),
        helper.make_node("Identity", ["b"], ["b_again"]),
        helper.make_node("Conv", ["x", "w", "b_again"], ["y"]),
        helper.make_node("Relu", ["y"], ["out"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("images", TensorProto.UINT8, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)],
        [w, b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = str(tmp_path / "identity.onnx")
    onnx.save(model, path)
    x = rng.integers(0, 256, (16, 3, 8, 8), dtype=np.uint8)
    out = quantize.quantize(path, str(tmp_path / "int8.onnx"), x, quantize.Method(format="qoperator", float_layers=0))
    ops = [n.op_type for n in onnx.load(out).graph.node]
    assert "QLinearConv" in ops and "Identity" not in ops
    assert quantize.agreement(out, path, x)["min"] > 0.99
