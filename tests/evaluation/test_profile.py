"""profile_layers: time per layer of a forward pass (DeCAF Fig. 3)."""

from collections import Counter

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose
from sklearn.utils._param_validation import InvalidParameterError
from torch import nn

from sk_decaf import DeCAFTransformer, profile_layers
from sk_decaf._torch import profiling
from sk_decaf._torch.backbones import load_backbone
from sk_decaf._torch.profiling import layer_type, profiled_modules, time_layers
from tests.conftest import TINY


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread: on a shared machine, multi-threaded kernels wait on descheduled threads
    and a single forward pass can take ten times longer than the next one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def alexnet_profile(demo, one_thread):
    decaf = DeCAFTransformer("alexnet", weights="random", random_state=0)
    return profile_layers(decaf, demo.paths[:2], n_repeats=3)


def _forward_order(model, x):
    """Names of the modules profile_layers times, in the order a plain forward pass enters them."""
    seen = []
    handles = [
        module.register_forward_pre_hook(lambda m, a, name=name: seen.append(name))
        for name, module in profiled_modules(model)
    ]
    with torch.inference_mode():
        model(x)
    for handle in handles:
        handle.remove()
    return list(dict.fromkeys(seen))


def test_alexnet_layers_types_and_order(alexnet_profile):
    model = load_backbone("alexnet", weights="random").model
    leaves = [n for n, m in model.named_modules() if n and next(m.children(), None) is None]
    # AlexNet's forward runs its leaf modules in definition order.
    assert alexnet_profile.layers == leaves
    assert len(alexnet_profile.layers) == len(alexnet_profile.types) == len(alexnet_profile.seconds)
    types = dict(zip(alexnet_profile.layers, alexnet_profile.types))
    counts = Counter(alexnet_profile.types)
    assert counts["conv"] == 5
    assert counts["fc"] == 3
    # DeCAF's 3 max-pools, plus torchvision's AdaptiveAvgPool2d(6) (a no-op at 224 x 224).
    assert counts["pool"] == 4
    assert Counter(alexnet_profile.modules)["MaxPool2d"] == 3
    assert types["avgpool"] == "pool"
    for name, module in zip(alexnet_profile.layers, alexnet_profile.modules):
        if module in ("ReLU", "Dropout"):
            assert types[name] == "neuron"
    assert counts["neuron"] == 7 + 2
    assert alexnet_profile.input_size == (3, 224, 224)
    assert alexnet_profile.batch_size == 1 and alexnet_profile.device == "cpu"


def test_seconds_positive_and_bounded_by_a_forward_pass(alexnet_profile):
    # Only relations that noise on a busy machine cannot break: no wall-clock bounds.
    seconds = alexnet_profile.seconds
    assert np.all(seconds > 0)
    # Each layer keeps its fastest pass, at most its time in the fastest whole pass: the sum is bounded by it.
    assert seconds.sum() <= alexnet_profile.total_seconds
    # Most of the time goes to convolutions and fully connected layers (DeCAF Fig. 3b): 1.1 GFLOP and 58 M
    # weights against element-wise layers, a gap of two orders of magnitude.
    heavy = seconds[np.isin(alexnet_profile.types, ["conv", "fc"])].sum()
    assert heavy > 0.5 * seconds.sum()
    # The slowest single layer is a convolution or a fully connected layer, never a ReLU or a pool.
    assert alexnet_profile.types[int(np.argmax(seconds))] in ("conv", "fc")


def test_timm_nested_layers_counted_once(demo):
    decaf = DeCAFTransformer(TINY, weights="random", random_state=0).fit(demo.paths[:1])
    profile = profile_layers(decaf, demo.paths[:1], n_repeats=1, batch_size=3)
    model = load_backbone(TINY, weights="random", seed=decaf.random_seed_).model
    assert profile.layers == _forward_order(model, torch.randn(1, 3, 160, 160))
    kinds = dict(zip(profile.modules, profile.types))
    # timm's BatchNormAct2d owns its parameters and has its activation as a child: both are timed.
    assert kinds["BatchNormAct2d"] == "norm"
    assert kinds["SiLU"] == "neuron" and kinds["Sigmoid"] == "neuron"
    assert "Identity" not in profile.modules
    assert profile.types[0] == "conv" and profile.types[-1] == "fc"
    assert profile.batch_size == 3 and profile.input_size == (3, 160, 160)
    assert profile.seconds.sum() <= profile.total_seconds


class _Clock:
    """A clock that moves only when a module says so: exact, noise-free times."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        return self.now


def test_exclusive_time_of_nested_modules(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(profiling, "time", clock)

    class Work(nn.Module):
        def __init__(self, seconds, child=None):
            super().__init__()
            self.seconds = seconds
            self.scale = nn.Parameter(torch.ones(1))  # owns a parameter: timed even with a child
            self.child = child

        def forward(self, x):
            clock.now += self.seconds
            return x if self.child is None else self.child(x)

    model = nn.Sequential(Work(0.03, child=Work(0.05)), nn.ReLU(), Work(0.25))
    # Work per pass (parent, child, last): an untimed warm-up, then 3 timed passes whose fastest layers
    # are spread over the first two.
    durations = iter([(1.0, 1.0, 1.0), (0.02, 0.05, 0.3), (0.03, 0.04, 0.2), (0.06, 0.07, 0.25)])

    def vary(module, args):
        model[0].seconds, model[0].child.seconds, model[2].seconds = next(durations)

    model.register_forward_pre_hook(vary)
    names, modules, seconds, total = time_layers(model, torch.zeros(1), n_repeats=3)
    assert names == ["0", "0.child", "1", "2"]
    assert [layer_type(m) for m in modules] == ["other", "other", "neuron", "other"]
    # The parent's own time excludes its child's; a layer that does no work takes no time.
    assert_allclose(seconds, [0.02, 0.04, 0.0, 0.2], atol=1e-12)
    assert_allclose(total, 0.03 + 0.04 + 0.2, atol=1e-12)  # the fastest whole pass bounds the sum


def test_unfitted_transformer_left_unchanged(demo):
    decaf = DeCAFTransformer(TINY, weights="random", random_state=0)
    profile = profile_layers(decaf, demo.paths[:1], n_repeats=1)
    assert not hasattr(decaf, "layers_")
    assert profile.backbone == TINY and len(profile.layers) > 10


def test_plot_layer_times_draws_profile(alexnet_profile):
    pytest.importorskip("matplotlib")
    from sk_decaf.plotting import plot_layer_times

    fig = plot_layer_times(alexnet_profile)
    bars, pie = fig.axes[:2]
    assert len(bars.patches) == len(alexnet_profile.layers)
    assert_allclose([p.get_height() for p in bars.patches], alexnet_profile.seconds)
    # One wedge per layer type present: conv, fc, pool, neuron.
    assert len(pie.patches) == 4
    assert "batch_size=1" in fig._suptitle.get_text()


@pytest.mark.parametrize(
    "module, expected",
    [
        (nn.Conv2d(3, 4, 3), "conv"),
        (nn.Conv1d(3, 4, 3), "conv"),
        (nn.Linear(3, 4), "fc"),
        (nn.MaxPool2d(2), "pool"),
        (nn.AdaptiveAvgPool2d(1), "pool"),
        (nn.AvgPool2d(2), "pool"),
        (nn.ReLU(), "neuron"),
        (nn.ReLU6(), "neuron"),
        (nn.Sigmoid(), "neuron"),
        (nn.SiLU(), "neuron"),
        (nn.GELU(), "neuron"),
        (nn.Dropout(), "neuron"),
        (nn.BatchNorm2d(3), "norm"),
        (nn.LayerNorm(3), "norm"),
        (nn.GroupNorm(1, 3), "norm"),
        (nn.LocalResponseNorm(5), "norm"),
        (nn.Flatten(), "other"),
        (nn.MultiheadAttention(4, 2), "other"),
        (nn.Embedding(3, 2), "other"),
    ],
)
def test_layer_type(module, expected):
    assert layer_type(module) == expected


def test_layer_type_timm_modules():
    from timm.layers import BatchNormAct2d, DropPath, GELUTanh, HardSwish

    assert layer_type(BatchNormAct2d(3)) == "norm"
    assert layer_type(DropPath(0.1)) == "neuron"
    assert layer_type(HardSwish()) == "neuron"
    assert layer_type(GELUTanh()) == "neuron"


@pytest.mark.parametrize(
    "kwargs, error",
    [({"n_repeats": 0}, InvalidParameterError), ({"batch_size": 0}, InvalidParameterError)],
)
def test_invalid_parameters(demo, kwargs, error):
    with pytest.raises(error):
        profile_layers(DeCAFTransformer(TINY, weights="random"), demo.paths[:1], **kwargs)


def test_no_images():
    with pytest.raises(ValueError, match="at least one image"):
        profile_layers(DeCAFTransformer(TINY, weights="random"), [])


def test_profile_follows_input_size(demo):
    decaf = DeCAFTransformer(TINY, weights="random", random_state=0, input_size=96).fit(demo.paths[:1])
    profile = profile_layers(decaf, demo.paths[:1], n_repeats=1, batch_size=2)
    assert profile.input_size == (3, 96, 96)
