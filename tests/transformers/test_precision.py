"""precision="int8" (onnxruntime, quantized on the demo images) and "bfloat16" on the CPU, through DeCAFTransformer."""

import glob
import json
import os
import warnings

import numpy as np
import pytest
import torch

from sk_decaf import DeCAFTransformer
from sk_decaf._torch import quantize
from sk_decaf._torch.engines import TorchEngine, native_bf16
from tests.conftest import TINY, assert_features_close

pytest.importorskip("onnxruntime")


@pytest.fixture
def few_calibration_images(monkeypatch, demo, tmp_path):
    """A small calibration set (12 demo images: 6 calibrate, 6 check), so that quantizing stays fast; and a
    graph store of the test's own, so that what it builds and reuses is its own."""
    monkeypatch.setenv("SK_DECAF_HOME", str(tmp_path / "home"))
    paths = [str(p) for p in demo.paths[::17]][:12]
    monkeypatch.setattr("sk_decaf._torch.quantize.calibration_images", lambda: list(paths))
    return paths


@pytest.fixture
def quantizations(monkeypatch):
    """Count the graphs quantized (calls of quantize.quantize)."""
    calls = []
    original = quantize.quantize

    def counted(*args, **kwargs):
        calls.append(args[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(quantize, "quantize", counted)
    return calls


def tiny(**kwargs):
    params = dict(backbone=TINY, weights="random", random_state=0, layer="pre_logits")
    params.update(kwargs)
    return DeCAFTransformer(**params)


def int8_files():
    return sorted(glob.glob(os.path.join(os.environ["SK_DECAF_HOME"], "onnx", "*.int8-*.onnx")))


def test_int8_is_built_once_cached_and_reused(image_files, few_calibration_images, quantizations, monkeypatch):
    monkeypatch.setattr(quantize, "AGREEMENT", -1.0)  # random weights: accept whatever they agree to
    decaf = tiny(precision="int8").fit(image_files)
    assert decaf.engine_ == "onnxruntime" and decaf._resolution.description["precision"] == "int8"
    X = decaf.transform(image_files)
    featurizer = decaf._network.get(decaf)
    assert featurizer.computed_precision == "int8" and X.dtype == np.float32
    assert len(quantizations) == 1
    new = int8_files()
    assert len(new) == 1 and os.path.exists(new[0] + ".json")
    # stored beside the float32 graph it was quantized from, which float32 transformers share
    assert new[0].startswith(featurizer.onnx_path()[: -len(".onnx")] + ".int8-")
    record = json.load(open(new[0] + ".json"))
    assert record["calibration"] == {
        "digest": quantize.files_digest(few_calibration_images),
        "calibrate": 6,
        "check": 6,
    }
    assert record["agreement"]["images"] == 6 and record["method"] == quantize.METHOD.__dict__
    # a new transformer (another process would be the same) reads the stored graph: no new quantization
    again = tiny(precision="int8").fit(image_files)
    np.testing.assert_array_equal(again.transform(image_files), X)
    assert len(quantizations) == 1 and again._network.get(again).computed_precision == "int8"


def test_int8_is_keyed_apart_from_float32(image_files, few_calibration_images, monkeypatch, tmp_path):
    monkeypatch.setattr(quantize, "AGREEMENT", -1.0)
    cache = tmp_path / "activations.sqlite"
    f32 = tiny(cache=cache).fit(image_files)
    X32 = f32.transform(image_files)
    int8 = tiny(precision="int8", cache=cache).fit(image_files)
    assert int8._resolution.key != f32._resolution.key
    X8 = int8.transform(image_files)
    assert int8.cache_info()["computed"] == len(image_files)  # float32's rows are not served to int8
    assert not np.array_equal(X8, X32)
    assert quantize.cosines([X8], [X32]).min() > 0.5  # quantized, not unrelated
    # the float32 graph is the one float32 transformers export, shared
    assert int8._network.get(int8).onnx_path() == f32._network.get(f32).onnx_path()


def test_the_int8_key_follows_the_method_onnxruntime_and_threshold(rgb_arrays, monkeypatch):
    """int8 features change with the quantization method, onnxruntime and the threshold: so does their key (fit
    reads no image for it: the calibration set enters by its file names, its bytes key the graph itself)."""
    key = tiny(precision="int8").fit(rgb_arrays)._resolution.key
    assert tiny(precision="int8").fit(rgb_arrays)._resolution.key == key
    monkeypatch.setattr(quantize, "METHOD", quantize.Method(float_layers=1))
    assert tiny(precision="int8").fit(rgb_arrays)._resolution.key != key
    monkeypatch.undo()
    monkeypatch.setattr(quantize, "AGREEMENT", 0.5)
    assert tiny(precision="int8").fit(rgb_arrays)._resolution.key != key
    monkeypatch.undo()
    monkeypatch.setattr("onnxruntime.__version__", "0.0.0")
    assert tiny(precision="int8").fit(rgb_arrays)._resolution.key != key
    assert tiny().fit(rgb_arrays)._resolution.description.get("int8") is None  # float32 keys stay as they were


def test_int8_below_the_threshold_warns_once_and_runs_float32(
    image_files, few_calibration_images, quantizations, monkeypatch
):
    monkeypatch.setattr(quantize, "AGREEMENT", 1.5)  # more than any cosine: int8 never agrees enough
    monkeypatch.setattr("sk_decaf._torch.featurizer._REPORTED", set())
    decaf = tiny(precision="int8").fit(image_files)
    with pytest.warns(RuntimeWarning, match=r"precision='int8'.*cosine of .* \(< 1.5\); running float32") as record:
        X = decaf.transform(image_files)
    messages = [str(w.message) for w in record if "int8" in str(w.message)]
    assert len(messages) == 1 and "\n" not in messages[0]
    assert decaf._network.get(decaf).computed_precision == "float32"
    assert_features_close(X, tiny(engine="onnxruntime").fit(image_files).transform(image_files))
    # decided with the stored graph: neither quantized again nor announced again in this process
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tiny(precision="int8").fit(image_files).transform(image_files)
    assert len(quantizations) == 1
    # the measured agreement is stored, so another threshold decides again without quantizing
    monkeypatch.setattr(quantize, "AGREEMENT", -1.0)
    decaf = tiny(precision="int8").fit(image_files)
    decaf.transform(image_files)
    assert decaf._network.get(decaf).computed_precision == "int8" and len(quantizations) == 1


def test_a_damaged_record_is_rebuilt(image_files, few_calibration_images, quantizations, monkeypatch):
    monkeypatch.setattr(quantize, "AGREEMENT", -1.0)
    decaf = tiny(precision="int8", layer="blocks.1").fit(image_files)
    decaf.transform(image_files)
    graph = decaf._network.get(decaf).engine.path
    with open(graph + ".json", "w") as f:
        f.write("{not json")
    tiny(precision="int8", layer="blocks.1").fit(image_files).transform(image_files)
    assert len(quantizations) == 2 and json.load(open(graph + ".json"))["agreement"]["images"] == 6


def test_int8_of_the_real_lite0_agrees_with_float32(demo, monkeypatch):
    """Where agreement matters: EfficientNet-Lite0's ImageNet weights, calibrated on 20 demo images."""
    paths = [str(p) for p in demo.paths]
    monkeypatch.setattr("sk_decaf._torch.quantize.calibration_images", lambda: paths[::10])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback
        int8 = DeCAFTransformer(precision="int8").fit(paths[:2])
        X8 = int8.transform(paths[5::20])  # images outside the calibration set
    featurizer = int8._network.get(int8)
    assert featurizer.computed_precision == "int8"
    record = json.load(open(featurizer.engine.path + ".json"))
    assert record["agreement"]["min"] >= quantize.AGREEMENT
    X32 = DeCAFTransformer().fit(paths[:2]).transform(paths[5::20])
    assert quantize.cosines([X8], [X32]).min() > 0.97


def test_auto_never_picks_int8_or_cpu_bfloat16(rgb_arrays, monkeypatch):
    assert tiny().fit(rgb_arrays)._resolution.placement.precision == "float32"
    assert tiny(engine="torch").fit(rgb_arrays)._resolution.placement.precision == "float32"
    monkeypatch.setattr("sk_decaf.transformers._runtime.resolve_device", lambda device: torch.device("cuda"))
    placement = tiny(engine="torch").fit(rgb_arrays)._resolution.placement
    assert placement.precision == "bfloat16"  # bf16 autocast on CUDA, as before


def test_int8_on_the_torch_engine_is_refused(rgb_arrays):
    with pytest.raises(ValueError, match="precision='int8'.*engine='torch'"):
        tiny(precision="int8", engine="torch").fit(rgb_arrays)


def test_int8_on_cuda_is_refused(rgb_arrays, monkeypatch):
    monkeypatch.setattr("sk_decaf.transformers._runtime.resolve_device", lambda device: torch.device("cuda"))
    with pytest.raises(ValueError, match="precision='int8' runs on the CPU.*'cuda'"):
        tiny(precision="int8").fit(rgb_arrays)


def test_int8_without_onnxruntime_says_what_to_install(rgb_arrays, monkeypatch):
    monkeypatch.setattr("sk_decaf.transformers._runtime.onnxruntime_available", lambda: False)
    with pytest.raises(ImportError, match=r"precision='int8' needs onnxruntime.*sk-decaf\[onnx\]"):
        tiny(precision="int8").fit(rgb_arrays)


def test_bfloat16_runs_on_torch_in_its_own_slices(image_files):
    decaf = tiny(precision="bfloat16").fit(image_files)
    assert decaf.engine_ == "torch"
    X = decaf.transform(image_files)
    engine = decaf._network.get(decaf).engine
    assert engine.precision == "bfloat16" and engine.cpu_slice == TorchEngine.cpu_slice_bf16
    X32 = tiny(engine="torch").fit(image_files).transform(image_files)
    assert quantize.cosines([X], [X32]).min() > 0.99


@pytest.mark.parametrize("report", [True, False, "missing", "raises"])
def test_native_bf16_follows_onednn_and_never_fails(monkeypatch, report):
    """Whatever this CPU has: native_bf16 reports what oneDNN reports, and False when torch cannot tell."""

    def broken():
        raise RuntimeError("no such operator")

    check = {"missing": None, "raises": broken}.get(report, lambda: report)
    monkeypatch.setattr("sk_decaf._torch.engines._onednn_bf16_check", lambda: check)
    assert native_bf16() is (report is True)


def test_native_bf16_is_a_boolean_here():
    assert native_bf16() in (True, False)


def test_bfloat16_is_computed_without_native_support(image_files, monkeypatch):
    """A CPU without bfloat16 instructions still computes bfloat16 (oneDNN emulates it, more slowly)."""
    monkeypatch.setattr("sk_decaf._torch.engines._onednn_bf16_check", lambda: lambda: False)
    assert native_bf16() is False
    decaf = tiny(precision="bfloat16").fit(image_files)
    X = decaf.transform(image_files)
    assert decaf._network.get(decaf).computed_precision == "bfloat16"
    X32 = tiny(engine="torch").fit(image_files).transform(image_files)
    assert np.abs(X - X32).max() > 0  # bf16 rounding, not float32


def test_fit_reads_no_image_and_builds_nothing(few_calibration_images, quantizations, tmp_path):
    """fit stays as cheap as float32's: it neither decodes an image nor exports or quantizes a graph."""
    missing = [str(tmp_path / f"missing{i}.jpg") for i in range(3)]  # never opened: fit would fail on them
    decaf = tiny(precision="int8").fit(missing)
    assert decaf._resolution.placement.precision == "int8"
    assert quantizations == [] and int8_files() == []


def test_two_threads_quantize_once_and_agree(image_files, few_calibration_images, quantizations, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setattr(quantize, "AGREEMENT", -1.0)
    decaf = tiny(precision="int8").fit(image_files)
    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(lambda _: decaf.transform(image_files), range(2))
    np.testing.assert_array_equal(first, second)
    assert len(quantizations) == 1 and len(int8_files()) == 1
    assert decaf._network.get(decaf).computed_precision == "int8"
    # two transformers of the same network, in two threads: one graph built, the other reads it
    others = [tiny(precision="int8", layer="blocks.1").fit(image_files) for _ in range(2)]
    with ThreadPoolExecutor(2) as pool:
        a, b = pool.map(lambda d: d.transform(image_files), others)
    np.testing.assert_array_equal(a, b)
    assert len(quantizations) == 2 and len(int8_files()) == 2
    assert all(json.load(open(path + ".json"))["agreement"]["images"] == 6 for path in int8_files())


def test_another_process_reuses_the_stored_graph(image_files, few_calibration_images, monkeypatch):
    """A second process reads the int8 graph and its record; it neither quantizes nor rewrites them."""
    import subprocess
    import sys

    monkeypatch.setattr(quantize, "AGREEMENT", -1.0)
    X = tiny(precision="int8").fit(image_files).transform(image_files)
    (graph,) = int8_files()
    stamps = (os.stat(graph).st_mtime_ns, os.stat(graph + ".json").st_mtime_ns)
    np.save(os.path.join(os.environ["SK_DECAF_HOME"], "X.npy"), X)
    script = f"""
import json, os, sys
import numpy as np
from sk_decaf import DeCAFTransformer
from sk_decaf._torch import quantize
quantize.AGREEMENT = -1.0
quantize.calibration_images = lambda: {few_calibration_images!r}
def refuse(*args, **kwargs):
    raise AssertionError("quantized again")
quantize.quantize = refuse
decaf = DeCAFTransformer(backbone={TINY!r}, weights="random", random_state=0, layer="pre_logits", precision="int8")
X = decaf.fit({image_files!r}).transform({image_files!r})
assert decaf._network.get(decaf).computed_precision == "int8"
np.testing.assert_array_equal(X, np.load(os.path.join(os.environ["SK_DECAF_HOME"], "X.npy")))
"""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (os.stat(graph).st_mtime_ns, os.stat(graph + ".json").st_mtime_ns) == stamps
