"""int8 networks: onnxruntime's static quantization of the engine's float32 graph, calibrated on fixed images.

``precision="int8"`` runs the onnxruntime engine's exported float32 graph quantized to int8. The graph is
quantized once, the first time a network needs it, and stored in the graph store beside the float32 graph,
keyed by everything it depends on: the float32 graph's key, the quantization :class:`Method`, a digest of the
calibration images and the onnxruntime version. When it is built, its features are compared with the
float32 graph's on held-out calibration images (cosine per image, the lowest over the computed layers); the
result is recorded with it, and below :data:`AGREEMENT` the float32 graph runs instead (one warning).

The calibration set is fixed and ships with the package (the demo images): features stay deterministic, the
same in every fold of a grid search and cacheable, and never depend on the user's data. Every other image of
the set, in sorted order, calibrates; the others check.

How the graph is quantized (:data:`METHOD`, chosen by measurement: see the "Precision" guide):

* the shape arithmetic of TensorFlow-style "same" padding (``Shape``, ``Cast``, ``Div``, ``Ceil`` ... ``Pad``,
  as EfficientNet-Lite exports it) is folded into constants first: left in the graph, onnxruntime quantizes
  those float computations too, rounds the pad amounts and shifts whole feature maps (cosine 0.76 to float32
  on some images, the first attempt's figure);
* onnxruntime's quantized operators (QOperator format: ``QLinearConv`` ...; as accurate as QDQ here, and
  faster), int8 weights per output channel, uint8 activations whose ranges are the 0.001th and 99.999th
  percentiles of the values seen in calibration (histograms gathered one batch at a time, so memory stays
  bounded);
* the first :attr:`Method.float_layers` convolutions (EfficientNet's stem and first block, where the maps are
  largest and have the fewest channels) stay in float32.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .engines import OnnxEngine, _onnxruntime, captured_output, fold_shapes

__all__ = [
    "AGREEMENT",
    "METHOD",
    "Method",
    "Int8Graph",
    "agreement",
    "calibration_images",
    "calibration_split",
    "cosines",
    "files_digest",
    "fold_shapes",
    "identity",
    "int8_graph",
    "quantize",
]

#: Lowest cosine similarity between int8 and float32 features, on every held-out calibration image and every
#: computed layer, for the int8 graph to be used. Measured on the 100 held-out demo images: 0.992 for
#: EfficientNet-Lite0's pre-logits with :data:`METHOD`; 0.76 for the first, untuned attempt.
AGREEMENT = 0.97

#: Images per calibration batch: the histograms of one batch are merged before the next runs.
CALIBRATION_BATCH = 10


@dataclass(frozen=True)
class Method:
    """How a float32 graph is quantized; every field joins the int8 graph's key.

    Attributes
    ----------
    format : {"qdq", "qoperator"}
        onnxruntime's QuantizeLinear/DequantizeLinear pairs around float operators, or quantized operators.
    per_channel : bool
        One weight scale per output channel (else one per tensor).
    calibration : {"minmax", "entropy", "percentile"}
        How activation ranges are read from the calibration images.
    percentile : float
        With ``"percentile"``: the range spans this percentile of the values (and the complementary low one).
    symmetric_ranges : bool
        With ``"percentile"``: a range symmetric about 0 (onnxruntime's default) instead of the two tails.
    float_layers : int
        The first convolutions (or matrix products) in graph order kept in float32.
    float_last : int
        The last ones kept in float32.
    fold_shapes : bool
        Fold batch-independent shape arithmetic into constants before quantizing (:func:`fold_shapes`).
    preprocess : bool
        Run onnxruntime's ``quant_pre_process`` (symbolic shape inference, graph optimisation) first.
    activations : {"uint8", "int8"}
        Activation type: asymmetric uint8 (what x86 kernels are fastest with) or symmetric int8.
    """

    format: str = "qoperator"
    per_channel: bool = True
    calibration: str = "percentile"
    percentile: float = 99.999
    symmetric_ranges: bool = False
    float_layers: int = 3
    float_last: int = 0
    fold_shapes: bool = True
    preprocess: bool = False
    activations: str = "uint8"

    def describe(self) -> str:
        """A short human-readable description, for the benchmark's and the docs' tables."""
        parts = [
            self.format.upper() if self.format == "qdq" else "QOperator",
            "per-channel" if self.per_channel else "per-tensor",
            {"minmax": "MinMax", "entropy": "Entropy"}.get(self.calibration, f"Percentile {self.percentile:g}"),
        ]
        if self.calibration == "percentile" and self.symmetric_ranges:
            parts.append("symmetric ranges")
        if self.activations != "uint8":
            parts.append(f"{self.activations} activations")
        if self.float_layers or self.float_last:
            parts.append(f"first {self.float_layers} / last {self.float_last} convolutions float32")
        parts.append("shapes folded" if self.fold_shapes else "shapes not folded")
        if self.preprocess:
            parts.append("quant_pre_process")
        return ", ".join(parts)


#: The method ``precision="int8"`` uses.
METHOD = Method()

_MATRIX_OPS = ("Conv", "Gemm", "MatMul")


#: Image file extensions of the calibration set.
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def calibration_images() -> list[str]:
    """The fixed calibration set: the 200 embedded demo images (Caltech-101, CC BY 4.0), sorted.

    They are the files ``sk_decaf.datasets.load_demo()`` lists, read here as the package's data (this layer
    does not import the datasets layer). Never the user's data: int8 features are deterministic, the same in
    every fold of a grid search, and cacheable.
    """
    from importlib import resources

    root = resources.files("sk_decaf.datasets") / "data" / "caltech101_mini"
    found = []
    for folder in root.iterdir():
        if folder.is_dir() and not folder.name.startswith("."):
            found += [str(f) for f in folder.iterdir() if f.name.lower().endswith(_IMAGE_SUFFIXES)]
    return sorted(found)


def calibration_split(paths: Sequence[str]) -> tuple[list[str], list[str]]:
    """The calibration set, sorted, split into the images that calibrate (even positions) and those that check."""
    ordered = sorted(os.fspath(p) for p in paths)
    return ordered[0::2], ordered[1::2]


def files_digest(paths: Sequence[str]) -> str:
    """Digest of the files' bytes and names with their folder's (``class/image.jpg``), in the names' order.

    Where the set is installed does not matter; what each file holds, and its class folder, does.
    """

    def name(path: str) -> str:
        return "/".join(os.path.normpath(os.fspath(path)).split(os.sep)[-2:])

    h = hashlib.sha256()
    for path in sorted((os.fspath(p) for p in paths), key=name):
        h.update(name(path).encode() + b"\0")
        with open(path, "rb") as f:
            h.update(hashlib.sha256(f.read()).digest())
    return h.hexdigest()[:32]


def cosines(outputs: Sequence[np.ndarray], reference: Sequence[np.ndarray]) -> np.ndarray:
    """Cosine similarity per image between two lists of ``(N, D)`` outputs, the lowest over the outputs.

    An image whose two vectors are both zero agrees (1.0); one zero against a non-zero vector gives 0.
    """
    per_output = []
    for a, b in zip(outputs, reference):
        a = np.asarray(a, dtype=np.float64).reshape(len(a), -1)
        b = np.asarray(b, dtype=np.float64).reshape(len(b), -1)
        na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
        both_zero = (na == 0) & (nb == 0)
        cos = (a * b).sum(axis=1) / np.maximum(na * nb, 1e-300)
        per_output.append(np.where(both_zero, 1.0, cos))
    return np.min(per_output, axis=0)


def _run(path: str, inputs: np.ndarray, batch: int = 32) -> list[np.ndarray]:
    with captured_output():
        engine = OnnxEngine(path)
    parts = [engine(inputs[i : i + batch]) for i in range(0, len(inputs), batch)]
    return [np.concatenate(cols) for cols in zip(*parts)]


def agreement(int8_path: str, float_path: str, inputs: np.ndarray) -> dict[str, float]:
    """``min``, ``mean`` and 5th ``percentile`` of :func:`cosines` between the two graphs on ``inputs``."""
    cos = cosines(_run(int8_path, inputs), _run(float_path, inputs))
    return {
        "min": float(cos.min()),
        "mean": float(cos.mean()),
        "p5": float(np.percentile(cos, 5)),
        "images": len(cos),
    }


# -- graph preparation ---------------------------------------------------------------------------------
def _constant_identities(model):
    """Replace each ``Identity`` of an initializer by an initializer of its own.

    torch exports a tensor used twice that way; onnxruntime's quantized operators read a bias only from an
    initializer.
    """
    from onnx import numpy_helper

    graph = model.graph
    initializers = {t.name: t for t in graph.initializer}
    constant = [n for n in graph.node if n.op_type == "Identity" and n.input[0] in initializers]
    if not constant:
        return model
    for node in constant:
        graph.initializer.append(
            numpy_helper.from_array(numpy_helper.to_array(initializers[node.input[0]]), node.output[0])
        )
        graph.node.remove(node)
    return model


class _Reader:
    """onnxruntime's calibration data reader over uint8 images, in batches; ``set_range`` picks batches."""

    def __init__(self, name: str, images: np.ndarray, batch: int = CALIBRATION_BATCH) -> None:
        self.batches = [{name: images[i : i + batch]} for i in range(0, len(images), batch)]
        self.set_range(0, len(self.batches))

    def __len__(self) -> int:
        return len(self.batches)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._iter = iter(self.batches[start_index:end_index])

    def get_next(self):
        return next(self._iter, None)


class _DropQuantizationLogs(logging.Filter):
    """onnxruntime's quantizer logs advice on the root logger (e.g. to run its pre-processing)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "onnxruntime" not in record.pathname


@contextlib.contextmanager
def _quiet():
    root, dropped = logging.getLogger(), _DropQuantizationLogs()
    root.addFilter(dropped)
    try:
        with captured_output():  # calibration progress on stdout, onnxruntime's C++ warnings on stderr
            yield
    finally:
        root.removeFilter(dropped)


def quantize(float_path: str, out_path: str, calibration: np.ndarray, method: Method | None = None) -> str:
    """Write ``float_path``'s graph quantized to int8 by ``method`` to ``out_path`` (atomically).

    ``calibration`` holds uint8 network inputs (the graph's first input); they are fed in batches of
    :data:`CALIBRATION_BATCH`, each batch's statistics merged before the next runs. ``method=None`` is
    :data:`METHOD`.
    """
    import onnx

    method = METHOD if method is None else method
    ort = _onnxruntime()
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quant_pre_process, quantize_static

    folder = os.path.dirname(os.fspath(out_path)) or "."
    os.makedirs(folder, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".quantize-") as tmp, _quiet():
        model = onnx.load(float_path)
        if method.fold_shapes:
            model = fold_shapes(model)
        model = _constant_identities(model)
        source = os.path.join(tmp, "float.onnx")
        onnx.save(model, source)
        if method.preprocess:
            quant_pre_process(source, os.path.join(tmp, "pre.onnx"))
            source = os.path.join(tmp, "pre.onnx")
            model = onnx.load(source)
        matrices = [n.name for n in model.graph.node if n.op_type in _MATRIX_OPS]
        excluded = matrices[: method.float_layers] + (matrices[-method.float_last :] if method.float_last else [])
        extra: dict = {"CalibStridedMinMax": 1}  # one batch at a time: bounded memory, any calibration method
        if method.calibration == "percentile":
            extra.update(CalibPercentile=method.percentile, CalibTensorRangeSymmetric=method.symmetric_ranges)
        if method.activations == "int8":
            extra["ActivationSymmetric"] = True
        tmp_out = os.path.join(tmp, "int8.onnx")
        quantize_static(
            source,
            tmp_out,
            _Reader(model.graph.input[0].name, np.ascontiguousarray(calibration)),
            quant_format=QuantFormat.QDQ if method.format == "qdq" else QuantFormat.QOperator,
            per_channel=method.per_channel,
            activation_type=QuantType.QUInt8 if method.activations == "uint8" else QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method={
                "minmax": CalibrationMethod.MinMax,
                "entropy": CalibrationMethod.Entropy,
                "percentile": CalibrationMethod.Percentile,
            }[method.calibration],
            nodes_to_exclude=excluded or None,
            extra_options=extra,
        )
        quantized = onnx.load(tmp_out)
        _drop_unused_initializers(quantized.graph)  # e.g. the bounds of the Clips folded into the ranges
        quantized.doc_string = f"int8 ({method.describe()}; onnxruntime {ort.__version__}) of {model.doc_string}"
        onnx.save(quantized, tmp_out)
        os.replace(tmp_out, out_path)
    return os.fspath(out_path)


def _drop_unused_initializers(graph) -> None:
    """Remove the initializers no node reads (onnxruntime would log one line for each, on every session)."""
    read = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    kept = [t for t in graph.initializer if t.name in read]
    if len(kept) < len(graph.initializer):
        del graph.initializer[:]
        graph.initializer.extend(kept)


# -- the graph store -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Int8Graph:
    """An int8 graph in the store and what its build measured.

    ``path`` is the graph to run: the int8 one when it agreed with float32, else ``None`` (run float32).
    ``record`` is what was stored with it: the agreement measured, the threshold, the method and versions.
    """

    path: str | None
    record: dict

    @property
    def agreement(self) -> float:
        return float(self.record["agreement"]["min"])


def identity() -> dict:
    """What int8 features depend on besides the float32 network, for the activation key; reads no image.

    The method, the onnxruntime version, the agreement threshold (below it float32 runs) and the calibration
    set's file names (its bytes ship with the package: the int8 graph's own key digests them).
    """
    names = ["/".join(os.path.normpath(p).split(os.sep)[-2:]) for p in calibration_images()]
    return {
        "method": dataclasses.asdict(METHOD),
        "onnxruntime": _onnxruntime().__version__,
        "agreement": AGREEMENT,
        "calibration": hashlib.sha256("\n".join(sorted(names)).encode()).hexdigest()[:16],
    }


def int8_key(float_path: str, calibration_digest: str, method: Method) -> str:
    """Digest of what the int8 graph of ``float_path`` depends on besides the float32 graph's own key."""
    key = {
        "float_graph": os.path.basename(os.fspath(float_path)),
        "method": dataclasses.asdict(method),
        "calibration": calibration_digest,
        "onnxruntime": _onnxruntime().__version__,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def int8_graph(
    float_path: str,
    prepare: Callable[[Sequence[str]], np.ndarray],
    calibration: Sequence[str],
    *,
    method: Method | None = None,
    threshold: float | None = None,
) -> Int8Graph:
    """The int8 graph of ``float_path``, built and checked on first use, read from the store afterwards.

    Parameters
    ----------
    float_path : str
        The float32 graph (the onnxruntime engine's), in the graph store.
    prepare : callable
        Image paths -> uint8 network inputs ``(N, C, H, W)``, as the network's preprocessing makes them.
    calibration : sequence of str
        The fixed calibration set (:func:`calibration_split` splits it).
    method : Method, default=None
        None is :data:`METHOD`.
    threshold : float, default=None
        The agreement below which float32 runs instead; None is :data:`AGREEMENT`. The measured agreement is
        stored, so another threshold decides again without re-quantizing.

    Returns
    -------
    Int8Graph
    """
    threshold = AGREEMENT if threshold is None else threshold
    method = METHOD if method is None else method
    digest = files_digest(calibration)
    stem = os.fspath(float_path)[: -len(".onnx")] if os.fspath(float_path).endswith(".onnx") else os.fspath(float_path)
    path = f"{stem}.int8-{int8_key(float_path, digest, method)}.onnx"
    record_path = path + ".json"
    record = _stored(path)
    if record is None:
        with _building(path):  # one builder per graph, across threads and processes; the others then read it
            record = _stored(path)
            if record is None:
                calibrate, check = calibration_split(calibration)
                start = time.perf_counter()
                quantize(float_path, path, prepare(calibrate), method)
                built = time.perf_counter() - start
                record = {
                    "agreement": agreement(path, float_path, prepare(check)),
                    "method": dataclasses.asdict(method),
                    "calibration": {"digest": digest, "calibrate": len(calibrate), "check": len(check)},
                    "onnxruntime": _onnxruntime().__version__,
                    "build_seconds": round(built, 2),
                }
                _write_record(record_path, record)  # last: a graph without its record is built again
    record = dict(record, threshold=threshold, int8=record["agreement"]["min"] >= threshold)
    return Int8Graph(path if record["int8"] else None, record)


#: Per graph path, the lock of the thread that builds it (the lock file below keeps other processes out).
_BUILD_LOCKS: dict[str, threading.Lock] = {}
_BUILD_LOCKS_GUARD = threading.Lock()


@contextlib.contextmanager
def _building(path: str):
    """Hold the right to build the graph at ``path``.

    A lock per path in this process and, where the platform has ``fcntl``, an exclusive lock on
    ``path + ".lock"`` against other processes (released by the system if one dies).
    """
    with _BUILD_LOCKS_GUARD:
        lock = _BUILD_LOCKS.setdefault(path, threading.Lock())
    with lock:
        try:
            import fcntl
        except ImportError:  # Windows: threads are serialised; a rare second process builds the same file again
            yield
            return
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path + ".lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _stored(path: str) -> dict | None:
    """The record of the int8 graph at ``path`` if the graph and its record are both stored, else None."""
    return _read_record(path + ".json") if os.path.exists(path) else None


def _read_record(path: str) -> dict | None:
    try:
        with open(path) as f:
            record = json.load(f)
        float(record["agreement"]["min"])
        return record
    except (OSError, ValueError, KeyError, TypeError):  # missing or damaged: build again
        return None


def _write_record(path: str, record: dict) -> None:
    fd, tmp = tempfile.mkstemp(suffix=".json.tmp", dir=os.path.dirname(path) or ".")
    with os.fdopen(fd, "w") as f:
        json.dump(record, f, indent=1)
    os.replace(tmp, path)
