"""The torch side of one fitted DeCAF transformer: network, preprocessing, engine and batching.

:class:`Featurizer` turns image items into per-layer float32 arrays batch by batch. It knows nothing of
scikit-learn or of the activation cache; the estimator decides which images need a forward pass.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import warnings

import numpy as np
import torch

from . import quantize
from .data import iterate, make_loader
from .engines import OnnxEngine, TorchEngine, captured_output, export_onnx, graph_dir, relative_error
from .layers import FeatureExtractor
from .preprocess import make_preprocessor

__all__ = ["Featurizer", "one_line", "ONNX_TOLERANCE", "PRECISIONS"]

#: What a Featurizer computes in: float32 (either engine), bfloat16 (torch, autocast), int8 (onnxruntime).
PRECISIONS = ("float32", "bfloat16", "int8")

#: Largest relative error ``max|onnx - torch| / max|torch|`` accepted on the first batch.
ONNX_TOLERANCE = 1e-4
#: Images of the first batch on which a newly exported graph is checked against torch.
VERIFY_IMAGES = 8
# int8 graphs whose disagreement with float32 this process has already reported: once per graph.
_REPORTED: set[str] = set()


def one_line(exc: BaseException, limit: int = 300) -> str:
    """``"Type: first line of the message"``, at most ``limit`` characters.

    Warnings stay one line long even when an exporter's message carries a whole traced graph.
    """
    lines = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {lines[0] if lines else ''}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


#: How the stored float32 graph is made; part of its key. "shapes folded": the batch-independent shape
#: arithmetic of the export (TensorFlow-style "same" padding) is folded into constants
#: (:func:`~sk_decaf._torch.engines.fold_shapes`): the same outputs, and EfficientNet-Lite0 ran 1.4x faster
GRAPH_FORMAT = "shapes folded"


class Featurizer:
    """Run ``backbone`` up to ``layers`` on images and yield pooled activations.

    Parameters
    ----------
    backbone : Backbone
        Loaded network; it may be pruned in place past the deepest layer.
    layers : list of str
        Canonical layer names to compute, in output order.
    pooling, preprocess : see :class:`~sk_decaf.DeCAFTransformer`.
    device : torch.device
    engine : {"torch", "onnxruntime"}
    precision : {"float32", "bfloat16", "int8"}
        ``"bfloat16"``: bf16 autocast (on the CPU too; the torch engine only). ``"int8"``: the onnxruntime
        engine's graph quantized to int8 (:mod:`~sk_decaf._torch.quantize`), or float32 where it disagrees.
    identity : dict
        Everything that determines the activations (the transformer's activation description): keys the
        exported ONNX graph, together with the layers and the torch version.
    onnx_dir : str
        Where exported graphs are kept.
    calibration : sequence of str, default=None
        The fixed image files that calibrate and check an int8 graph; None is
        :func:`~sk_decaf._torch.quantize.calibration_images` (the demo images).
    """

    def __init__(
        self,
        backbone,
        layers,
        *,
        pooling,
        preprocess,
        device,
        engine="torch",
        precision="float32",
        identity=None,
        onnx_dir=None,
        decode="exact",
        tta=None,
        tta_reduce="mean",
        calibration=None,
    ):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}.")
        if precision == "int8" and engine != "onnxruntime":
            raise ValueError("precision='int8' runs on engine='onnxruntime'.")
        self.layers = list(layers)
        self.model = backbone.model
        self.extractor = FeatureExtractor(backbone, self.layers, pooling)
        self.transform = make_preprocessor(backbone.data_config, preprocess, decode, tta)
        self.tta_reduce = tta_reduce
        self.input_size = tuple(backbone.data_config["input_size"])
        self.device = device
        self.precision = precision
        self.requested_engine = engine
        self.identity = dict(identity or {})
        self.onnx_dir = onnx_dir or graph_dir()
        self.calibration = list(calibration or [])
        self.torch_engine = TorchEngine(self.extractor, device, bf16=precision == "bfloat16")
        self.engine = None  # started on the first batch
        self._start_lock = threading.Lock()

    # -- engines -----------------------------------------------------------------------------------
    def onnx_path(self):
        """The float32 graph's file in the store (an int8 network is quantized from it, and keyed by it)."""
        key = dict(self.identity, layers=self.layers, torch=torch.__version__, input_size=self.input_size)
        key["graph"] = GRAPH_FORMAT
        if key.get("precision") == "int8":
            key["precision"] = "float32"  # one float32 graph, shared with the float32 transformers
            key.pop("int8", None)
        digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:32]
        return os.path.join(self.onnx_dir, f"{digest}.onnx")

    @property
    def computed_precision(self):
        """The precision the started engine computes in (None before the first batch)."""
        return None if self.engine is None else self.engine.precision

    def prepare(self, paths):
        """uint8 network inputs ``(N, C, H, W)`` for image ``paths``, decoded in this process (first view only)."""
        arrays = []
        for images, _, errors in iterate(make_loader(paths, self.transform, batch_size=32, n_jobs=1)):
            if errors:
                raise ValueError(errors[0][1])
            arrays.append((images[:, 0] if images.ndim == 5 else images).numpy())
        return np.concatenate(arrays)

    def _start_int8(self, float_engine, float_path):
        """The int8 engine of the float32 graph at ``float_path``, or ``float_engine`` where int8 disagrees."""
        try:
            graph = quantize.int8_graph(float_path, self.prepare, self.calibration or quantize.calibration_images())
        except Exception as exc:  # a graph onnxruntime cannot quantize: float32 still works
            warnings.warn(
                f"Could not quantize this network to int8 ({one_line(exc)}); precision='int8' runs float32.",
                RuntimeWarning,
                stacklevel=6,
            )
            return float_engine
        if graph.path is None:
            if float_path not in _REPORTED:
                _REPORTED.add(float_path)
                warnings.warn(
                    f"precision='int8': the int8 network agrees with float32 only to a cosine of "
                    f"{graph.agreement:.3f} on the calibration images (< {graph.record['threshold']:g}); "
                    "running float32.",
                    RuntimeWarning,
                    stacklevel=6,
                )
            return float_engine
        with captured_output():
            return OnnxEngine(graph.path, precision="int8")

    def _start_onnx(self, first_batch):
        path = self.onnx_path()
        verified = path + ".verified"
        try:
            if not os.path.exists(path):
                export_onnx(self.extractor, path, first_batch[:2], fold=True)
            with captured_output():  # onnxruntime logs a session's failure to stderr before raising it
                engine = OnnxEngine(path)
            if not os.path.exists(verified):
                probe = first_batch[:VERIFY_IMAGES]
                errors = [relative_error(o, t) for o, t in zip(engine(probe), self.torch_engine(probe))]
                if max(errors) > ONNX_TOLERANCE:
                    warnings.warn(
                        f"onnxruntime outputs differ from torch by a relative error of {max(errors):.2e} "
                        f"(> {ONNX_TOLERANCE:g}); falling back to engine='torch'.",
                        RuntimeWarning,
                        stacklevel=5,
                    )
                    return self.torch_engine
                with open(verified, "w") as f:
                    json.dump({"max_relative_error": max(errors)}, f)
            return self._start_int8(engine, path) if self.precision == "int8" else engine
        except Exception as exc:  # export or session failure: torch still works
            warnings.warn(
                f"Could not run this network with onnxruntime ({one_line(exc)}); falling back to engine='torch'.",
                RuntimeWarning,
                stacklevel=5,
            )
            return self.torch_engine

    def _engine_for(self, first_batch):
        if self.engine is None:
            with self._start_lock:  # threads transforming with one transformer start one engine
                if self.engine is None:
                    if self.requested_engine == "onnxruntime":
                        self.engine = self._start_onnx(first_batch)
                    else:
                        self.engine = self.torch_engine
        return self.engine

    def _reduce_views(self, out, n_images):
        """``(n_images * n_views, D)`` -> ``(n_images, D)`` by the mean or the maximum over the views."""
        if len(out) == n_images:
            return out
        views = out.reshape(n_images, -1, out.shape[1])
        return views.max(axis=1) if self.tta_reduce == "max" else views.mean(axis=1, dtype=np.float32)

    # -- running -----------------------------------------------------------------------------------
    def run(self, items, indices=None, *, batch_size=32, n_jobs=None, progress=None):
        """Yield ``(indices, [array per layer], errors)`` for ``items`` (or the subset ``indices``), in order.

        ``errors`` lists ``(index, message)`` for the items of the batch that could not be decoded; the
        batch's other images are computed all the same. One batch stays in flight: batch ``i + 1`` is
        decoded and submitted before the outputs of batch ``i`` are collected, so on a GPU decoding, copies
        and compute overlap. On the CPU with ``n_jobs=None``, the first batch is decoded in this process and
        timed against the network; the rest is decoded by as many worker processes as pays on this machine
        (none for small images, where the network dominates; some for large photos, where decoding does).
        """
        indices = list(range(len(items))) if indices is None else list(indices)
        # batch_size counts network inputs: with test-time views, fewer images share a batch.
        batch_size = max(1, batch_size // self.transform.n_views)
        timing: dict[str, float] | None = None
        if n_jobs is None and self.device.type == "cpu" and len(indices) > 2 * batch_size:
            timing = {}
            head, indices = indices[:batch_size], indices[batch_size:]
            sources = [(head, 1), (indices, "measured")]
        else:
            sources = [(indices, n_jobs)]

        def collect(pending):
            idx, engine, handle, errors = pending
            if progress is not None:
                progress.update(len(idx) + len(errors))
            outputs = (
                []
                if handle is None
                else [self._reduce_views(np.asarray(o, dtype=np.float32), len(idx)) for o in engine.result(handle)]
            )
            return idx.numpy(), outputs, errors

        pending = None
        for subset, jobs in sources:
            workers = None
            if jobs == "measured":  # decided from the timed first batch
                jobs, workers = 1, self.decode_workers(timing)
            loader = make_loader(
                items,
                self.transform,
                indices=subset,
                batch_size=batch_size,
                n_jobs=jobs,
                device_type=self.device.type,
                workers=workers,
            )
            start = time.perf_counter()
            for images, idx, errors in iterate(loader):
                engine = handle = None
                if images is not None:
                    if images.ndim == 5:  # (images, views, C, H, W): the views of an image share the batch
                        images = images.flatten(0, 1)
                    engine = self._engine_for(images)
                    if timing is not None and "model" not in timing:
                        decoded = time.perf_counter()
                        handle = engine.submit(images)
                        engine.result(handle)
                        timing.update(
                            decode=(decoded - start) / len(idx), model=(time.perf_counter() - decoded) / len(idx)
                        )
                    else:
                        handle = engine.submit(images)
                if pending is not None:
                    yield collect(pending)
                pending = (idx, engine, handle, errors)
        if pending is not None:
            yield collect(pending)

    @staticmethod
    def decode_workers(timing, cpus=None):
        """Decoding processes that maximise throughput, from per-image decode and network times.

        ``model`` is the network's wall time per image using every core, so it costs ``model * C``
        core-seconds on ``C`` cores. In the main process an image costs ``decode + model``. With ``w``
        workers, decoding overlaps the network and an image costs at least ``decode / w`` (a worker decodes
        on one core) and ``(decode + model * C) / C`` (all the work shared by the ``C`` cores, never less
        than ``model``); the larger bound is the estimate. Workers are used only when that is at least 20%
        faster than the main process (they cost start-up time); on ties, fewer workers.
        Returns the number of worker processes (0 = decode in the main process).
        """
        cpus = cpus or os.cpu_count() or 1
        decode, model = timing.get("decode", 0.0), timing.get("model", 0.0)
        if decode <= 0 or model <= 0 or cpus < 2:
            return 0
        serial = decode + model
        shared = (decode + model * cpus) / cpus
        best, best_cost = 0, serial
        for w in range(1, min(cpus, 8) + 1):
            cost = max(decode / w, shared)
            if cost < best_cost * 0.99:
                best, best_cost = w, cost
        return best if best_cost <= serial / 1.2 else 0
