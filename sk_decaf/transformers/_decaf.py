"""DeCAFTransformer: images in, activations of a frozen pretrained network's layer out."""

from __future__ import annotations

import numbers
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from .._cache import ActivationCache
from .._docstrings import IMAGE_PARAMS, fill_doc
from .._images import Images, as_image_sequence
from .._sklearn_compat import Interval, StrOptions, fit_context
from .._torch.backbones import check_input_size
from .._torch.catalog import backbone_info
from .._torch.layers import POOLINGS, FeatureExtractor, resolve_layers
from .._torch.preprocess import DECODE_MODES, TTA_MODES, make_preprocessor
from ._extract import Extraction
from ._output import output_array
from ._runtime import KEY_EXEMPT_PARAMS, Network, Resolution, check_pooling, resolve

__all__ = ["DeCAFTransformer", "KEY_EXEMPT_PARAMS"]


@fill_doc(IMAGE_PARAMS)
class DeCAFTransformer(TransformerMixin, BaseEstimator):
    """Extract DeCAF features: activations of a layer of a frozen, ImageNet-pretrained network.

    ``fit`` loads the network's description (nothing is learned, no image is read); ``transform`` decodes
    the images in a DataLoader, runs the network up to the deepest requested layer in batches and returns
    one row of float32 features per image, in input order.

    Parameters
    ----------
    %(backbone)s
    %(layer)s
    %(device)s
    batch_size : int, default=32
        Network inputs per forward pass: images, or their views with ``tta`` (``tta="10crop"`` runs 3 images
        of 10 views at a time), so memory does not grow with the number of views.
    %(n_jobs)s
    %(weights)s
    %(pooling)s
    preprocess : {"model", "decaf"}, default="model"
        ``"model"``: timm's evaluation transform for the network's data config (resize, centre crop,
        normalise). ``"decaf"``: warp to 256x256 ignoring the aspect ratio and take the centre 224 crop,
        as DeCAF does (§3.1, §4).
    %(input_size)s
    verbose : bool or int, default=False
        Show a progress bar over the images that go through the network.
    %(cache)s
    cache_max_bytes : int, default=None
        Bound on the stored vectors; least-recently-used ones are evicted beyond it.
    cache_layers : {"auto", "requested", "all"} or list of str, default="auto"
        Layers stored whenever the network runs with a cache. ``"auto"`` stores every layer whose pooled
        vector has at most 16384 values, so a later request for another layer (a GridSearchCV over
        ``layer``) is a pure cache hit; this runs the whole network once instead of stopping at the
        requested layer. ``"requested"`` stores only ``layer``.
    engine : {"auto", "torch", "onnxruntime"}, default="auto"
        ``"auto"`` runs on the CPU with onnxruntime when it is installed (the network truncated at the
        computed layers is exported once to the graph store, see Notes, and its outputs are checked against
        torch on the first batch: relative error at most 1e-4, else torch is used with a warning), and with
        torch otherwise.
    precision : {"auto", "float32", "bfloat16", "int8"}, default="auto"
        ``"auto"`` is bf16 autocast on CUDA and float32 on the CPU (never bfloat16 or int8 there, so no
        features change silently). ``"bfloat16"`` computes under bf16 autocast on the CPU too, with the torch
        engine (fast where the CPU has native bfloat16, AVX512-BF16 or AMX; slower than float32 elsewhere).
        ``"int8"`` runs on the CPU with onnxruntime (``engine="auto"`` or ``"onnxruntime"``): the exported
        graph quantized to int8, calibrated on the embedded demo images (never on ``X``), built on first use
        and stored beside the float32 graph. Where its features agree with float32's to a cosine below
        0.97 on held-out demo images, one warning says so and float32 runs. Outputs are always float32; each
        precision has its own cache entries. See the "Precision" guide.
    decode : {"reduced", "exact"}, default="reduced"
        ``"reduced"`` decodes a JPEG directly at the smallest scale (1/2, 1/4, 1/8) that still covers the
        resize (PIL's ``Image.draft``), shrinks other large images by an integer factor first, and resamples
        only the crop: 12-megapixel photos featurise faster (``benchmarks/bench_photos.py`` prints the
        ratio), with the same accuracy (see the "Scaling out" guide). ``"exact"`` decodes at full size and
        resizes exactly as timm's transform.
    %(tta)s
    %(tta_reduce)s
    on_error : {"raise", "nan"}, default="raise"
        What a bad item (missing, empty, corrupt, truncated or not an image) does. ``"raise"``: a
        ``ValueError`` naming its index and path (rows computed before it stay in the cache).
        ``"nan"``: its row is NaN, one ``UserWarning`` lists the index and path of every bad item, and the
        other rows are computed, aligned and cached as usual.
    %(model_kwargs)s
    random_state : int, RandomState instance or None, default=None
        Seeds random weights (``weights="random"``); a local generator, never the global seed.

    Attributes
    ----------
    backbone_ : torch.nn.Module
        The loaded network (truncated after the deepest layer that is computed).
    layers_ : list of str
        Canonical names of the requested layers, in output order.
    feature_dims_ : dict
        Feature dimension of each requested layer.
    n_features_out_ : int
        Number of output features.
    device_ : torch.device
        The device in use.
    engine_ : str
        The engine that will run the network (``"torch"`` or ``"onnxruntime"``).
    data_config_ : dict
        The resolved timm data config (input size, interpolation, mean, std, crop); its ``input_size`` is
        ``(3, height, width)`` of the size the network takes (``input_size``, else the network's own).
    weights_digest_ : str or None
        Digest of the weights, when a cache or ONNX graph needs it.
    random_seed_ : int
        Seed drawn from ``random_state`` for random weights.

    See Also
    --------
    sk_decaf.list_layers : The layer names a backbone accepts.
    sk_decaf.FeatureDropout : DeCAF's dropout on the extracted features.
    sk_decaf.SignedSqrt : Azizpour et al.'s power normalisation.

    Notes
    -----
    A pickled fitted transformer does not contain the weights (unless ``backbone`` is a module): they are
    reloaded when the unpickled transformer first needs the network, and their digest is checked then. Bad
    input never loses alignment: a missing, empty, corrupt, truncated or non-image item raises a
    ``ValueError`` that names its index and path (or gives a NaN row with ``on_error="nan"``).

    The activation cache and the exported ONNX graph are keyed by one description of everything that
    changes the activations: every parameter except those that cannot (batching, devices, storage, error
    handling), with the backbone replaced by its resolved name and structure, the weights by their digest,
    and the precision by the one actually computed. Exported graphs are kept in one store shared by every
    transformer and process, ``$SK_DECAF_HOME/onnx`` (``~/.cache/sk_decaf/onnx`` by default).

    References
    ----------
    .. [1] J. Donahue, Y. Jia, O. Vinyals, J. Hoffman, N. Zhang, E. Tzeng and T. Darrell. DeCAF: A Deep
       Convolutional Activation Feature for Generic Visual Recognition. ICML 2014.
    .. [2] H. Azizpour, A. S. Razavian, J. Sullivan, A. Maki and S. Carlsson. From Generic to Specific Deep
       Representations for Visual Recognition. CVPR Workshops 2015.

    Examples
    --------
    >>> from sklearn.pipeline import Pipeline
    >>> from sklearn.svm import LinearSVC
    >>> from sk_decaf import DeCAFTransformer
    >>> from sk_decaf.datasets import load_demo
    >>> demo = load_demo()
    >>> decaf = DeCAFTransformer(layer=["blocks.6", "pre_logits"], engine="torch").fit(demo.paths[:2])
    >>> decaf.transform(demo.paths[:2]).shape
    (2, 1600)
    >>> pipe = Pipeline([("decaf", DeCAFTransformer()), ("svm", LinearSVC())])
    >>> pipe.fit(demo.paths[::4], demo.target[::4]).score(demo.paths[1::4], demo.target[1::4]) > 0.8
    True
    """

    _parameter_constraints: dict = {
        "backbone": [str, torch.nn.Module],
        "layer": [None, str, Interval(numbers.Integral, None, -1, closed="right"), list, tuple],
        "device": [str, torch.device],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "n_jobs": [None, numbers.Integral],
        "weights": [None, str, os.PathLike],
        "pooling": [StrOptions(set(POOLINGS)), Interval(numbers.Integral, 1, None, closed="left")],
        "preprocess": [StrOptions({"model", "decaf"})],
        "input_size": [None, Interval(numbers.Integral, 1, None, closed="left"), tuple, list],
        "verbose": ["verbose"],
        "cache": [None, str, os.PathLike],
        "cache_max_bytes": [None, Interval(numbers.Integral, 1, None, closed="left")],
        "cache_layers": [StrOptions({"auto", "requested", "all"}), list],
        "engine": [StrOptions({"auto", "torch", "onnxruntime"})],
        "precision": [StrOptions({"auto", "float32", "bfloat16", "int8"})],
        "decode": [StrOptions(set(DECODE_MODES))],
        "tta": [None, StrOptions({m for m in TTA_MODES if m})],
        "tta_reduce": [StrOptions({"mean", "max"})],
        "on_error": [StrOptions({"raise", "nan"})],
        "model_kwargs": [None, dict],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        backbone: str | torch.nn.Module = "efficientnet_lite0",
        *,
        layer: str | int | Sequence[str | int] | None = None,
        device: str | torch.device = "auto",
        batch_size: int = 32,
        n_jobs: int | None = None,
        weights: str | os.PathLike[str] | None = None,
        pooling: str | int = "avg",
        preprocess: str = "model",
        input_size: int | tuple[int, int] | None = None,
        verbose: bool | int = False,
        cache: str | os.PathLike[str] | None = None,
        cache_max_bytes: int | None = None,
        cache_layers: str | Sequence[str | int] = "auto",
        engine: str = "auto",
        precision: str = "auto",
        decode: str = "reduced",
        tta: str | None = None,
        tta_reduce: str = "mean",
        on_error: str = "raise",
        model_kwargs: dict[str, Any] | None = None,
        random_state: int | np.random.RandomState | None = None,
    ) -> None:
        self.backbone = backbone
        self.layer = layer
        self.device = device
        self.batch_size = batch_size
        self.n_jobs = n_jobs
        self.weights = weights
        self.pooling = pooling
        self.preprocess = preprocess
        self.input_size = input_size
        self.verbose = verbose
        self.cache = cache
        self.cache_max_bytes = cache_max_bytes
        self.cache_layers = cache_layers
        self.engine = engine
        self.precision = precision
        self.decode = decode
        self.tta = tta
        self.tta_reduce = tta_reduce
        self.on_error = on_error
        self.model_kwargs = model_kwargs
        self.random_state = random_state

    @fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Images, y: object = None) -> DeCAFTransformer:
        """Resolve the backbone, its layers and feature sizes; no image is read.

        The network's description is computed once per process and configuration; the network itself is
        loaded when an image first has to go through it (see :attr:`backbone_`), so re-fitting clones in a
        cross-validation costs almost nothing.

        Parameters
        ----------
        X : sequence of images
            Image items, as for :meth:`transform` (only the container is checked).
        y : None
            Ignored.

        Returns
        -------
        self : DeCAFTransformer
        """
        as_image_sequence(X)
        self.random_seed_ = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        check_input_size(self.input_size)
        info = backbone_info(self.backbone, self.weights, self.model_kwargs, self.random_seed_, self.input_size)
        self.layers_ = resolve_layers(self.layer, info)
        check_pooling(self.pooling, self.layers_, info)
        make_preprocessor(info.data_config, self.preprocess, self.decode, self.tta)  # refuses a tta it cannot make
        self.feature_dims_ = {name: info.dim(name, self.pooling) for name in self.layers_}
        self.n_features_out_ = int(sum(self.feature_dims_.values()))
        self.data_config_ = dict(info.data_config)
        self.weights_digest_ = info.digest
        self._place(resolve(self.get_params(deep=False), info, self.layers_))
        return self

    def _place(self, resolution: Resolution) -> None:
        self._resolution = resolution
        self.device_ = resolution.placement.device
        self.engine_ = resolution.placement.engine
        self._network = Network()  # the network loads, and its digest is checked, on first use

    @property
    def backbone_(self) -> torch.nn.Module:
        """The loaded network (``torch.nn.Module``), truncated after the deepest computed layer."""
        check_is_fitted(self, "layers_")
        return self._network.get(self).model

    def feature_network(self) -> FeatureExtractor:
        """The network as one torch module, from prepared images to this transformer's features.

        The module takes a uint8 ``(N, 3, H, W)`` RGB batch prepared as :meth:`transform` prepares it
        (``H, W`` from ``data_config_["input_size"]``), normalises it with the network's mean and std, and
        returns a tuple of float32 ``(N, D)`` tensors: one per name of its ``layers`` attribute, the
        requested ``layers_`` first (``layers_`` concatenated are :meth:`transform`'s columns), then the
        extra layers the activation cache stores. It is what the ONNX engine and :func:`sk_decaf.to_onnx`
        export; the network is loaded if it was not yet.

        Returns
        -------
        network : torch.nn.Module
            In evaluation mode, on ``device_``.
        """
        check_is_fitted(self, "layers_")
        return self._network.get(self).extractor

    def transform(self, X: Images, out: str | os.PathLike[str] | None = None) -> NDArray[np.float32]:
        """Compute the features of ``X``.

        Parameters
        ----------
        X : sequence of images
            File paths (str or path-like) or URLs (``s3://``, ``https://``, ...: needs ``sk-decaf[fsspec]``),
            encoded bytes of image files, binary file objects, Hugging Face image dicts ``{"bytes", "path"}``,
            PIL images, ``(H, W)``/``(H, W, 3)``/``(H, W, 4)`` arrays, or one ``(N, H, W, 3)`` array; a
            one-column table of these (a pandas ``DataFrame``, an ``(N, 1)`` array) is its column. A single
            image must be wrapped in a list. See :doc:`/sources`.
        out : str or path-like, default=None
            Write the features to this ``.npy`` file (a ``numpy.memmap``) instead of memory, so that any
            number of images is featurised with flat memory. The file appears only once every row is
            written; a failed transform leaves none.

        Returns
        -------
        features : ndarray of shape (n_samples, n_features_out_), dtype float32
            One row per image, in input order; with ``on_error="nan"``, NaN rows for bad items.

        Raises
        ------
        ValueError
            With ``on_error="raise"``, naming the index and path of the first missing, empty, corrupt,
            truncated or non-image item.
        """
        check_is_fitted(self, "layers_")
        items = as_image_sequence(X)
        if len(items) == 0:
            raise ValueError("DeCAFTransformer.transform got no images.")
        with output_array((len(items), self.n_features_out_), out) as result:
            return Extraction(self, items, result).run()

    def get_feature_names_out(self, input_features: ArrayLike | None = None) -> NDArray[np.object_]:
        """Feature names ``<layer>_<i>``, e.g. ``fc6_0 ... fc6_4095``.

        Parameters
        ----------
        input_features : None
            Ignored (the inputs are images).

        Returns
        -------
        feature_names_out : ndarray of str objects
        """
        check_is_fitted(self, "layers_")
        names = [f"{name}_{i}" for name in self.layers_ for i in range(self.feature_dims_[name])]
        return np.asarray(names, dtype=object)

    def cache_info(self) -> dict[str, int]:
        """Counters of this configuration's cache, summed over every process that shared it.

        Returns
        -------
        info : dict
            The stored ``entries``, ``images`` and ``bytes``, and the ``hits`` and ``computed`` images (those
            that went through the network).
        """
        check_is_fitted(self, "layers_")
        with self._open_cache() as cache:
            return cache.info(self._resolution.key)

    def clear_cache(self) -> None:
        """Delete every stored activation of the cache file (all configurations)."""
        with self._open_cache() as cache:
            cache.clear()

    def _open_cache(self) -> ActivationCache:
        if self.cache is None:
            raise ValueError("This transformer has no cache (cache=None).")
        return ActivationCache(self.cache)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False  # images (paths, PIL images, arrays), not a feature matrix
        tags.input_tags.string = True
        tags.requires_fit = True
        tags.transformer_tags.preserves_dtype = []
        return tags

    # -- pickling: the weights are reloaded, not embedded ------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())  # object.__getstate__ returns __dict__ itself, not a copy
        state.pop("_network", None)  # the network: reloaded from its weights, never embedded
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        if "_resolution" in state:
            # "auto" may now mean another machine's device, engine and precision (a GPU worker of a
            # transformer fitted on a CPU client); the key follows the precision actually computed.
            self._place(self._resolution.replaced(self.get_params(deep=False)))
