"""Time per layer of a DeCAF backbone on real images (DeCAF Sec. 3.3 and Fig. 3)."""

from __future__ import annotations

from numbers import Integral
from typing import TYPE_CHECKING

import numpy as np
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils import Bunch
from sklearn.utils.validation import check_is_fitted

from .._images import Images
from .._sklearn_compat import HasMethods, Interval, validate_params

if TYPE_CHECKING:
    import torch

    from .._torch.backbones import Backbone
    from ..transformers import DeCAFTransformer

__all__ = ["profile_layers"]


def _fitted(transformer: DeCAFTransformer, images: Images) -> DeCAFTransformer:
    """The transformer if fitted, else a fitted clone (the caller's object is left as it is)."""
    try:
        check_is_fitted(transformer, "layers_")
    except NotFittedError:
        return clone(transformer).fit(images)
    return transformer


def _input_batch(images: Images, backbone: Backbone, preprocess: str, batch_size: int) -> torch.Tensor:
    """The first `batch_size` images (cycled when fewer), preprocessed and normalised as in transform."""
    import torch

    from .._images import as_image_sequence, load_rgb
    from .._torch.preprocess import build_transform

    items = as_image_sequence(images)
    if len(items) == 0:
        raise ValueError("profile_layers needs at least one image.")
    transform = build_transform(backbone.data_config, preprocess)
    # Each image is decoded once, however many times it is repeated in the batch.
    decoded = [transform(load_rgb(items[i], i)) for i in range(min(batch_size, len(items)))]
    batch = torch.stack([decoded[i % len(decoded)] for i in range(batch_size)])
    cfg = backbone.data_config
    mean = torch.tensor(cfg["mean"], dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(cfg["std"], dtype=torch.float32).view(1, 3, 1, 1)
    return (batch.float() / 255 - mean) / std


@validate_params(
    {
        "transformer": [HasMethods(["fit", "transform"])],
        "images": "no_validation",
        "n_repeats": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
    },
    prefer_skip_nested_validation=True,
)
def profile_layers(transformer: DeCAFTransformer, images: Images, *, n_repeats: int = 3, batch_size: int = 1) -> Bunch:
    """Time spent in each layer of the transformer's network for one forward pass.

    The whole network of ``transformer`` (its backbone, weights and
    preprocessing; all layers up to the logits, whatever ``layer`` it extracts)
    runs on a batch of ``images`` preprocessed exactly as
    :meth:`~sk_decaf.DeCAFTransformer.transform` does. Forward pre- and
    post-hooks on every layer measure its own time, excluding nested layers,
    on the transformer's device with torch in float32 (the network is loaded
    afresh, so the transformer's ONNX engine and pruning play no part). This is
    the measurement behind DeCAF Fig. 3: most of the time goes to the
    convolutions and the fully connected layers.

    Parameters
    ----------
    transformer : DeCAFTransformer
        Fitted or not; an unfitted one is cloned and fitted on ``images``
        (which reads no image), the given object is left unchanged.
    images : sequence of images
        File paths, PIL images or uint8 arrays; the first ``batch_size`` are
        used, repeated when there are fewer.
    n_repeats : int, default=3
        Timed forward passes after one untimed warm-up pass. Each layer's time
        is its fastest pass, as :mod:`timeit` advises on a busy machine.
    batch_size : int, default=1
        Images per forward pass (DeCAF Fig. 3 times batches of 10 images).

    Returns
    -------
    profile : :class:`~sklearn.utils.Bunch`
        The format :func:`sk_decaf.plotting.plot_layer_times` draws:

        - ``layers``: list of str, module names in the order they first run:
          the leaf modules, plus modules with children that own parameters
          (timm's ``BatchNormAct2d``); ``nn.Identity`` placeholders are left out;
        - ``types``: list of str, one of "conv", "fc", "pool", "neuron" (ReLU,
          sigmoid, SiLU, GELU, dropout...), "norm" or "other" per layer;
        - ``seconds``: ndarray of float, the time of each layer for one forward
          pass of the batch;
        - ``modules``: list of str, the class name of each layer;
        - ``total_seconds``: float, the fastest whole forward pass (with the
          hooks on); the layers' sum is at most this, the gap being work done
          outside any layer (residual additions, ``torch.flatten``...);
        - ``batch_size``, ``device``, ``backbone`` and ``input_size``.

    See Also
    --------
    sk_decaf.plotting.plot_layer_times : Draws the profile as DeCAF Fig. 3.

    References
    ----------
    .. [1] J. Donahue et al., "DeCAF: A Deep Convolutional Activation Feature for
       Generic Visual Recognition", ICML, 2014, Sec. 3.3 and Fig. 3.

    Examples
    --------
    >>> from sk_decaf import DeCAFTransformer
    >>> from sk_decaf.datasets import load_demo
    >>> from sk_decaf.evaluation import profile_layers
    >>> decaf = DeCAFTransformer("test_efficientnet", weights="random", random_state=0)
    >>> profile = profile_layers(decaf, load_demo().paths[:2], n_repeats=1)
    >>> profile.types[0], profile.types[-1]
    ('conv', 'fc')
    >>> bool(profile.seconds.sum() <= profile.total_seconds)
    True
    """
    from .._torch.backbones import load_backbone
    from .._torch.profiling import layer_type, time_layers

    transformer = _fitted(transformer, images)
    backbone = load_backbone(
        transformer.backbone,
        transformer.weights,
        transformer.model_kwargs,
        seed=transformer.random_seed_,
        input_size=transformer.input_size,
    )
    batch = _input_batch(images, backbone, transformer.preprocess, batch_size)
    names, modules, seconds, total = time_layers(backbone.model, batch, n_repeats=n_repeats, device=transformer.device_)
    return Bunch(
        layers=names,
        types=[layer_type(m) for m in modules],
        seconds=np.asarray(seconds, dtype=float),
        modules=[type(m).__name__ for m in modules],
        total_seconds=float(total),
        batch_size=int(batch_size),
        device=str(transformer.device_),
        backbone=backbone.name,
        input_size=tuple(batch.shape[1:]),
    )
