"""Time every layer of one forward pass with forward pre/post hooks (DeCAF Sec. 3.3, Fig. 3).

A *layer* here is a module that computes something of its own: a leaf module (no children), or a module
that owns parameters or buffers and also has children, such as timm's ``BatchNormAct2d`` (a batch norm
whose activation is a child module). Each layer is timed *exclusively*: the time spent in its own child
layers is subtracted, so a ``BatchNormAct2d`` counts as "norm" and its ``ReLU6`` child as "neuron", and no
second is counted twice. ``nn.Identity`` placeholders are left out. Work done in a container's own
``forward`` outside any layer (residual additions, the squeeze-and-excitation product, ``torch.flatten``)
belongs to no layer; it shows in the gap between the sum of the layers and the whole forward pass.

Nothing here knows about scikit-learn; :func:`sk_decaf.evaluation.profile_layers` is the public entry.
"""

from __future__ import annotations

import time

import torch
from torch import nn

__all__ = ["LAYER_TYPES", "layer_type", "profiled_modules", "time_layers"]

#: Layer types, as in the pie chart of DeCAF Fig. 3(b).
LAYER_TYPES = ("conv", "fc", "pool", "neuron", "norm", "other")

_POOLS = (
    nn.modules.pooling._MaxPoolNd,
    nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._AdaptiveAvgPoolNd,
    nn.modules.pooling._AdaptiveMaxPoolNd,
    nn.modules.pooling._LPPoolNd,
    nn.FractionalMaxPool2d,
    nn.FractionalMaxPool3d,
)
_NORMS = (
    nn.modules.batchnorm._NormBase,  # BatchNorm*, InstanceNorm*, SyncBatchNorm (and timm's BatchNormAct2d)
    nn.LayerNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,  # DeCAF's "norm" layers
    nn.CrossMapLRN2d,
    getattr(nn, "RMSNorm", nn.LayerNorm),
)
# Element-wise non-linearities from outside torch.nn (timm's Swish, HardSigmoid, GELUTanh, ...).
_NEURON_WORDS = (
    "relu",
    "elu",
    "gelu",
    "silu",
    "swish",
    "mish",
    "sigmoid",
    "tanh",
    "softplus",
    "softsign",
    "hardswish",
    "hard_swish",
    "hardsigmoid",
    "hard_sigmoid",
    "prelu",
    "celu",
    "selu",
    "quickgelu",
    "drop",
)


def layer_type(module):
    """Type of a layer: "conv", "fc", "pool", "neuron", "norm" or "other".

    "neuron" is DeCAF's name for element-wise layers: the activation functions of ``torch.nn`` (ReLU,
    sigmoid, SiLU, GELU, ...; not ``MultiheadAttention``, which lives in the same module), their timm
    counterparts, dropout and stochastic depth (``DropPath``).
    """
    if isinstance(module, nn.modules.conv._ConvNd):
        return "conv"
    if isinstance(module, (nn.Linear, nn.Bilinear)):
        return "fc"
    if isinstance(module, _POOLS):
        return "pool"
    if isinstance(module, _NORMS):
        return "norm"
    if isinstance(module, nn.modules.dropout._DropoutNd):
        return "neuron"
    if type(module).__module__ == nn.modules.activation.__name__ and not isinstance(module, nn.MultiheadAttention):
        return "neuron"
    name = type(module).__name__.lower()
    if any(word in name for word in _NEURON_WORDS):
        return "neuron"
    return "other"


def profiled_modules(model):
    """``[(name, module)]`` of the layers that :func:`time_layers` times, in definition order.

    Leaf modules, and modules with children that own parameters or buffers; ``nn.Identity`` excluded.
    """
    out = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Identity):
            continue
        leaf = next(module.children(), None) is None
        owns = (
            next(module.parameters(recurse=False), None) is not None
            or next(module.buffers(recurse=False), None) is not None
        )
        if leaf or owns:
            out.append((name or type(module).__name__, module))
    return out


class _Timer:
    """Forward pre/post hooks that accumulate the exclusive time of each layer in one pass."""

    def __init__(self, sync):
        self.sync = sync
        self.stack = []  # [layer index, start, time of nested layers]
        self.seconds = {}
        self.order = []

    def pre(self, index):
        def hook(module, args):
            if index not in self.seconds:  # forward order: the order layers are entered
                self.seconds[index] = 0.0
                self.order.append(index)
            self.sync()
            self.stack.append([index, time.perf_counter(), 0.0])

        return hook

    def post(self, index):
        def hook(module, args, output):
            self.sync()
            _, start, nested = self.stack.pop()
            elapsed = time.perf_counter() - start
            self.seconds[index] += elapsed - nested  # a module called twice adds up
            if self.stack:
                self.stack[-1][2] += elapsed

        return hook


def _synchronizer(device):
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


@torch.inference_mode()
def time_layers(model, batch, *, n_repeats=3, device=None):
    """Exclusive time of each layer of ``model(batch)``, in the order the layers first run.

    Parameters
    ----------
    model : torch.nn.Module
        The network, in eval mode.
    batch : torch.Tensor
        Its input, already normalised.
    n_repeats : int
        Timed forward passes, after one untimed warm-up pass. Each layer keeps its fastest pass, as
        ``timeit`` advises: slower ones measure other processes, not the layer.
    device : torch.device, default=None
        Where to run; defaults to the device of ``batch``.

    Returns
    -------
    names, modules, seconds : list, list, list of float
        The layers that ran, in forward order, and their time (seconds per forward pass of the batch).
    total : float
        The fastest whole forward pass, measured around the hooked pass; it bounds ``sum(seconds)``.
    """
    device = torch.device(device) if device is not None else batch.device
    model = model.to(device)
    batch = batch.to(device)
    layers = profiled_modules(model)
    sync = _synchronizer(device)
    model(batch)  # warm-up: lazy initialisation, allocator, oneDNN kernel selection
    runs, totals = [], []
    for _ in range(n_repeats):
        timer = _Timer(sync)
        handles = []
        for index, (_, module) in enumerate(layers):
            handles.append(module.register_forward_pre_hook(timer.pre(index)))
            handles.append(module.register_forward_hook(timer.post(index)))
        try:
            sync()
            start = time.perf_counter()
            model(batch)
            sync()
            totals.append(time.perf_counter() - start)
        finally:
            for handle in handles:
                handle.remove()
        runs.append(timer)
    order = runs[0].order
    seconds = [min(run.seconds.get(i, 0.0) for run in runs) for i in order]
    names = [layers[i][0] for i in order]
    modules = [layers[i][1] for i in order]
    return names, modules, seconds, min(totals)
