"""Every string parameter of every public estimator is validated by name.

A typo (``device="gpu"``, ``backbone="resnet5O"``, ``pooling="mean"``) must be a ``ValueError`` whose message names
the parameter, raised by ``fit``, never an error from deep inside torch or timm. The estimators and their string
parameters are discovered, so a new one is covered without editing this file.
"""

import inspect

import numpy as np
import pytest
from sklearn.base import BaseEstimator, clone

import sk_decaf
import sk_decaf.domain
import sk_decaf.heads
from tests.conftest import TINY

JUNK = "no-such-value"

#: String parameters for which every string is valid, with the reason.
FREE_STRINGS = {
    ("DeCAFTransformer", "cache"): "a file path (created when missing)",
    ("FineTunedClassifier", "optimizer"): "validated like the others; a class is also accepted",
}

#: Settings that let each image estimator fit quickly on tiny images.
IMAGE_SETTINGS = {"backbone": TINY, "weights": "random", "random_state": 0}
FINETUNE_SETTINGS = {"max_epochs": 1, "early_stopping": False, "head_init": "random", "batch_size": 2}


def _estimator_classes():
    found = {}
    for module in (sk_decaf, sk_decaf.domain, sk_decaf.heads):
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj) and issubclass(obj, BaseEstimator) and not inspect.isabstract(obj):
                if not name.startswith("Base"):
                    found[obj.__name__] = obj
    return [found[name] for name in sorted(found)]


def _takes_strings(cls, name, default):
    constraints = getattr(cls, "_parameter_constraints", {}).get(name, [])
    return isinstance(default, str) or any(c is str or type(c).__name__ == "StrOptions" for c in constraints)


def _cases():
    cases = []
    for cls in _estimator_classes():
        for name, param in inspect.signature(cls).parameters.items():
            if param.default is inspect.Parameter.empty or (cls.__name__, name) in FREE_STRINGS:
                continue
            if _takes_strings(cls, name, param.default) and name != "target_domain":  # any label is a label
                cases.append(pytest.param(cls, name, id=f"{cls.__name__}-{name}"))
    return cases


def _fit(estimator, tmp_path):
    if not estimator.__sklearn_tags__().input_tags.two_d_array:  # images
        rng = np.random.default_rng(0)
        images = [rng.integers(0, 255, (40, 48, 3), dtype=np.uint8) for _ in range(4)]
        settings = {k: v for k, v in IMAGE_SETTINGS.items() if estimator.get_params()[k] != JUNK}
        if type(estimator).__name__ == "FineTunedClassifier":
            settings.update({k: v for k, v in FINETUNE_SETTINGS.items() if estimator.get_params()[k] != JUNK})
        return estimator.set_params(**settings).fit(images, [0, 1, 0, 1])
    X = np.random.default_rng(0).normal(size=(20, 4))
    y = np.arange(20) % 2
    return estimator.fit(X, y)


def test_cases_are_discovered():
    ids = {(p.values[0].__name__, p.values[1]) for p in _cases()}
    assert {("DeCAFTransformer", "device"), ("DeCAFTransformer", "backbone"), ("DeCAFTransformer", "weights")} <= ids
    assert ("FineTunedClassifier", "device") in ids and ("SignedSqrt", "norm") in ids


@pytest.mark.parametrize("cls, name", _cases())
def test_a_wrong_string_is_a_value_error_naming_the_parameter(cls, name, tmp_path):
    estimator = clone(cls()).set_params(**{name: JUNK})
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        _fit(estimator, tmp_path)


@pytest.mark.parametrize("device, hint", [("gpu", "cuda"), ("GPU", "cuda"), ("gpu:1", "cuda:1"), ("cdua", "cuda")])
def test_device_typos_suggest_the_right_name(device, hint):
    with pytest.raises(ValueError, match=rf"device={device!r} is not a device.*did you mean device='{hint}'"):
        sk_decaf.DeCAFTransformer(TINY, weights="random", device=device).fit([np.zeros((8, 8, 3), np.uint8)])


def test_unknown_backbone_suggests_close_names():
    with pytest.raises(ValueError, match=r"backbone='efficientnet_lite9'.*efficientnet_lite0"):
        sk_decaf.DeCAFTransformer("efficientnet_lite9").fit([np.zeros((8, 8, 3), np.uint8)])
