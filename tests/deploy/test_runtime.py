"""The exported model runs where torch, timm, scikit-learn and sk_decaf cannot be imported."""

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from sklearn.pipeline import make_pipeline, make_union
from sklearn.svm import LinearSVC

import sk_decaf.deploy.runtime as runtime_module
from sk_decaf import DeCAFTransformer, SignedSqrt, to_onnx
from sk_decaf.deploy.runtime import label_scores
from tests.conftest import TINY

BLOCKER = """
import sys

BLOCKED = {names!r}


class _Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{{name}} cannot be imported in this environment")
        return None


sys.meta_path.insert(0, _Blocker())
"""


def _blocked_env(tmp_path, names):
    """Environment whose Python start-up (sitecustomize) makes ``import <name>`` raise for ``names``."""
    folder = tmp_path / "blocker"
    folder.mkdir(exist_ok=True)
    (folder / "sitecustomize.py").write_text(BLOCKER.format(names=set(names)))
    return {"PYTHONPATH": str(folder), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}


@pytest.fixture(scope="module")
def exported(demo, tmp_path_factory):
    folder = tmp_path_factory.mktemp("runtime")
    X, y = demo.paths[::5], np.asarray(demo.target_names, dtype=object)[demo.target[::5]]
    decaf = DeCAFTransformer(TINY, weights="random", layer=-2, random_state=0)
    pipe = make_pipeline(decaf, SignedSqrt(), LinearSVC()).fit(X, y)
    path = folder / "model.onnx"
    to_onnx(pipe, path)
    return pipe, path, demo.paths[3::20]


def _parse(stdout):
    rows = [line.split("\t") for line in stdout.strip().splitlines()]
    return [row[0] for row in rows], [row[1] for row in rows], np.array([float(row[2]) for row in rows])


def test_runtime_file_runs_without_torch_timm_sklearn_or_sk_decaf(exported, tmp_path):
    pipe, model, images = exported
    copy = tmp_path / "runtime.py"  # the runtime is one file: copied, it runs anywhere
    shutil.copy(runtime_module.__file__, copy)
    env = _blocked_env(tmp_path, ["torch", "timm", "sklearn", "torchvision", "scipy", "skl2onnx", "sk_decaf"])
    probe = subprocess.run([sys.executable, "-c", "import torch"], env=env, capture_output=True, text=True)
    assert probe.returncode != 0 and "cannot be imported in this environment" in probe.stderr

    done = subprocess.run(
        [sys.executable, str(copy), str(model), *images], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    paths, labels, scores = _parse(done.stdout)
    assert paths == list(images)
    assert labels == pipe.predict(images).tolist()
    expected = label_scores(
        {"label": pipe.predict(images), "decision_function": pipe.decision_function(images)}, pipe.classes_
    )
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_runtime_module_api_without_torch(exported, tmp_path):
    pipe, model, images = exported
    shutil.copy(runtime_module.__file__, tmp_path / "skd_runtime.py")
    env = _blocked_env(tmp_path, ["torch", "timm", "sklearn", "sk_decaf"])
    script = textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {str(tmp_path)!r})
        from skd_runtime import OnnxPipeline
        model = OnnxPipeline({str(model)!r}, batch_size=2)
        print(json.dumps(model.decision_function({list(images)!r}).tolist()))
    """)
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    got = np.array(__import__("json").loads(done.stdout))
    expected = pipe.decision_function(images)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_cli_predict_without_torch(exported, tmp_path):
    pipe, model, images = exported
    env = _blocked_env(tmp_path, ["torch", "timm", "sklearn", "torchvision", "scipy", "skl2onnx"])
    env["PYTHONPATH"] += ":" + str(Path(__file__).resolve().parents[2])
    done = subprocess.run(
        [sys.executable, "-m", "sk_decaf", "predict", str(model), *images],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert _parse(done.stdout)[1] == pipe.predict(images).tolist()


def test_runtime_file_serves_several_networks_and_crops(demo, tmp_path):
    """A union of two networks prepared differently, one with 10-crop augmentation: two inputs, one of
    them (N, 5, 3, H, W), prepared from one decoded image by the copied runtime alone."""
    X, y = demo.paths[::10], np.asarray(demo.target_names, dtype=object)[demo.target[::10]]
    small = {"pretrained_cfg_overlay": {"input_size": (3, 128, 128), "interpolation": "bilinear", "crop_pct": 0.9}}
    union = make_union(
        DeCAFTransformer(TINY, weights="random", layer=-2, tta="10crop", random_state=0),
        make_pipeline(DeCAFTransformer(TINY, weights="random", model_kwargs=small, random_state=1), SignedSqrt()),
    )
    pipe = make_pipeline(union, LinearSVC()).fit(X, y)
    model = tmp_path / "union.onnx"
    to_onnx(pipe, model)
    images = demo.paths[5::40]
    copy = tmp_path / "runtime.py"
    shutil.copy(runtime_module.__file__, copy)
    env = _blocked_env(tmp_path, ["torch", "timm", "sklearn", "torchvision", "scipy", "skl2onnx", "sk_decaf"])
    done = subprocess.run(
        [sys.executable, str(copy), str(model), *images], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    paths, labels, scores = _parse(done.stdout)
    assert paths == list(images) and labels == pipe.predict(images).tolist()
    expected = label_scores(
        {"label": pipe.predict(images), "decision_function": pipe.decision_function(images)}, pipe.classes_
    )
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_runtime_serves_bytes_file_objects_and_stdin_without_torch(exported, tmp_path):
    """OnnxPipeline takes the images' bytes, file objects and image dicts; `runtime.py MODEL -` reads stdin."""
    pipe, model, images = exported
    shutil.copy(runtime_module.__file__, tmp_path / "skd_runtime.py")
    env = _blocked_env(tmp_path, ["torch", "timm", "sklearn", "sk_decaf"])
    script = textwrap.dedent(f"""
        import io, json, sys
        sys.path.insert(0, {str(tmp_path)!r})
        from skd_runtime import OnnxPipeline
        model = OnnxPipeline({str(model)!r}, batch_size=2)
        paths = {list(images)!r}
        data = [open(p, "rb").read() for p in paths]
        sources = [data, [io.BytesIO(d) for d in data], [{{"bytes": d, "path": None}} for d in data]]
        print(json.dumps([model.decision_function(items).tolist() for items in sources]))
    """)
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    expected = pipe.decision_function(images)
    for got in __import__("json").loads(done.stdout):
        np.testing.assert_allclose(np.array(got), expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())

    copy = tmp_path / "runtime.py"
    shutil.copy(runtime_module.__file__, copy)
    piped = subprocess.run(
        [sys.executable, str(copy), str(model), "-"],
        input=Path(images[0]).read_bytes(),
        env=env,
        capture_output=True,
        timeout=300,
    )
    assert piped.returncode == 0, piped.stderr
    paths, labels, _ = _parse(piped.stdout.decode())
    assert paths == ["-"] and labels == pipe.predict(images[:1]).tolist()
