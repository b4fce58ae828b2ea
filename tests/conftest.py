"""Shared fixtures: small images of every kind, the demo set, the shared data folder, an isolated home."""

import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.utils.estimator_checks import (
    check_do_not_raise_errors_in_init_or_set_params,
    check_estimator_cloneable,
    check_estimator_repr,
    check_get_params_invariance,
    check_no_attributes_set_in_init,
    check_set_params,
)

REPO = Path(__file__).resolve().parents[1]

#: A small random-weight timm model used wherever the real network is not the point.
TINY = "test_efficientnet"

#: scikit-learn's estimator checks that apply to estimators whose input is images, not a feature matrix
#: (their array checks cannot run; these API-level ones can).
API_CHECKS = [
    check_no_attributes_set_in_init,
    check_do_not_raise_errors_in_init_or_set_params,
    check_get_params_invariance,
    check_set_params,
    check_estimator_cloneable,
    check_estimator_repr,
]


def assert_features_close(actual, desired, rtol=1e-4):
    """Float32 network outputs of two forward passes agree to ``rtol``, relative to the largest activation.

    CPUs (and one CPU, for different batch sizes) pick different oneDNN/BLAS kernels, which sum in different
    orders: two passes over the same image agree to about 1e-5 of the activations' scale, not bitwise. The
    absolute tolerance is ``rtol`` times the largest magnitude of ``desired``, so that it scales with the
    network (the random-weight test models have activations of 1e-3) and near-zero entries do not fail.
    """
    desired = np.asarray(desired)
    scale = float(np.abs(desired).max()) if desired.size else 0.0
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=rtol * scale)


def run_in_threads(target, n_threads, timeout=120):
    """Call ``target(i)`` in `n_threads` threads released at the same moment; fail on any exception.

    Every exception a thread raises (``AssertionError`` and ``BaseException`` included) is recorded with its
    traceback and fails the calling test: a thread's exception would otherwise only print, or become a
    warning. A thread still running after `timeout` seconds fails it too.
    """
    import threading
    import traceback

    barrier = threading.Barrier(n_threads)
    errors = []

    def run(i):
        try:
            barrier.wait(timeout)
            target(i)
        except BaseException:  # noqa: BLE001 - every failure is reported below, in the test's thread
            errors.append(f"thread {i}: {traceback.format_exc()}")
            barrier.abort()  # the others do not wait for a thread that will never arrive

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n_threads)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    hung = [i for i, thread in enumerate(threads) if thread.is_alive()]
    assert not hung, f"threads {hung} still running after {timeout} s"
    assert not errors, "\n".join(errors)


def normalised_batch(decaf, images):
    """A fitted transformer's network input for `images`, written out by hand: timm's evaluation transform
    (as ``decode="exact"`` uses), then the mean/std normalisation in float32."""
    import torch

    from sk_decaf._images import load_rgb
    from sk_decaf._torch.preprocess import build_transform

    tf = build_transform(decaf.data_config_)
    mean = torch.tensor(decaf.data_config_["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(decaf.data_config_["std"]).view(1, 3, 1, 1)
    return torch.stack([tf(load_rgb(p)) for p in images]).float().div(255).sub(mean).div(std).contiguous()


def shared_data_root():
    """``../shared/data`` next to the repository, or ``$SK_DECAF_SHARED_DATA``; None when absent."""
    root = Path(os.environ.get("SK_DECAF_SHARED_DATA", REPO.parent / "shared" / "data"))
    return root if root.is_dir() else None


@pytest.fixture
def shared_data():
    root = shared_data_root()
    if root is None:
        pytest.skip("../shared/data is not available (set SK_DECAF_SHARED_DATA to run this test)")
    return root


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Exported ONNX graphs go to a per-session folder, never to the user's ~/.cache."""
    monkeypatch.setenv("SK_DECAF_HOME", str(tmp_path_factory.getbasetemp() / "sk_decaf_home"))


@pytest.fixture(scope="session")
def demo():
    from sk_decaf.datasets import load_demo

    return load_demo()


def _pattern(h, w, seed):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([(xx * 255 // max(w - 1, 1)), (yy * 255 // max(h - 1, 1)), (xx + yy) % 256], axis=-1)
    noise = rng.integers(0, 40, size=(h, w, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def rgb_arrays():
    """Five small RGB uint8 arrays of different sizes and aspect ratios."""
    return [_pattern(h, w, s) for s, (h, w) in enumerate([(48, 64), (64, 48), (40, 40), (90, 30), (33, 77)])]


@pytest.fixture(scope="session")
def image_files(tmp_path_factory, rgb_arrays):
    """The same arrays saved as JPEG and PNG files."""
    folder = tmp_path_factory.mktemp("images")
    paths = []
    for i, arr in enumerate(rgb_arrays):
        ext = "jpg" if i % 2 == 0 else "png"
        path = folder / f"img_{i}.{ext}"
        Image.fromarray(arr).save(path)
        paths.append(str(path))
    return paths
