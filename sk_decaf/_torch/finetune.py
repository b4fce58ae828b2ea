"""The torch side of fine-tuning: a new linear layer on a backbone layer, partial freezing, image datasets.

:class:`FineTuneModule` puts a freshly initialised ``nn.Linear`` on exactly the features that
:class:`~sk_decaf._torch.layers.FeatureExtractor` returns for one layer (so a fine-tuned network and
DeCAF's frozen features share their input). :func:`frozen_modules` resolves "everything up to and
including this layer" into module names; frozen parameters get ``requires_grad=False`` and frozen
modules stay in eval mode (BatchNorm keeps its ImageNet statistics, dropout is off) whatever
``train()`` says. ``batchnorm="frozen"`` keeps every BatchNorm layer in eval mode, so that training and
prediction run the same function; :meth:`FineTuneModule.recompute_batchnorm` re-estimates the running
statistics after a training in batch-statistics mode. :class:`ImageItems` yields ``(uint8 CHW tensor,
label)`` pairs for a DataLoader, through timm's training transform (augmentation) or the evaluation
transform.

Nothing here knows scikit-learn or skorch.
"""

from __future__ import annotations

import math
import random
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .._images import ImageLoadError, describe, load_rgb
from .layers import FeatureExtractor, resolve_layers
from .preprocess import build_transform

__all__ = [
    "ImageItems",
    "FineTuneModule",
    "build_train_transform",
    "frozen_modules",
    "seeded_global_rngs",
    "DEFAULT_AUGMENT",
]

#: timm training-transform settings used by ``augment=True``: random-resized crop keeping at least a
#: quarter of the image, horizontal flip, no colour jitter and no auto-augment (small target sets
#: are fine-tuned for few epochs; heavy augmentation would need many more).
DEFAULT_AUGMENT = {"scale": (0.25, 1.0), "hflip": 0.5, "color_jitter": None}


def build_train_transform(data_config, augment=True):
    """timm's training transform for ``data_config``, ending in a uint8 CHW tensor.

    ``augment=True`` uses :data:`DEFAULT_AUGMENT`; a dict overrides or extends it with any keyword of
    ``timm.data.create_transform(is_training=True)`` (``auto_augment="rand-m9-mstd0.5"``,
    ``color_jitter=0.4``, ``re_prob=0.25`` ...); ``False`` is the evaluation transform.
    """
    if augment is False:
        return build_transform(data_config, "model")
    from timm.data import create_transform

    options = dict(DEFAULT_AUGMENT)
    if isinstance(augment, dict):
        options.update(augment)
    cfg = {k: data_config[k] for k in ("input_size", "interpolation", "mean", "std") if k in data_config}
    cfg.update(options)
    return create_transform(**cfg, is_training=True, use_prefetcher=True)


@contextmanager
def seeded_global_rngs(seed, device):
    """Seed torch's and Python's global RNGs inside, restore them after.

    timm's random-resized crop draws from Python's ``random``, flips and dropout from torch's global
    generator: seeding both makes a training run reproducible without leaving a trace on the caller.
    """
    devices = [device.index or 0] if device.type == "cuda" else []
    state = random.getstate()
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            random.seed(seed)
            yield
    finally:
        random.setstate(state)


class ImageItems(Dataset):
    """``items[i]`` -> ``(transform(load_rgb(items[i])), y[i])``; ``y=None`` yields a dummy label 0.

    ``X`` and ``y`` are exposed under those names so that skorch's scorers read the labels of a
    validation subset without loading any image.

    Parameters
    ----------
    items : sequence of images
        File paths, PIL images or arrays (see :func:`~sk_decaf._images.load_rgb`).
    y : array-like of int or None
        Encoded labels.
    transform : callable
        PIL image -> uint8 CHW tensor.
    """

    def __init__(self, items, y=None, transform=None):
        self.X = items
        self.y = None if y is None else np.asarray(y, dtype=np.int64)
        self.transform = transform

    def __len__(self):
        return len(self.X)

    def __getitem__(self, i):
        img = load_rgb(self.X[i], i)
        try:
            tensor = self.transform(img)
        except Exception as exc:  # e.g. a degenerate crop of a 1-pixel image
            raise ImageLoadError(
                f"{describe(self.X[i], i)}: preprocessing failed: {type(exc).__name__}: {exc}"
            ) from None
        return tensor, (0 if self.y is None else int(self.y[i]))

    def with_transform(self, transform):
        """The same items and labels through another transform (e.g. the evaluation one)."""
        return ImageItems(self.X, self.y, transform)


def _module_for_layer(backbone, layer, modules):
    """The module name whose output is ``layer``; None means "the whole network"."""
    model = backbone.model
    if backbone.family == "timm":
        if layer == "logits":
            return None
        if layer == "pre_logits":
            # Everything but the classifier; after ``reset_classifier(0)`` that is everything.
            classifier = model.pretrained_cfg.get("classifier", "classifier")
            names = [n for n in modules if n and not (n == classifier or n.startswith(classifier + "."))]
            return names[-1] if names else None  # modules is in registration order
        return layer if layer in modules else None  # a stage pruned away lies past the taps: all
    name = backbone.nodes.get(layer, layer)
    # An FX node of a functional op (``add_3``) has no module: keep its prefix up to a real module.
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def frozen_modules(backbone, until):
    """Names of the modules frozen by ``freeze_until=until``, in registration (= forward) order.

    Parameters
    ----------
    backbone : Backbone
        The loaded (possibly pruned) network.
    until : None, "all", str or int
        ``None`` freezes nothing; ``"all"`` every module (``""`` is the root); a layer name, alias or
        negative int as in :func:`~sk_decaf._torch.layers.resolve_layers`, or any module name of the
        model, freezes every module registered up to and including that one. Modules are registered
        in forward order in timm and torchvision models.

    Returns
    -------
    names : list of str
        Frozen modules; their ancestors are not listed (they keep their later children trainable),
        but an ancestor's own direct parameters, if any, are frozen by :class:`FineTuneModule`.
    """
    if until is None:
        return []
    modules = [name for name, _ in backbone.model.named_modules()]
    if until == "all":
        return [""]
    try:
        layer = resolve_layers(until, backbone)[0]
        target = _module_for_layer(backbone, layer, modules)
    except ValueError:
        if not isinstance(until, str) or until not in modules:
            raise ValueError(
                f"freeze_until={until!r} is neither 'all', a layer of {backbone.name!r} ({backbone.layers}) "
                "nor a module name of the model."
            ) from None
        target = until
    if target is None:
        return [""]
    position = modules.index(target)
    end = max(
        i for i, name in enumerate(modules) if i >= position and (name == target or name.startswith(target + "."))
    )
    ancestors = {name for name in modules if name == "" or target.startswith(name + ".")}
    return [name for name in modules[: end + 1] if name not in ancestors]


class FineTuneModule(nn.Module):
    """``uint8 images -> layer features -> new nn.Linear -> logits``, with a frozen prefix.

    Parameters
    ----------
    backbone : Backbone
        The loaded network (pruned after ``layer`` in place).
    layer : str
        Canonical layer name the new linear layer sits on.
    n_classes : int
    pooling : see :class:`~sk_decaf._torch.layers.FeatureExtractor`.
    freeze_until : None, "all", str or int
        See :func:`frozen_modules`.
    generator : torch.Generator, default=None
        Draws the initial weights of the new layer (PyTorch's ``nn.Linear`` distribution).
    batchnorm : {"frozen", "train"}, default="frozen"
        ``"frozen"``: every BatchNorm layer stays in eval mode, normalising with its running (ImageNet)
        statistics, in training as in prediction; its affine weights are still trained unless frozen.
        ``"train"``: trainable BatchNorm layers normalise with the statistics of each batch in training
        and update their running statistics (PyTorch's default); see :meth:`recompute_batchnorm`.
    """

    def __init__(
        self, backbone, layer, n_classes, *, pooling="avg", freeze_until=None, generator=None, batchnorm="frozen"
    ):
        super().__init__()
        if batchnorm not in ("frozen", "train"):
            raise ValueError(f"batchnorm must be 'frozen' or 'train'; got {batchnorm!r}.")
        self.batchnorm = batchnorm
        if backbone.family == "timm" and layer != "logits" and hasattr(backbone.model, "reset_classifier"):
            backbone.model.reset_classifier(0)  # the ImageNet classifier is never used: do not carry it
        self.frozen = frozen_modules(backbone, freeze_until)
        self.backbone = FeatureExtractor(backbone, [layer], pooling)
        by_name = dict(backbone.model.named_modules())
        frozen = {name for name in self.frozen if name in by_name}  # pruning may have removed some
        self.frozen = [name for name in self.frozen if name in frozen]
        ancestors = {n for n in by_name if any(f.startswith(n + ".") or (n == "" and f) for f in frozen)}
        for name, module in by_name.items():
            if name in frozen or any(name.startswith(f + ".") for f in frozen if f):
                module.requires_grad_(False)
            elif name in ancestors:
                for param in module.parameters(recurse=False):
                    param.requires_grad_(False)
        self._frozen_modules = [by_name[name] for name in self.frozen]
        self._norms = [m for m in by_name.values() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        n_features = self._probe(backbone.data_config["input_size"])
        self.head = nn.Linear(n_features, n_classes)
        bound = 1.0 / math.sqrt(n_features)
        with torch.no_grad():
            # nn.Linear's default distribution, drawn from a local generator instead of the global RNG.
            self.head.weight.uniform_(-bound, bound, generator=generator)
            self.head.bias.uniform_(-bound, bound, generator=generator)

    def _probe(self, input_size):
        self.backbone.eval()
        with torch.no_grad():
            (features,) = self.backbone(torch.zeros((1, *input_size), dtype=torch.uint8))
        return int(features.shape[1])

    def train(self, mode=True):
        super().train(mode)
        if "" in self.frozen:
            self.backbone.eval()
        for module in self._frozen_modules:
            module.eval()  # frozen BatchNorm keeps its statistics, frozen dropout is off
        if self.batchnorm == "frozen":
            for module in self._norms:
                module.eval()
        return self

    def forward(self, images):
        (features,) = self.backbone(images)
        return self.head(features)

    def trainable_parameters(self):
        """``(backbone parameters, head parameters)`` that require gradients."""
        backbone = [p for p in self.backbone.parameters() if p.requires_grad]
        return backbone, list(self.head.parameters())

    @torch.inference_mode()
    def features(self, dataset, *, batch_size=32, device="cpu", num_workers=0):
        """Features at the layer (evaluation mode) of every image of ``dataset``, as float32 numpy."""
        was_training = self.training
        self.eval().to(device)
        loader = DataLoader(
            dataset, batch_size=batch_size, num_workers=num_workers, generator=torch.Generator()
        )  # its worker seed must not touch the global RNG
        try:
            return np.concatenate([self.backbone(images.to(device))[0].float().cpu().numpy() for images, _ in loader])
        finally:
            self.train(was_training)

    @torch.no_grad()
    def recompute_batchnorm(self, dataset, *, batch_size=32, device="cpu", num_workers=0):
        """Re-estimate the running statistics of the BatchNorm layers that train, over ``dataset``.

        The layers that ``train()`` puts in training mode (none with ``batchnorm="frozen"``) get their
        running mean and variance reset, then set to the plain average of the batch statistics of
        ``dataset`` under the final weights (``momentum=None``, as ``torch.optim.swa_utils.update_bn``,
        which would also reset the frozen layers). Everything else runs in eval mode (no dropout).
        The exponential average kept during training mixes statistics of earlier weights; after a few
        steps on images far from ImageNet it no longer matches the network, and eval-mode outputs
        collapse. Returns the number of layers re-estimated; the module is left in eval mode.
        """
        self.train().to(device)
        norms = [m for m in self._norms if m.training and m.track_running_stats]
        self.eval()
        momenta = [m.momentum for m in norms]
        for module in norms:
            module.reset_running_stats()
            module.momentum = None  # cumulative average
            module.train()
        # A last batch of one image has no variance (BatchNorm refuses it in training mode): drop it.
        loader = DataLoader(
            dataset,
            batch_size=batch_size,
            num_workers=num_workers,
            generator=torch.Generator(),
            drop_last=len(dataset) % batch_size == 1 and len(dataset) > 1,
        )
        try:
            if norms:
                for images, _ in loader:
                    self.backbone(images.to(device))
        finally:
            for module, momentum in zip(norms, momenta):
                module.momentum = momentum
            self.eval()
        return len(norms)

    @torch.no_grad()
    def set_head(self, weight, bias):
        """Load a linear classifier ``(n_classes, n_features)``, ``(n_classes,)`` into the new layer."""
        self.head.weight.copy_(torch.as_tensor(weight, dtype=self.head.weight.dtype))
        self.head.bias.copy_(torch.as_tensor(bias, dtype=self.head.bias.dtype))
