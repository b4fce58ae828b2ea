"""FineTunedClassifier: a new linear layer on a DeCAF layer, trained end to end with skorch."""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedShuffleSplit
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_consistent_length, check_is_fitted, column_or_1d
from skorch import NeuralNetClassifier
from skorch.callbacks import EarlyStopping, LRScheduler
from skorch.dataset import ValidSplit
from torch.utils.data import Dataset, Subset

from .._images import Images, as_image_sequence, check_items, image_size
from .._sklearn_compat import Interval, StrOptions, fit_context
from .._torch.backbones import load_backbone
from .._torch.data import resolve_workers
from .._torch.device import resolve_device
from .._torch.finetune import FineTuneModule, ImageItems, build_train_transform, seeded_global_rngs
from .._torch.layers import resolve_layers
from .._torch.preprocess import build_transform

__all__ = ["FineTunedClassifier"]


class _FineTuneNet(NeuralNetClassifier):
    """skorch's classifier, handing the optimizer only the parameters that are not frozen."""

    def get_all_learnable_params(self) -> Iterator[tuple[str, torch.nn.Parameter]]:
        for name, param in super().get_all_learnable_params():
            if param.requires_grad:
                yield name, param


class _EvalValidSplit:
    """skorch ``train_split``: a stratified hold-out whose images go through the evaluation transform.

    skorch's ``ValidSplit`` returns two subsets of the training dataset, so the validation images would
    be augmented; here the validation subset reads the same items through ``eval_transform``.
    """

    def __init__(self, n_valid: int, seed: int, eval_transform: Any) -> None:
        self.n_valid = n_valid
        self.seed = seed
        self.eval_transform = eval_transform

    def _cv(self) -> StratifiedShuffleSplit:
        return StratifiedShuffleSplit(n_splits=1, test_size=self.n_valid, random_state=self.seed)

    def indices(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(train, valid)`` indices: the split that :meth:`__call__` makes."""
        return next(self._cv().split(np.zeros(len(y)), y))

    def __call__(self, dataset: ImageItems, y: np.ndarray | None = None, **fit_params: Any) -> tuple[Any, Subset]:
        train, valid = ValidSplit(self._cv(), stratified=True)(dataset, y)
        return train, Subset(dataset.with_transform(self.eval_transform), valid.indices)


class FineTunedClassifier(ClassifierMixin, BaseEstimator):
    """Fine-tune a pretrained network with a new linear layer on one of its layers.

    The classifier of Azizpour et al. (§3.2.3, Table 4): the network's features at ``layer`` (exactly
    what :class:`~sk_decaf.DeCAFTransformer` returns for it, with ``pooling``) feed a new linear layer
    (initialised by a linear probe, see ``head_init``), and the whole network is trained on the target
    task with cross-entropy, the pretrained part at a smaller learning rate (``lr * backbone_lr_scale``)
    so that what was learned on ImageNet is adapted rather than forgotten. Layers up to ``freeze_until``
    can be frozen instead. Training images are augmented with timm's training transform; a stratified
    validation split stops training early and restores the best epoch. Built on skorch's ``NeuralNetClassifier``,
    held as ``net_``.

    Parameters
    ----------
    backbone : str or torch.nn.Module, default="efficientnet_lite0"
        The network, as in :class:`~sk_decaf.DeCAFTransformer` (``"efficientnet_lite0"`` ships its
        ImageNet weights offline).
    layer : str, int or None, default=None
        The layer the new linear layer sits on: a name from :func:`sk_decaf.list_layers`, an alias or a
        negative int; ``None`` is the backbone's generic DeCAF layer (pre-logits for timm models).
        Later layers are removed.
    weights : None, "random", str or path-like, default=None
        Initial weights, as in :class:`~sk_decaf.DeCAFTransformer`.
    pooling : {"avg", "max", "flatten"} or int, default="avg"
        How a spatial map at ``layer`` becomes a vector.
    max_epochs : int, default=10
        Passes over the training images (fewer when early stopping triggers).
    lr : float, default=1e-3
        Learning rate of the new layer.
    backbone_lr_scale : float, default=0.1
        Learning rate of the pretrained layers, relative to ``lr``; 0 freezes the whole backbone.
    freeze_until : None, "all", str or int, default=None
        Freeze every parameter of the backbone up to and including this layer (a layer name, alias,
        negative int, or any module name such as ``"blocks.5"``): no gradient, unchanged weights, and
        BatchNorm statistics and dropout of the frozen part in evaluation mode. ``"all"`` freezes the
        whole backbone (a linear probe on augmented DeCAF features). Freezing early layers also
        makes each step cheaper: no backward pass runs through them.
    batchnorm : {"frozen", "recompute", "train"}, default="frozen"
        How the BatchNorm layers normalise while the network trains. ``"frozen"``: with their running
        (ImageNet) statistics, in training as in prediction, so that prediction computes exactly the
        function that training optimised; their affine weights are still trained. ``"recompute"``: with
        the statistics of each batch, then, after training, the running statistics are re-estimated over
        the training images (evaluation transform) under the final weights. ``"train"``: PyTorch's
        default, batch statistics and an exponential running average; on images far from ImageNet that
        average lags behind the changing weights and evaluation-mode predictions collapse (kept for
        comparison, see the fine-tuning guide).
    head_init : {"linear_probe", "random"}, default="linear_probe"
        ``"linear_probe"``: the new layer starts as a multinomial ``LogisticRegression(C=1)`` fitted on
        the frozen features of the training images (evaluation transform, validation images left out),
        then everything is fine-tuned (LP-FT [3]_): the first steps do not distort the pretrained
        features with the gradients of a random layer, and a short run starts from the probe's accuracy
        rather than from chance. ``"random"``: ``nn.Linear``'s initialisation, drawn from ``random_state``.
    optimizer : {"adamw", "sgd"} or torch optimizer class, default="adamw"
        ``"sgd"`` uses momentum 0.9. A class is called with the parameter groups, ``lr`` and
        ``weight_decay``.
    weight_decay : float, default=1e-2
        Decoupled (AdamW) or L2 (SGD) weight decay.
    lr_schedule : {"cosine", "constant"}, default="cosine"
        ``"cosine"`` anneals every learning rate to 0 over ``max_epochs``, step by step.
    batch_size : int, default=32
        Images per step.
    augment : bool or dict, default=True
        ``True``: timm's training transform with a random-resized crop (scale 0.25 to 1) and a horizontal
        flip, no colour jitter or auto-augment; a dict overrides or extends these keywords of
        ``timm.data.create_transform(is_training=True)``; ``False``: the evaluation transform.
    early_stopping : bool, default=True
        Hold out a stratified ``validation_fraction`` of the images (at least one per class), stop when
        their loss has not improved for ``patience`` epochs and keep the weights of the best epoch.
    validation_fraction : float, default=0.1
        Share of the images held out when ``early_stopping=True``.
    patience : int, default=3
        Epochs without improvement of the validation loss before stopping.
    n_jobs : int, default=None
        Image-decoding DataLoader workers, as in :class:`~sk_decaf.DeCAFTransformer`.
    device : str or torch.device, default="auto"
        ``"auto"`` uses CUDA when present, else the CPU.
    model_kwargs : dict, default=None
        Extra keyword arguments for the model factory.
    random_state : int, RandomState instance or None, default=None
        Seeds the new layer's weights, the validation split, the order of the batches, the augmentation
        and dropout: a fit with an int is reproducible on the CPU. The global RNGs are restored after.
    verbose : int, default=0
        ``1`` prints skorch's table of losses per epoch.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels.
    net_ : skorch.NeuralNetClassifier
        The trained network; ``net_.module_`` holds the fine-tuned weights (``.backbone``, ``.head``).
    history_ : skorch.History
        Losses and accuracies per epoch (``train_loss``, ``valid_loss``, ``valid_acc``, ``dur``).
    layer_ : str
        Canonical name of ``layer``.
    n_epochs_ : int
        Epochs run.
    n_trainable_params_ : int
        Parameters updated by training (new layer included).
    data_config_ : dict
        The timm data config (input size, interpolation, mean, std, crop).
    device_ : torch.device
        The device in use.

    See Also
    --------
    sk_decaf.DeCAFTransformer : Frozen features of the same layer, for a linear classifier.

    Notes
    -----
    A pickle holds the fine-tuned weights (they are the model); tensors are saved device-independently
    and load on the CPU when CUDA is absent.

    References
    ----------
    .. [1] H. Azizpour, A. S. Razavian, J. Sullivan, A. Maki and S. Carlsson. From Generic to Specific Deep
       Representations for Visual Recognition. CVPR Workshops 2015, §3.2.3 and Table 4.
    .. [2] J. Donahue, Y. Jia, O. Vinyals, J. Hoffman, N. Zhang, E. Tzeng and T. Darrell. DeCAF: A Deep
       Convolutional Activation Feature for Generic Visual Recognition. ICML 2014.
    .. [3] A. Kumar, A. Raghunathan, R. Jones, T. Ma and P. Liang. Fine-Tuning can Distort Pretrained
       Features and Underperform Out-of-Distribution. ICLR 2022.

    Examples
    --------
    >>> from sk_decaf import FineTunedClassifier
    >>> from sk_decaf.datasets import load_demo
    >>> demo = load_demo()
    >>> clf = FineTunedClassifier("test_efficientnet", weights="random", max_epochs=1,
    ...                           early_stopping=False, random_state=0)
    >>> clf.fit(demo.paths[::10], demo.target_names[demo.target[::10]]).predict(demo.paths[:2]).shape
    (2,)
    >>> clf.layer_, clf.n_epochs_
    ('pre_logits', 1)
    """

    _parameter_constraints = {
        "backbone": [str, torch.nn.Module],
        "layer": [None, str, Interval(numbers.Integral, None, -1, closed="right")],
        "weights": [None, str, os.PathLike],
        "pooling": [StrOptions({"avg", "max", "flatten"}), Interval(numbers.Integral, 1, None, closed="left")],
        "max_epochs": [Interval(numbers.Integral, 1, None, closed="left")],
        "lr": [Interval(numbers.Real, 0, None, closed="neither")],
        "backbone_lr_scale": [Interval(numbers.Real, 0, None, closed="left")],
        "freeze_until": [None, str, Interval(numbers.Integral, None, -1, closed="right")],
        "batchnorm": [StrOptions({"frozen", "recompute", "train"})],
        "head_init": [StrOptions({"linear_probe", "random"})],
        "optimizer": [StrOptions({"adamw", "sgd"}), type],
        "weight_decay": [Interval(numbers.Real, 0, None, closed="left")],
        "lr_schedule": [StrOptions({"cosine", "constant"})],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "augment": ["boolean", dict],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(numbers.Real, 0, 1, closed="neither")],
        "patience": [Interval(numbers.Integral, 1, None, closed="left")],
        "n_jobs": [None, numbers.Integral],
        "device": [str, torch.device],
        "model_kwargs": [None, dict],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        backbone: str | torch.nn.Module = "efficientnet_lite0",
        *,
        layer: str | int | None = None,
        weights: str | os.PathLike[str] | None = None,
        pooling: str | int = "avg",
        max_epochs: int = 10,
        lr: float = 1e-3,
        backbone_lr_scale: float = 0.1,
        freeze_until: str | int | None = None,
        batchnorm: str = "frozen",
        head_init: str = "linear_probe",
        optimizer: str | type[torch.optim.Optimizer] = "adamw",
        weight_decay: float = 1e-2,
        lr_schedule: str = "cosine",
        batch_size: int = 32,
        augment: bool | dict[str, Any] = True,
        early_stopping: bool = True,
        validation_fraction: float = 0.1,
        patience: int = 3,
        n_jobs: int | None = None,
        device: str | torch.device = "auto",
        model_kwargs: dict[str, Any] | None = None,
        random_state: int | np.random.RandomState | None = None,
        verbose: bool | int = 0,
    ) -> None:
        self.backbone = backbone
        self.layer = layer
        self.weights = weights
        self.pooling = pooling
        self.max_epochs = max_epochs
        self.lr = lr
        self.backbone_lr_scale = backbone_lr_scale
        self.freeze_until = freeze_until
        self.batchnorm = batchnorm
        self.head_init = head_init
        self.optimizer = optimizer
        self.weight_decay = weight_decay
        self.lr_schedule = lr_schedule
        self.batch_size = batch_size
        self.augment = augment
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.n_jobs = n_jobs
        self.device = device
        self.model_kwargs = model_kwargs
        self.random_state = random_state
        self.verbose = verbose

    # -- fitting -----------------------------------------------------------------------------------
    @fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Images, y: ArrayLike) -> FineTunedClassifier:
        """Fine-tune the network on images ``X`` with labels ``y``.

        Parameters
        ----------
        X : sequence of images
            File paths, PIL images or arrays, as for :class:`~sk_decaf.DeCAFTransformer`.
        y : array-like of shape (n_samples,)
            Class labels (any type :class:`~sklearn.preprocessing.LabelEncoder` accepts).

        Returns
        -------
        self : FineTunedClassifier

        Raises
        ------
        ValueError
            On fewer than two classes, or on a bad image (naming its index and path): a missing, empty or
            unidentifiable file before training starts (only headers are read), a file whose pixels cannot be
            decoded when the first pass over the images reaches it (images are decoded once per pass).
        """
        items = as_image_sequence(X)
        check_items(items)
        y = column_or_1d(y, warn=True)
        check_consistent_length(items, y)
        for i, item in enumerate(items):  # fail now on unreadable headers; pixels are decoded once, in training
            image_size(item, i)
        check_classification_targets(y)
        encoder = LabelEncoder().fit(y)
        if len(encoder.classes_) < 2:
            raise ValueError(f"FineTunedClassifier needs at least 2 classes; got {encoder.classes_.tolist()}.")
        self.classes_ = encoder.classes_
        y_encoded = encoder.transform(y).astype(np.int64)
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        self.device_ = resolve_device(self.device)
        n_valid = self._n_valid(y_encoded) if self.early_stopping else 0

        with seeded_global_rngs(seed, self.device_):
            backbone = load_backbone(self.backbone, self.weights, self.model_kwargs, seed=seed)
            (self.layer_,) = resolve_layers(self.layer, backbone)
            self.data_config_ = dict(backbone.data_config)
            freeze = "all" if self.backbone_lr_scale == 0 else self.freeze_until
            module = FineTuneModule(
                backbone,
                self.layer_,
                len(self.classes_),
                pooling=self.pooling,
                freeze_until=freeze,
                generator=torch.Generator().manual_seed(seed),
                batchnorm="frozen" if self.batchnorm == "frozen" else "train",
            )
            self.n_trainable_params_ = int(sum(p.numel() for group in module.trainable_parameters() for p in group))
            eval_transform = build_transform(self.data_config_)
            split = _EvalValidSplit(n_valid, seed, eval_transform) if n_valid else None
            if self.head_init == "linear_probe":
                fit_rows = split.indices(y_encoded)[0] if split else np.arange(len(items))
                self._linear_probe(
                    module, Subset(ImageItems(items, y_encoded, eval_transform), fit_rows.tolist()), y_encoded[fit_rows]
                )
            train = ImageItems(items, y_encoded, build_train_transform(self.data_config_, self.augment))
            self.net_ = self._make_net(module, len(items) - n_valid, split, seed, eval_transform)
            self.net_.fit(train, y_encoded)
            if self.batchnorm == "recompute":
                workers = resolve_workers(self.n_jobs, len(items), self.batch_size, self.device_.type)
                self.net_.module_.recompute_batchnorm(
                    ImageItems(items, y_encoded, eval_transform),
                    batch_size=self.batch_size,
                    device=self.device_,
                    num_workers=workers,
                )
        self.history_ = self.net_.history
        self.n_epochs_ = len(self.history_)
        return self

    def _n_valid(self, y: np.ndarray) -> int:
        """Size of the stratified hold-out: the fraction, but at least one image per class."""
        counts = np.bincount(y)
        n_valid = max(len(counts), math.ceil(self.validation_fraction * len(y)))
        if counts.min() < 2 or len(y) - n_valid < len(counts):
            raise ValueError(
                "early_stopping=True holds out a stratified validation split, which needs at least 2 "
                f"images per class and {n_valid} + {len(counts)} images in all; got {len(y)} images with "
                f"{counts.min()} in the smallest class. Set early_stopping=False."
            )
        return n_valid

    def _linear_probe(self, module: FineTuneModule, dataset: Dataset, y: np.ndarray) -> None:
        """Initialise the new layer with a logistic regression on the frozen features."""
        workers = resolve_workers(self.n_jobs, len(y), self.batch_size, self.device_.type)
        features = module.features(dataset, batch_size=self.batch_size, device=self.device_, num_workers=workers)
        probe = LogisticRegression(C=1.0, max_iter=1000).fit(features, y)
        weight, bias = probe.coef_, probe.intercept_
        if weight.shape[0] == 1:  # binary: sigmoid(z) == softmax([-z/2, z/2])
            weight, bias = np.vstack([-weight / 2, weight / 2]), np.r_[-bias / 2, bias / 2]
        module.set_head(weight, bias)

    def _make_net(
        self, module: FineTuneModule, n_train: int, split: _EvalValidSplit | None, seed: int, eval_transform: Any
    ) -> _FineTuneNet:
        drop_last = n_train > self.batch_size  # no 1-image batch through BatchNorm in training mode
        steps = max(1, n_train // self.batch_size if drop_last else 1)
        callbacks: list[tuple[str, Any]] = []
        if self.lr_schedule == "cosine":
            callbacks.append(
                (
                    "lr_scheduler",
                    LRScheduler(
                        policy=torch.optim.lr_scheduler.CosineAnnealingLR,
                        T_max=self.max_epochs * steps,
                        step_every="batch",
                    ),
                )
            )
        if split is not None:
            callbacks.append(
                ("early_stopping", EarlyStopping(monitor="valid_loss", patience=self.patience, load_best=True))
            )
        optimizer = self.optimizer
        if isinstance(optimizer, str):
            optimizer = {"adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}[optimizer]
        extra = {"optimizer__momentum": 0.9} if self.optimizer == "sgd" else {}
        workers = resolve_workers(
            self.n_jobs, max(n_train, 2 * self.batch_size + 1), self.batch_size, self.device_.type
        )
        loader = {"num_workers": workers, "pin_memory": self.device_.type == "cuda"}
        return _FineTuneNet(
            module,
            criterion=torch.nn.CrossEntropyLoss,
            optimizer=optimizer,
            lr=self.lr,
            optimizer__weight_decay=self.weight_decay,
            optimizer__param_groups=[("backbone.*", {"lr": self.lr * self.backbone_lr_scale})],
            max_epochs=self.max_epochs,
            batch_size=self.batch_size,
            train_split=split,
            callbacks=callbacks,
            iterator_train__shuffle=True,
            iterator_train__drop_last=drop_last,
            # DataLoaders draw their workers' base seed from these, not from the global RNG.
            iterator_train__generator=torch.Generator().manual_seed(seed),
            iterator_valid__generator=torch.Generator().manual_seed(seed),
            **{f"iterator_{kind}__{k}": v for kind in ("train", "valid") for k, v in loader.items()},
            dataset=ImageItems,
            dataset__transform=eval_transform,
            device=str(self.device_),
            verbose=int(self.verbose),
            **extra,
        )

    # -- predicting --------------------------------------------------------------------------------
    def predict_proba(self, X: Images) -> np.ndarray:
        """Class probabilities (softmax of the network's outputs).

        Parameters
        ----------
        X : sequence of images

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes), dtype float32
            Columns ordered as :attr:`classes_`.
        """
        check_is_fitted(self, "net_")
        items = as_image_sequence(X)
        if len(items) == 0:
            raise ValueError("FineTunedClassifier got no images.")
        check_items(items)
        dataset = ImageItems(items, None, build_transform(self.data_config_))
        return np.asarray(self.net_.predict_proba(dataset), dtype=np.float32)

    def predict(self, X: Images) -> np.ndarray:
        """Predicted class of each image.

        Parameters
        ----------
        X : sequence of images

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        check_is_fitted(self, "net_")
        return self.classes_[self.predict_proba(X).argmax(axis=1)]

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False  # images (paths, PIL images, arrays), not a feature matrix
        tags.input_tags.string = True
        tags.non_deterministic = True  # GPU kernels and random_state=None are not reproducible
        return tags

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        if "net_" in state:  # skorch maps CUDA tensors to the CPU when CUDA is absent
            self.device_ = torch.device(self.net_.device)
