"""Inference engines: run a :class:`FeatureExtractor` on uint8 batches, return float32 numpy arrays.

``TorchEngine`` runs the module itself (``inference_mode``, channels_last, bf16 autocast when asked).
``OnnxEngine`` runs the same module exported once to ONNX with onnxruntime, which is faster on the CPU for the
convolutional networks DeCAF users run (``benchmarks/bench_extract.py`` prints the ratio of the two engines in
one run); its outputs are checked against torch on the first batch before they are trusted.
It also runs the graph's int8 version (:mod:`sk_decaf._torch.quantize`). Each engine names the
``precision`` it computes in.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import os
import sys
import tempfile
import threading
import warnings

import numpy as np
import torch

__all__ = [
    "TorchEngine",
    "OnnxEngine",
    "export_onnx",
    "fold_shapes",
    "captured_output",
    "graph_dir",
    "home",
    "relative_error",
    "onnxruntime_available",
    "native_bf16",
]


def home():
    """Folder of sk_decaf's derived artefacts: ``$SK_DECAF_HOME``, or ``~/.cache/sk_decaf``."""
    return os.environ.get("SK_DECAF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "sk_decaf")


def graph_dir():
    """The store of exported ONNX graphs: ``<home>/onnx``, one file per activation description and layers.

    Graphs are keyed by everything that changes the network's outputs, so every transformer of every
    process shares one store; a graph that is missing or stale is exported again.
    """
    return os.path.join(home(), "onnx")


def _onnxruntime():
    """Import onnxruntime with its telemetry off, unless the user set ``ORT_DISABLE_TELEMETRY`` otherwise.

    On Linux, importing onnxruntime (1.32) writes a device id under ``~/.cache/Microsoft/DeveloperTools`` and
    starts an uploader that resolves ``mobile.events.data.microsoft.com`` seconds later. Only the variable, read
    at import, stops both (measured: ``disable_telemetry_events()`` alone does not); the call is the documented
    switch for the other platforms' telemetry.
    """
    disable = os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1") == "1"
    import onnxruntime

    if disable:
        onnxruntime.disable_telemetry_events()
    return onnxruntime


def onnxruntime_available():
    try:
        _onnxruntime()
    except ImportError:
        return False
    return True


def _onednn_bf16_check():
    """oneDNN's own report of native bfloat16 (a private torch operator), or None where torch lacks it."""
    try:
        return torch.ops.mkldnn._is_mkldnn_bf16_supported
    except (AttributeError, RuntimeError):
        return None


def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX), as oneDNN reports it.

    Elsewhere ``precision="bfloat16"`` still computes in bfloat16, through oneDNN's emulation: more slowly
    than float32. False when torch cannot tell.
    """
    check = _onednn_bf16_check()
    if check is None:
        return False
    try:
        return bool(check())
    except RuntimeError:
        return False


def relative_error(a, b):
    """``max |a - b| / max |b|``, the error measure of the engine check."""
    scale = float(np.abs(b).max(initial=0.0))
    return float(np.abs(a - b).max(initial=0.0)) / max(scale, 1e-12)


class TorchEngine:
    """Run the extractor with torch on ``device``, in float32 or under bfloat16 autocast (``bf16``).

    On the CPU a batch goes through in slices of :attr:`cpu_slice` images: small slices keep the
    activations in cache and run several times faster than one large batch (measured on 2 cores with
    tf_efficientnet_lite0: 163 img/s in slices of 4 against 30 img/s for batches of 32, channels_last).
    oneDNN's bfloat16 kernels are fastest in slices of :attr:`cpu_slice_bf16` (measured on 2 AVX512-BF16 cores
    with tf_efficientnet_lite0, quiet machine: 169 img/s in slices of 8, 146 of 4, 101 of 32;
    ``benchmarks/bench_precision.py --slices``).
    """

    name = "torch"
    cpu_slice = 4
    cpu_slice_bf16 = 8

    def __init__(self, extractor, device, bf16=False):
        self.device = device
        self.extractor = extractor.to(device).eval()
        # channels_last lets oneDNN / cuDNN pick their fastest convolution kernels.
        self.extractor.channels_last = True
        self.extractor.to(memory_format=torch.channels_last)
        self.bf16 = bf16
        self.precision = "bfloat16" if bf16 else "float32"
        if bf16:
            self.cpu_slice = self.cpu_slice_bf16

    def _amp(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()

    def __call__(self, images):
        return self.result(self.submit(images))

    def submit(self, images):
        """Start a batch.

        On CUDA this only queues work (copy in, forward, copy out to pinned memory), so the caller can prepare
        the next batch while the GPU computes; :meth:`result` waits for it.
        """
        if self.device.type != "cuda":
            parts = []
            with torch.inference_mode(), self._amp():
                for start in range(0, len(images), self.cpu_slice):
                    parts.append([o.float() for o in self.extractor(images[start : start + self.cpu_slice])])
            return [torch.cat(cols).numpy() for cols in zip(*parts)]
        with torch.inference_mode(), self._amp():
            outs = [o.float() for o in self.extractor(images.to(self.device, non_blocking=True))]
            host = [torch.empty(o.shape, dtype=torch.float32, pin_memory=True) for o in outs]
            for h, o in zip(host, outs):
                h.copy_(o, non_blocking=True)
            done = torch.cuda.Event()
            done.record()
        return host, done

    def result(self, handle):
        """The float32 numpy outputs of a batch started with :meth:`submit`."""
        if self.device.type != "cuda":
            return handle
        host, done = handle
        done.synchronize()
        return [h.numpy() for h in host]


def _flush_c_streams():
    """Flush the C library's stdio buffers, where C++ code (the exporter's) leaves what it prints."""
    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError, TypeError):  # no C library to load by that name (Windows): nothing buffered
        pass


_CAPTURE_LOCK = threading.RLock()


@contextlib.contextmanager
def captured_output():
    """Capture everything written to stdout and stderr while the block runs, from Python or from C++.

    ``torch.onnx.export`` prints from C++, straight to the process's file descriptors 1 and 2 (a failed
    export prints the whole traced graph, hundreds of lines), where ``contextlib.redirect_stdout`` cannot
    reach: both descriptors are pointed at a temporary file, and ``sys.stdout`` and ``sys.stderr`` (which
    may not write to them, as in Jupyter) at a buffer. Yields a function that returns what was written so
    far. The descriptors are process-wide: other threads' output during the block is captured too, and one
    thread captures at a time (a lock; the same thread may nest captures), so that no thread restores the
    descriptors to another's sink.
    """
    streams = [s for s in (sys.stdout, sys.stderr) if s is not None]
    for stream in streams:
        stream.flush()
    _flush_c_streams()
    python = io.StringIO()
    with _CAPTURE_LOCK, tempfile.TemporaryFile(mode="w+b") as sink:
        saved = [os.dup(1), os.dup(2)]
        try:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)

            def text():
                _flush_c_streams()
                sink.seek(0)
                return sink.read().decode("utf-8", "replace") + python.getvalue()

            with contextlib.redirect_stdout(python), contextlib.redirect_stderr(python):
                yield text
        finally:
            _flush_c_streams()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def export_onnx(module, path, example, output_names=None, fold=False):
    """Export a CPU ``module`` (uint8 images in, one output per layer) to ``path`` atomically.

    ``example`` fixes every input axis but the first, the batch, which is dynamic. The outputs are named
    ``output_names`` (default ``layer0``, ``layer1``, ... one per ``module.layers``). The module is left as
    it was: the torch engine that shares it keeps working. Whatever the exporter prints, from Python or C++,
    is captured; a failure raises its exception, whose first line says what went wrong. ``fold=True`` folds
    the graph's batch-independent shape arithmetic into constants (:func:`fold_shapes`).
    """
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    # channels_last is a layout hint, not a graph op
    channels_last = getattr(module, "channels_last", False)
    if channels_last:
        module.channels_last = False
    names = list(output_names) if output_names is not None else [f"layer{i}" for i in range(len(module.layers))]
    fd, tmp = tempfile.mkstemp(suffix=".onnx.tmp", dir=os.path.dirname(path) or ".")
    os.close(fd)
    try:
        with warnings.catch_warnings(), torch.inference_mode(), captured_output():
            warnings.simplefilter("ignore")  # tracer warnings about shape-dependent python code
            torch.onnx.export(
                module,
                (example,),
                tmp,
                dynamo=False,
                input_names=["images"],
                output_names=names,
                dynamic_axes={"images": {0: "batch"}, **{n: {0: "batch"} for n in names}},
                opset_version=17,
                do_constant_folding=True,
            )
        if fold:
            import onnx

            onnx.save(fold_shapes(onnx.load(tmp)), tmp)
        os.replace(tmp, path)  # readers never see a half-written model
    finally:
        if channels_last:
            module.channels_last = channels_last
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def fold_shapes(model):
    """Replace the batch-independent values a graph computes from tensor shapes by constants.

    Exported with a dynamic batch axis, a network that computes padding from its input's size (timm's
    ``Conv2dSame``) keeps that arithmetic in the graph (``Shape``, ``Gather``, ``Cast``, ``Div``, ``Ceil``,
    ``Concat`` ... into ``Pad``), although every size but the batch is fixed. Those values are computed here
    for two batch sizes; the ones that do not change become initializers, and the nodes nobody reads any
    more go. The graph computes the same outputs. A graph with another dynamic axis is returned unchanged.
    """
    import onnx
    from onnx import helper, numpy_helper

    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    dims = {
        i.name: [d.dim_value if d.HasField("dim_value") else None for d in i.type.tensor_type.shape.dim] for i in inputs
    }
    if any(None in d[1:] for d in dims.values()) or not inputs:
        return model
    data = {i.name for i in inputs}
    derived: set[str] = set()
    for node in graph.node:  # graph order is topological
        read = [name for name in node.input if name]
        if node.op_type in ("Shape", "Size"):
            derived.update(node.output)
        elif any(name in data for name in read):
            data.update(node.output)
        elif any(name in derived for name in read):
            derived.update(node.output)
    if not derived:
        return model
    names = sorted(derived)
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.output[:]
    probe.graph.output.extend(helper.ValueInfoProto(name=name) for name in names)
    ort = _onnxruntime()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    runs = []
    for batch in (2, 3):
        feed = {}
        for i in inputs:
            dtype = helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type)
            feed[i.name] = np.zeros([batch if d is None else d for d in dims[i.name]], dtype=dtype)
        runs.append(dict(zip(names, session.run(names, feed))))
    constant = {n for n in names if runs[0][n].shape == runs[1][n].shape and np.array_equal(runs[0][n], runs[1][n])}
    kept = [node for node in graph.node if not (node.output and all(o in constant for o in node.output))]
    # Only the nodes that the outputs still need.
    needed = {o.name for o in graph.output}
    live = []
    for node in reversed(kept):
        if any(o in needed for o in node.output):
            live.append(node)
            needed.update(name for name in node.input if name)
    live.reverse()
    for k, node in enumerate(live):
        if not node.name:
            node.name = f"{node.op_type}_{k}"
    folded = [numpy_helper.from_array(runs[0][n], n) for n in sorted(constant & needed)]
    kept_initializers = [t for t in graph.initializer if t.name in needed]
    new_graph = helper.make_graph(
        live, graph.name, list(graph.input), list(graph.output), kept_initializers + folded, doc_string=graph.doc_string
    )
    out = helper.make_model(new_graph, opset_imports=list(model.opset_import), ir_version=model.ir_version)
    out.producer_name, out.producer_version = model.producer_name, model.producer_version
    return out


class OnnxEngine:
    """Run an exported extractor with onnxruntime on the CPU; ``precision`` names what the graph computes in."""

    name = "onnxruntime"

    def __init__(self, path, threads=None, precision="float32"):
        self.path = os.fspath(path)
        self.precision = precision
        ort = _onnxruntime()
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: not the optimiser's notes on unused initializers
        if threads:
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Spinning threads would steal the cores that the DataLoader workers decode images on.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(os.fspath(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, images):
        x = images.numpy() if torch.is_tensor(images) else np.asarray(images)
        return list(self.session.run(None, {self.input_name: np.ascontiguousarray(x)}))

    submit = __call__  # synchronous: onnxruntime already uses every core

    def result(self, handle):
        return handle
