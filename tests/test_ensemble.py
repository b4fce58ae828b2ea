"""make_ensemble: one DeCAFTransformer -> SignedSqrt branch per backbone, concatenated."""

import pickle

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.base import clone
from sklearn.pipeline import FeatureUnion, Pipeline, make_pipeline
from sklearn.svm import LinearSVC

from sk_decaf import DeCAFTransformer, SignedSqrt, make_ensemble
from tests.conftest import TINY, assert_features_close

#: A second tiny random-weight timm model, with another feature dimension than TINY.
OTHER = "test_efficientnet_gn"
NET = {"weights": "random", "random_state": 0, "engine": "torch"}


def _decaf(backbone, **params):
    return DeCAFTransformer(backbone, **NET, **params)


@pytest.fixture(scope="module")
def paths(demo):
    return list(demo.paths[::40])  # 5 images of 5 classes


def test_branches_are_named_after_their_backbones():
    union = make_ensemble(TINY, OTHER, TINY, tta="flip", cache="a.sqlite", decaf_params={"batch_size": 4})
    assert isinstance(union, FeatureUnion)
    assert [name for name, _ in union.transformer_list] == [TINY, OTHER, f"{TINY}-2"]
    for (_, branch), backbone in zip(union.transformer_list, [TINY, OTHER, TINY]):
        assert [name for name, _ in branch.steps] == ["decaf", "signed_sqrt"]
        decaf = branch.named_steps["decaf"]
        assert (decaf.backbone, decaf.tta, decaf.cache, decaf.batch_size) == (backbone, "flip", "a.sqlite", 4)
    params = union.get_params()
    assert params[f"{OTHER}__decaf__tta"] == "flip"
    assert params[f"{TINY}-2__signed_sqrt__power"] == 0.5


def test_output_is_each_backbone_signed_sqrt_normalised_then_concatenated(paths):
    union = make_ensemble(TINY, OTHER, decaf_params=NET)
    Z = union.fit_transform(paths)
    blocks = [SignedSqrt().fit_transform(_decaf(b).fit_transform(paths)) for b in (TINY, OTHER)]
    assert Z.dtype == np.float32 and Z.shape == (len(paths), sum(b.shape[1] for b in blocks))
    assert_features_close(Z, np.hstack(blocks))
    # Each backbone is a unit vector, whatever its dimension or scale: they weigh the same.
    split = blocks[0].shape[1]
    assert_allclose(np.linalg.norm(Z[:, :split], axis=1), 1, rtol=1e-5)
    assert_allclose(np.linalg.norm(Z[:, split:], axis=1), 1, rtol=1e-5)


def test_settings_reach_every_branch(paths):
    Z = make_ensemble(
        TINY, OTHER, layer=-1, tta="flip", tta_reduce="max", signed_sqrt=False, decaf_params=NET
    ).fit_transform(paths)
    raw = [_decaf(b, layer=-1, tta="flip", tta_reduce="max").fit_transform(paths) for b in (TINY, OTHER)]
    assert_features_close(Z, np.hstack(raw))


def test_shared_cache_serves_a_second_ensemble(paths, tmp_path):
    cache = str(tmp_path / "activations.sqlite")
    first = make_ensemble(TINY, OTHER, cache=cache, decaf_params=NET)
    Z = first.fit_transform(paths)
    again = clone(first).fit(paths)
    assert_allclose(again.transform(paths), Z)
    for _, branch in again.transformer_list:
        assert branch.named_steps["decaf"].cache_info()["computed"] == len(paths)  # no second forward pass


def test_pipeline_pickle_and_feature_names(paths, demo):
    y = demo.target[::40]
    model = make_pipeline(make_ensemble(TINY, OTHER, decaf_params=NET), LinearSVC()).fit(paths, y)
    restored = pickle.loads(pickle.dumps(model))
    assert_allclose(restored.decision_function(paths), model.decision_function(paths), rtol=1e-4, atol=1e-5)
    names = model[0].get_feature_names_out()
    assert names[0] == f"{TINY}__pre_logits_0" and names[-1].startswith(f"{OTHER}__pre_logits_")
    frame = make_ensemble(TINY, decaf_params=NET).set_output(transform="pandas").fit_transform(paths)
    assert list(frame.columns[:2]) == [f"{TINY}__pre_logits_0", f"{TINY}__pre_logits_1"]


def test_module_backbone_is_named_after_its_class():
    import torch

    union = make_ensemble(torch.nn.Identity(), torch.nn.Identity(), signed_sqrt=False)
    assert [name for name, _ in union.transformer_list] == ["identity", "identity-2"]
    assert all(isinstance(step, DeCAFTransformer) for _, step in union.transformer_list)
    assert not isinstance(union.transformer_list[0][1], Pipeline)


@pytest.mark.parametrize(
    "args, kwargs, message",
    [
        ((), {}, "at least one backbone"),
        ((TINY,), {"decaf_params": {"tta": "flip"}}, "Pass tta as make_ensemble's own argument"),
        ((TINY,), {"decaf_params": {"backbone": OTHER, "cache": "x"}}, "Pass backbone, cache as"),
    ],
)
def test_errors(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_ensemble(*args, **kwargs)
