"""The onnxruntime engine: every pooling exports on every map size; a failed export is one warning line."""

import ctypes
import os
import sys
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from timm.layers import Conv2dSame
from torch import nn

from sk_decaf import DeCAFTransformer
from sk_decaf._torch.engines import captured_output, export_onnx
from sk_decaf._torch.layers import pool
from tests.conftest import TINY, assert_features_close

ort = pytest.importorskip("onnxruntime")


def _libc_printf(text):
    """Print through the C library's buffered stdout, as C++ code does."""
    ctypes.CDLL(None).printf(text.encode())


@torch.library.custom_op("sk_decaf_tests::refused", mutates_args=())
def refused(x: torch.Tensor) -> torch.Tensor:
    """An operator the ONNX exporter has no conversion for; it talks on both streams while being exported."""
    if torch.onnx.is_in_onnx_export():
        os.write(2, b"written to file descriptor 2 during the export\n")
        _libc_printf("buffered by the C library during the export\n")
    return x.clone()


@refused.register_fake
def _(x):
    return torch.empty_like(x)


class _Refused(nn.Module):
    """A small network whose second convolution's output goes through :func:`refused`."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 8, stride=8)
        self.conv2 = nn.Conv2d(8, 8, 3, stride=2)
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        x = refused(self.conv2(torch.relu(self.conv1(x))))
        return self.head(x.mean(dim=(2, 3)))


class _Tokens(nn.Module):
    """Patches as a token sequence ``(N, T, C)``, as transformer blocks give them, then a head."""

    def __init__(self):
        super().__init__()
        self.patch = nn.Conv2d(3, 8, 32, stride=32)  # 7 x 7 map at 224
        self.mix = nn.Linear(8, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        tokens = self.mix(self.patch(x).flatten(2).transpose(1, 2))
        return self.head(tokens.mean(dim=1))


class _Pool(nn.Module):
    """:func:`pool` after a TensorFlow-style "same" convolution (EfficientNet-Lite's), which pads by amounts
    computed from the input's size: the exporter then no longer knows the map's size."""

    def __init__(self, pooling, channels=4):
        super().__init__()
        self.conv = Conv2dSame(channels, channels, 3) if channels else nn.Identity()
        self.pooling = pooling

    def forward(self, x):
        return (pool(self.conv(x), self.pooling),)


def _run_exported(module, example, x, tmp_path):
    path = export_onnx(module, tmp_path / "m.onnx", example, output_names=["out"])
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.run(None, {"images": x.numpy()})[0]


@pytest.mark.parametrize("k", [1, 2, 3, 5, 7, 16])
@pytest.mark.parametrize("size", [(14, 14), (7, 7), (10, 6), (5, 5), (1, 1)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_grid_pooling_exports_on_every_map_size(tmp_path, size, k):
    """Maps that are and are not multiples of k (in either direction), and k larger than the map."""
    rng = torch.Generator().manual_seed(0)
    example = torch.randn((2, 4, *size), generator=rng)
    x = torch.randn((3, 4, *size), generator=rng)  # another batch size: the batch axis is dynamic
    module = _Pool(k).eval()
    got = _run_exported(module, example, x, tmp_path)
    with torch.no_grad():
        expected = F.adaptive_avg_pool2d(module.conv(x), k).flatten(1).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("pooling", ["avg", "max", "flatten"])
@pytest.mark.parametrize("shape", [(4, 6, 5), (4, 12)], ids=["tokens", "vector"])
def test_global_pooling_exports_on_tokens_and_vectors(tmp_path, shape, pooling):
    rng = torch.Generator().manual_seed(1)
    example, x = torch.randn((2, *shape), generator=rng), torch.randn((3, *shape), generator=rng)
    got = _run_exported(_Pool(pooling, channels=0), example, x, tmp_path)
    np.testing.assert_allclose(got, pool(x, pooling).numpy(), rtol=1e-5, atol=1e-6)


def _both_engines(backbone, image_files, tmp_path, **params):
    """Features from engine='onnxruntime' and engine='torch'; any warning (a fallback) fails the test."""
    out = {}
    for engine in ("onnxruntime", "torch"):
        decaf = DeCAFTransformer(
            backbone,
            weights="random",
            engine=engine,
            random_state=0,
            cache=str(tmp_path / f"{engine}.sqlite"),
            **params,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            out[engine] = decaf.fit_transform(image_files)
        assert decaf._network.get(decaf).engine.name == engine
    return out["onnxruntime"], out["torch"]


@pytest.mark.parametrize("pooling", ["avg", "max", "flatten", 1, 2, 3, 5, 7])
def test_engine_exports_every_pooling_of_a_layer_list(image_files, tmp_path, pooling):
    """test_efficientnet's maps are 20, 10 and 5 wide: multiples of k or not, and k = 7 larger than 5."""
    got, expected = _both_engines(
        TINY, image_files, tmp_path, layer=["blocks.2", "blocks.3", "blocks.4"], pooling=pooling
    )
    assert_features_close(got, expected)


@pytest.mark.parametrize("pooling", [2, 3, 16])
def test_engine_exports_grids_after_same_padding(image_files, tmp_path, pooling):
    """The issue's case: EfficientNet-Lite0's 14 x 14 ``blocks.4``, whose size the exporter cannot see."""
    got, expected = _both_engines("efficientnet_lite0", image_files, tmp_path, layer="blocks.4", pooling=pooling)
    assert_features_close(got, expected)


@pytest.mark.parametrize("pooling", ["max", 2, 3])
def test_engine_exports_vision_transformer_maps(image_files, tmp_path, pooling):
    got, expected = _both_engines("test_vit", image_files, tmp_path, layer=["blocks.1", "blocks.5"], pooling=pooling)
    assert_features_close(got, expected)


@pytest.mark.parametrize("pooling", ["avg", "max", "flatten"])
def test_engine_exports_token_layers(image_files, tmp_path, pooling):
    got, expected = _both_engines(_Tokens(), image_files, tmp_path, layer=["patch", "mix"], pooling=pooling)
    assert_features_close(got, expected)


def test_captured_output_catches_every_stream_and_restores_them(capfd):
    with captured_output() as text:
        print("python stdout")
        print("python stderr", file=sys.stderr)
        os.write(1, b"fd 1\n")
        os.write(2, b"fd 2\n")
        _libc_printf("C stdio\n")
        seen = text()
    for line in ("python stdout", "python stderr", "fd 1", "fd 2", "C stdio"):
        assert line in seen
    print("after")
    os.write(2, b"after on fd 2\n")
    ctypes.CDLL(None).fflush(None)
    assert capfd.readouterr() == ("after\n", "after on fd 2\n")


def test_failed_export_is_one_warning_line_and_prints_nothing(image_files, tmp_path, capfd):
    """torch prints the traced graph (hundreds of lines) on stdout when it refuses an operator."""
    net = _Refused()
    decaf = DeCAFTransformer(net, layer="conv2", engine="onnxruntime", cache=str(tmp_path / "c.sqlite"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = decaf.fit_transform(image_files)
    ctypes.CDLL(None).fflush(None)  # anything left in the C library's buffer would surface now
    assert capfd.readouterr() == ("", "")
    [warning] = caught
    message = str(warning.message)
    assert warning.category is RuntimeWarning and "\n" not in message and len(message) < 500
    assert "sk_decaf_tests::refused" in message and "falling back to engine='torch'" in message
    torch_decaf = DeCAFTransformer(net, layer="conv2", engine="torch").fit(image_files)
    assert_features_close(got, torch_decaf.transform(image_files))


def test_the_stored_float32_graph_has_its_same_padding_folded(rgb_arrays):
    """TensorFlow-style 'same' padding is exported as shape arithmetic; the engine stores it as constants.

    The folded graph computes what torch computes, on batch sizes other than the ones it was folded with.
    """
    import onnx

    kwargs = dict(backbone=TINY, weights="random", random_state=0, model_kwargs={"pad_type": "same"})
    onnx_est = DeCAFTransformer(engine="onnxruntime", **kwargs).fit(rgb_arrays)
    torch_est = DeCAFTransformer(engine="torch", **kwargs).fit(rgb_arrays)
    assert any(isinstance(m, Conv2dSame) for m in torch_est.backbone_.modules())
    for n in (1, len(rgb_arrays)):
        assert_features_close(onnx_est.transform(rgb_arrays[:n]), torch_est.transform(rgb_arrays[:n]))
    graph = onnx_est._network.get(onnx_est).onnx_path()
    ops = {node.op_type for node in onnx.load(graph).graph.node}
    assert "Pad" in ops and not ops & {"Shape", "Ceil", "Div"}
