"""FineTunedClassifier: training, freezing, the scikit-learn contract, on a tiny random-weight network."""

import pickle
import random

import numpy as np
import pandas as pd
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal
from PIL import Image
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, log_loss
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline

from sk_decaf import DeCAFTransformer, FineTunedClassifier
from sk_decaf._torch.backbones import load_backbone
from sk_decaf._torch.finetune import ImageItems, build_train_transform, frozen_modules
from tests.conftest import API_CHECKS, TINY

# test_efficientnet: conv_stem, bn1, blocks.0 ... blocks.4, conv_head (256 features), bn2.
FROZEN_BY_BLOCKS_2 = ("conv_stem.", "bn1.", "blocks.0.", "blocks.1.", "blocks.2.")


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """The tiny network gains nothing from threads, which spin-wait when other processes hold the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(**params):
    defaults = dict(
        weights="random", max_epochs=2, batch_size=8, early_stopping=False, random_state=0, head_init="random"
    )
    return FineTunedClassifier(TINY, **{**defaults, **params})


@pytest.fixture(scope="module")
def colours(tmp_path_factory):
    """20 JPEG files, two classes that differ strongly in colour (red / blue), with noise."""
    folder = tmp_path_factory.mktemp("colours")
    rng = np.random.default_rng(0)
    paths, labels = [], []
    for i in range(20):
        red = i % 2 == 0
        img = np.zeros((36 + i, 44, 3), np.uint8)
        img[..., 0 if red else 2] = 190
        img = np.clip(img + rng.integers(0, 60, img.shape), 0, 255).astype(np.uint8)
        path = folder / f"img_{i}.jpg"
        Image.fromarray(img).save(path)
        paths.append(str(path))
        labels.append("red" if red else "blue")
    return paths, np.array(labels)


@pytest.fixture(scope="module")
def start_weights(tmp_path_factory):
    """A random state dict saved to a file, so that the weights before fine-tuning are known."""
    path = tmp_path_factory.mktemp("weights") / "tiny.pth"
    state = load_backbone(TINY, weights="random", seed=123).model.state_dict()
    torch.save(state, path)
    return str(path), state


@pytest.fixture(scope="module")
def fitted(colours):
    X, y = colours
    return tiny(freeze_until="all", lr=5e-2, max_epochs=3).fit(X, y)


def _backbone_state(clf):
    prefix = "taps.model."
    state = clf.net_.module_.backbone.state_dict()
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def _changed(before, after, keys):
    return {k for k in keys if not torch.equal(before[k], after[k])}


# -- training ---------------------------------------------------------------------------------------
def test_training_loss_decreases(colours):
    X, y = colours
    clf = tiny(lr=1e-2, max_epochs=3).fit(X, y)
    loss = clf.history_[:, "train_loss"]
    assert clf.n_epochs_ == 3 and len(loss) == 3
    assert loss[-1] < 0.7 * loss[0]  # (a random network trains slower with frozen BatchNorm statistics)


@pytest.mark.parametrize("batchnorm", ["frozen", "recompute", None])
def test_evaluation_mode_predictions_agree_with_training(colours, batchnorm):
    # Issue 9.7: with batch statistics in training and PyTorch's running average for prediction, the
    # training loss fell to 0.06 while predictions on the same images were at chance (loss 0.60).
    X, y = colours
    params = {} if batchnorm is None else {"batchnorm": batchnorm}  # None: the default
    clf = tiny(lr=1e-2, max_epochs=3, augment=False, **params).fit(X, y)
    train_loss = clf.history_[-1, "train_loss"]
    assert train_loss < 0.5
    assert log_loss(y, clf.predict_proba(X), labels=clf.classes_) < 1.2 * train_loss
    assert clf.score(X, y) == 1.0


def test_frozen_batchnorm_trains_the_function_it_predicts_with(colours, start_weights):
    X, y = colours
    path, before = start_weights
    clf = tiny(weights=path, lr=1e-2, max_epochs=1, augment=False).fit(X, y)
    after = _backbone_state(clf)
    stats = [k for k in after if k.endswith(("running_mean", "running_var"))]
    assert stats and not _changed(before, after, stats)  # the ImageNet (here: initial) statistics stay
    assert _changed(before, after, [k for k in after if k.startswith("bn2.")])  # affine weights train
    module = clf.net_.module_
    images = torch.stack([item for item, _ in ImageItems(X, None, build_train_transform(clf.data_config_, False))])
    with torch.no_grad():
        training, evaluation = module.train()(images), module.eval()(images)
    assert_allclose(training.numpy(), evaluation.numpy(), rtol=1e-4, atol=1e-4)


def test_recompute_batchnorm_averages_the_batch_statistics(colours):
    X, y = colours
    clf = tiny(lr=1e-2, max_epochs=1, augment=False, batchnorm="recompute", batch_size=10).fit(X, y)
    module = clf.net_.module_
    assert not module.training
    norm = module.backbone.taps.model.bn1
    images = torch.stack([item for item, _ in ImageItems(X, None, build_train_transform(clf.data_config_, False))])
    seen = []
    handle = norm.register_forward_hook(lambda mod, args, out: seen.append(args[0]))
    with torch.no_grad():
        module.eval()(images)
    handle.remove()
    batches = seen[0].split(10)  # the two batches of 10 images that the re-estimation read
    mean = torch.stack([b.mean(dim=(0, 2, 3)) for b in batches]).mean(0)
    var = torch.stack([b.transpose(0, 1).flatten(1).var(dim=1) for b in batches]).mean(0)
    assert_allclose(norm.running_mean.numpy(), mean.numpy(), rtol=1e-4, atol=1e-5)
    assert_allclose(norm.running_var.numpy(), var.numpy(), rtol=1e-4, atol=1e-5)
    assert norm.momentum == 0.1  # restored


def test_full_fine_tuning_changes_every_stage(colours, start_weights):
    X, y = colours
    path, before = start_weights
    clf = tiny(weights=path, lr=1e-2, backbone_lr_scale=0.5).fit(X, y)
    after = _backbone_state(clf)
    weights = [k for k in after if k.endswith(".weight")]
    for stage in ("conv_stem.", "blocks.0.", "blocks.2.", "blocks.4.", "conv_head."):
        assert _changed(before, after, [k for k in weights if k.startswith(stage)]), stage
    assert clf.n_trainable_params_ == sum(p.numel() for p in clf.net_.module_.parameters())


def test_freeze_until_a_stage_keeps_it_bit_identical(colours, start_weights):
    X, y = colours
    path, before = start_weights
    clf = tiny(weights=path, freeze_until="blocks.2", lr=1e-2, backbone_lr_scale=1.0, batchnorm="train").fit(X, y)
    after = _backbone_state(clf)
    frozen = [k for k in after if k.startswith(FROZEN_BY_BLOCKS_2)]
    later = [k for k in after if not k.startswith(FROZEN_BY_BLOCKS_2)]
    assert any("running_mean" in k for k in frozen)  # BatchNorm statistics are checked too
    assert not _changed(before, after, frozen)
    assert _changed(before, after, [k for k in later if k.startswith("blocks.3.")])
    assert _changed(before, after, [k for k in later if k.startswith("conv_head.")])
    assert _changed(before, after, [k for k in later if "running_mean" in k])  # trainable BN: train mode
    module = clf.net_.module_
    assert all(p.requires_grad for p in module.head.parameters())
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    assert clf.n_trainable_params_ == trainable < sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("params", [{"freeze_until": "all"}, {"backbone_lr_scale": 0.0}])
def test_linear_probe_changes_only_the_head(colours, start_weights, params):
    X, y = colours
    path, before = start_weights
    clf = tiny(weights=path, lr=5e-2, **params).fit(X, y)
    after = _backbone_state(clf)
    assert not _changed(before, after, list(after))
    head = clf.net_.module_.head
    assert clf.n_trainable_params_ == head.weight.numel() + head.bias.numel() == 256 * 2 + 2
    loss = clf.history_[:, "train_loss"]
    assert loss[-1] < loss[0]  # the head did learn
    clf.net_.module_.train()
    assert not clf.net_.module_.backbone.training  # the whole frozen network stays in eval mode


@pytest.mark.parametrize("early_stopping", [False, True])
def test_linear_probe_initialisation_is_a_logistic_regression(colours, start_weights, early_stopping):
    X, y = colours
    path, _ = start_weights
    # A frozen network and a vanishing learning rate: the head stays where the linear probe put it.
    clf = tiny(
        weights=path,
        head_init="linear_probe",
        freeze_until="all",
        lr=1e-12,
        max_epochs=1,
        early_stopping=early_stopping,
        validation_fraction=0.2,
    ).fit(X, y)
    features = DeCAFTransformer(TINY, weights=path, layer=clf.layer_, engine="torch").fit_transform(X)
    rows = np.arange(20)
    if early_stopping:  # the probe never sees the validation images
        rows = clf.net_.train_split.indices(np.unique(y, return_inverse=True)[1])[0]
        assert len(rows) == 16
    probe = LogisticRegression(C=1.0, max_iter=1000).fit(features[rows], y[rows])
    assert_allclose(clf.predict_proba(X), probe.predict_proba(features), atol=1e-4)


def test_same_random_state_same_model_and_global_rngs_untouched(colours):
    X, y = colours
    torch.manual_seed(1234)
    random.seed(1234)
    torch_state, python_state = torch.get_rng_state(), random.getstate()
    a = tiny(lr=1e-2, head_init="linear_probe").fit(X, y).predict_proba(X)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert random.getstate() == python_state
    b = tiny(lr=1e-2, head_init="linear_probe").fit(X, y).predict_proba(X)
    c = tiny(lr=1e-2, head_init="linear_probe", random_state=1).fit(X, y).predict_proba(X)
    assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert not np.allclose(a, c)


def test_early_stopping_stops_on_a_plateau(colours):
    X, y = colours
    # A frozen network and a vanishing learning rate: the validation loss cannot improve.
    clf = tiny(
        freeze_until="all", lr=1e-12, max_epochs=10, early_stopping=True, patience=2, validation_fraction=0.2
    ).fit(X, y)
    assert clf.n_epochs_ == 3  # the first epoch, then `patience` epochs without improvement
    valid_loss = clf.history_[:, "valid_loss"]
    assert_allclose(valid_loss, valid_loss[0], rtol=1e-6)
    valid = clf.history_[-1, "valid_batch_count"]
    assert valid == 1  # 4 validation images (20%, stratified) in one batch
    # The recorded validation scores are those of the (unchanging) classifier on the held-out images.
    _, held_out = clf.net_.train_split.indices(np.unique(y, return_inverse=True)[1])
    assert len(held_out) == 4 and len(set(y[held_out])) == 2
    proba = clf.predict_proba([X[i] for i in held_out])
    assert np.abs(proba[:, 0] - 0.5).min() > 1e-3  # no prediction near a tie: the accuracy is well defined
    assert_allclose(clf.history_[:, "valid_acc"], accuracy_score(y[held_out], clf.classes_[proba.argmax(axis=1)]))
    assert_allclose(valid_loss, log_loss(y[held_out], proba, labels=clf.classes_), rtol=1e-5)


def test_validation_images_are_not_augmented(colours):
    X, y = colours
    clf = tiny(early_stopping=True, max_epochs=1).fit(X, y)
    split = clf.net_.train_split
    train, valid = split(ImageItems(X, np.arange(20) % 2, build_train_transform(clf.data_config_)), np.arange(20) % 2)
    assert len(valid) == 2 and len(train) == 18  # at least one image per class
    assert torch.equal(valid[0][0], valid[0][0])  # the evaluation transform is deterministic
    assert "RandomResizedCrop" in repr(train.dataset.transform)
    assert "RandomResizedCrop" not in repr(valid.dataset.transform)


def test_early_stopping_needs_two_images_per_class(colours):
    X, y = colours
    with pytest.raises(ValueError, match="early_stopping=False"):
        tiny(early_stopping=True).fit(X[:3], ["a", "a", "b"])


@pytest.mark.parametrize(
    "layer, name, dim", [("blocks.2", "blocks.2", 32), (-3, "blocks.4", 64), (None, "pre_logits", 256)]
)
def test_head_sits_on_the_decaf_layer(colours, layer, name, dim):
    X, y = colours
    clf = tiny(layer=layer, max_epochs=1).fit(X[:8], y[:8])
    assert clf.layer_ == name
    assert clf.net_.module_.head.in_features == dim


@pytest.mark.parametrize("optimizer", ["sgd", torch.optim.Adam])
def test_other_optimizers(colours, optimizer):
    X, y = colours
    # A random network's running statistics are the initial 0 and 1, which plain SGD cannot train
    # through in 6 steps: normalise with batch statistics here.
    clf = tiny(optimizer=optimizer, lr=1e-2, max_epochs=3, batchnorm="recompute").fit(X, y)
    expected = torch.optim.SGD if optimizer == "sgd" else torch.optim.Adam
    assert type(clf.net_.optimizer_) is expected
    loss = clf.history_[:, "train_loss"]
    assert loss[-1] < loss[0]


def test_backbone_learning_rate_is_scaled(colours):
    X, y = colours
    clf = tiny(lr=1e-2, backbone_lr_scale=0.1, lr_schedule="constant", max_epochs=1).fit(X, y)
    groups = clf.net_.optimizer_.param_groups
    assert sorted(g["lr"] for g in groups) == pytest.approx([1e-3, 1e-2])
    head = {id(p) for p in clf.net_.module_.head.parameters()}
    assert {id(p) for g in groups if g["lr"] == pytest.approx(1e-2) for p in g["params"]} == head


# -- predicting and the scikit-learn contract --------------------------------------------------------
def test_predict_proba_predict_and_score(fitted, colours):
    X, y = colours
    assert_array_equal(fitted.classes_, ["blue", "red"])
    proba = fitted.predict_proba(X)
    assert proba.shape == (20, 2) and proba.dtype == np.float32
    assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    pred = fitted.predict(X)
    assert_array_equal(pred, fitted.classes_[proba.argmax(axis=1)])
    assert fitted.score(X, y) == accuracy_score(y, pred) == 1.0


def test_inputs_may_be_arrays_pil_images_or_pandas(fitted, colours):
    X, y = colours
    arrays = [np.asarray(Image.open(p)) for p in X[:3]]
    pils = [Image.open(p) for p in X[:3]]
    expected = fitted.predict_proba(X[:3])
    assert_allclose(fitted.predict_proba(arrays), expected, rtol=1e-5)
    assert_allclose(fitted.predict_proba(pils), expected, rtol=1e-5)
    assert_allclose(fitted.predict_proba(pd.Series(X[:3], index=[7, 8, 9])), expected, rtol=1e-5)
    refit = clone(fitted).fit(pd.Series(X), pd.Series(y))
    assert_allclose(refit.predict_proba(X), fitted.predict_proba(X), rtol=1e-5, atol=1e-6)


def test_pickle_round_trip(fitted, colours):
    X, _ = colours
    restored = pickle.loads(pickle.dumps(fitted))
    assert_array_equal(restored.predict_proba(X), fitted.predict_proba(X))
    assert restored.layer_ == fitted.layer_ and restored.device_ == fitted.device_


def test_clone_and_not_fitted(fitted, colours):
    X, _ = colours
    cloned = clone(fitted)
    assert cloned.get_params() == fitted.get_params() and not hasattr(cloned, "net_")
    with pytest.raises(NotFittedError):
        cloned.predict(X)
    with pytest.raises(NotFittedError):
        cloned.predict_proba(X)


@pytest.mark.parametrize("check", API_CHECKS)
def test_api_level_estimator_checks(check):
    est = tiny()
    check(type(est).__name__, est)


def test_fit_does_not_change_parameters(colours):
    X, y = colours
    est = tiny(max_epochs=1, device="auto")
    before = est.get_params()
    est.fit(X, y)
    assert est.get_params() == before


def test_bad_image_names_index_and_path(colours, tmp_path):
    X, y = colours
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg at all")
    with pytest.raises(ValueError, match=r"image 3 .*broken\.jpg"):
        tiny(max_epochs=1).fit(X[:3] + [str(bad)] + X[4:], y)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"freeze_until": "no_such_layer"}, "freeze_until"),
        ({"layer": "no_such_layer"}, "Unknown layer"),
        ({"lr": 0.0}, "lr"),
        ({"optimizer": "lbfgs"}, "optimizer"),
        ({"batchnorm": "running"}, "batchnorm"),
    ],
)
def test_bad_parameters_raise_in_fit(colours, params, match):
    X, y = colours
    est = tiny(**params)
    with pytest.raises(ValueError, match=match):
        est.fit(X, y)


def test_one_class_is_an_error(colours):
    X, _ = colours
    with pytest.raises(ValueError, match="at least 2 classes"):
        tiny().fit(X[:4], ["a"] * 4)


def test_pipeline_and_gridsearch_over_lr(colours):
    X, y = colours
    pipe = Pipeline([("net", tiny(freeze_until="all", max_epochs=1))])
    grid = GridSearchCV(pipe, {"net__lr": [1e-3, 5e-2]}, cv=StratifiedKFold(2, shuffle=True, random_state=0))
    grid.fit(X, y)
    assert list(grid.cv_results_["param_net__lr"]) == [1e-3, 5e-2]
    assert np.isfinite(grid.cv_results_["mean_test_score"]).all()
    assert grid.predict(X[:3]).shape == (3,)


# -- the torch side -----------------------------------------------------------------------------------
def test_frozen_modules_follow_forward_order():
    bb = load_backbone(TINY, weights="random")
    names = frozen_modules(bb, "blocks.1")
    assert names[0] == "conv_stem" and "blocks.1.0.conv_exp" in names
    assert not any(n.startswith(("blocks.2", "conv_head")) for n in names)
    assert "blocks" not in names and "" not in names  # ancestors keep their later children trainable
    assert frozen_modules(bb, "all") == [""] and frozen_modules(bb, None) == []
    everything_but_classifier = frozen_modules(bb, "pre_logits")
    assert "bn2" in everything_but_classifier and "classifier" not in everything_but_classifier
    assert frozen_modules(bb, -3) == frozen_modules(bb, "blocks.4")
    by_module = frozen_modules(bb, "blocks.3.0.conv_dw")  # any module name
    assert by_module[-1] == "blocks.3.0.conv_dw" and "blocks.3.0.se" not in by_module


def test_frozen_modules_of_alexnet_use_decaf_names():
    bb = load_backbone("alexnet", weights="random")
    names = frozen_modules(bb, "conv3")  # features.7: the ReLU after the third convolution
    assert names == [f"features.{i}" for i in range(8)] and "features" not in names
    assert "classifier.1" in frozen_modules(bb, "fc6")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_fit_and_cpu_reload(colours):
    X, y = colours
    clf = tiny(device="cuda", freeze_until="all", lr=5e-2).fit(X, y)
    assert clf.device_.type == "cuda"
    proba = clf.predict_proba(X)
    restored = pickle.loads(pickle.dumps(clf))
    assert_allclose(restored.predict_proba(X), proba, rtol=1e-4, atol=1e-5)
