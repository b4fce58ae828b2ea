"""``sk_decaf.to_onnx``: a fitted pipeline, from uint8 images to its final step's outputs, as one ONNX graph."""

from __future__ import annotations

import json
import os
import tempfile
import warnings

import numpy as np
from sklearn.base import is_classifier
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from .._version import __version__
from ..transformers import DeCAFTransformer

__all__ = ["to_onnx", "unsupported_steps"]

#: Largest ``max|onnx - sklearn| / max|sklearn|`` accepted when the export is checked.
TOLERANCE = 1e-4

#: Steps that can never be exported, and why.
_NEVER = {
    "FineTunedClassifier": "it takes images and runs its own fine-tuned network, so it cannot follow a "
    "DeCAFTransformer; it is a whole pipeline by itself and has no ONNX export here",
    "RetrievalIndex": "it ranks a database of images: its answer is not a function of one image",
}


def _steps(pipeline):
    if isinstance(pipeline, DeCAFTransformer):
        return [("decaf", pipeline)]
    if not isinstance(pipeline, Pipeline):
        raise TypeError(
            "to_onnx exports a fitted Pipeline that starts with a DeCAFTransformer (or a fitted "
            f"DeCAFTransformer); got {type(pipeline).__name__}."
        )
    return [(name, est) for name, est in pipeline.steps if est is not None and not isinstance(est, str)]


def _require_skl2onnx():
    try:
        import skl2onnx  # noqa: F401
    except ImportError:
        raise ImportError("sk_decaf.to_onnx needs skl2onnx: pip install 'sk-decaf[export]'.") from None


def _reason(est, first, last):
    """Why ``est`` cannot be exported at its place in a pipeline, or None when it can."""
    from skl2onnx import get_model_alias

    from ._converters import CONVERTERS

    name = type(est).__name__
    if first and not isinstance(est, DeCAFTransformer):
        return (
            "the graph starts from images, so the first step must be a DeCAFTransformer (to export a "
            "pipeline on features, use skl2onnx.to_onnx after sk_decaf.deploy.register_converters())"
        )
    if isinstance(est, DeCAFTransformer) and not first:
        return "a DeCAFTransformer takes images, so it can only be the first step"
    if name in _NEVER:
        return _NEVER[name]
    if last and not is_classifier(est) and not hasattr(est, "transform"):
        return (
            "the final step must be a classifier (exported: its labels and scores) or a transformer "
            "(exported: its features)"
        )
    if type(est) in CONVERTERS:
        if getattr(est, "domains_", None) is not None and getattr(est, "target_domain_", "") is None:
            return (
                "it was fitted with several target domains and no target_domain, so the unlabelled images "
                "the graph receives belong to none of them; refit it with target_domain="
            )
        return None
    if name == "FunctionTransformer" and est.func is not None:
        return "it runs an arbitrary Python function, which has no ONNX form"
    try:
        get_model_alias(type(est))
    except RuntimeError:
        return (
            "skl2onnx has no converter for it (skl2onnx.supported_converters() lists what it converts; "
            "skl2onnx.update_registered_converter adds one)"
        )
    return None


def unsupported_steps(pipeline):
    """The steps of ``pipeline`` that :func:`to_onnx` cannot export, each with the reason.

    Parameters
    ----------
    pipeline : Pipeline or DeCAFTransformer

    Returns
    -------
    problems : list of (str, str)
        ``(step name, reason)``; empty when the whole pipeline can be exported.

    Examples
    --------
    >>> from sklearn.pipeline import Pipeline
    >>> from sklearn.preprocessing import FunctionTransformer
    >>> from sklearn.svm import LinearSVC
    >>> from sk_decaf import DeCAFTransformer
    >>> from sk_decaf.deploy import unsupported_steps
    >>> pipe = Pipeline([("decaf", DeCAFTransformer()), ("log", FunctionTransformer(abs)), ("svm", LinearSVC())])
    >>> unsupported_steps(pipe)
    [('log', 'it runs an arbitrary Python function, which has no ONNX form')]
    """
    _require_skl2onnx()
    steps = _steps(pipeline)
    problems = [(name, _reason(est, i == 0, i == len(steps) - 1)) for i, (name, est) in enumerate(steps)]
    return [(name, why) for name, why in problems if why is not None]


# -- the final step's outputs ---------------------------------------------------------------------------------
def _convert_alone(est, n_features, candidates, target_opset):
    """``est`` alone (float32 ``X`` in) with the first option set its skl2onnx converter accepts."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    error = None
    for options in candidates:
        try:
            with warnings.catch_warnings():
                # skl2onnx reads attributes that scikit-learn deprecates (SVC's probA_ in 1.9): not the user's.
                warnings.filterwarnings("ignore", category=FutureWarning, module="sklearn")
                return convert_sklearn(
                    est,
                    initial_types=[("X", FloatTensorType([None, n_features]))],
                    options={id(est): options} if options else None,
                    target_opset=target_opset,
                )
        except (NameError, RuntimeError, ValueError) as exc:  # skl2onnx's "option not supported" errors
            error = exc
    raise ValueError(f"skl2onnx cannot convert {type(est).__name__}: {error}") from error


def _relative_error(a, b):
    scale = float(np.abs(b).max(initial=0.0))
    return float(np.abs(a - b).max(initial=0.0)) / max(scale, 1e-12)


def _heads(est, n_features, target_opset):
    """``[(method, model, binary)]``: the final classifier converted once per score it has.

    Each score is checked against scikit-learn on random probe features, and so are the labels of the first
    head, which the graph outputs: skl2onnx's converters do not all compute ``decision_function`` (e.g. SVC
    with ``probability=True``); such an output is left out, with a warning, rather than exported wrong.
    ``binary``: scikit-learn's ``decision_function`` is one column (for ``classes_[1]``), skl2onnx's two.
    """
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    probe = rng.standard_normal((32, n_features)).astype(np.float32)
    probe[16:] /= np.linalg.norm(probe[16:], axis=1, keepdims=True)  # unit rows, as after SignedSqrt
    wanted = [
        ("decision_function", [{"zipmap": False, "raw_scores": True}, {"raw_scores": True}]),
        ("predict_proba", [{"zipmap": False, "raw_scores": False}, {"zipmap": False}, {}]),
    ]
    heads = []
    for method, candidates in wanted:
        if not hasattr(est, method):
            continue
        expected = getattr(est, method)(probe)
        try:
            model = _convert_alone(est, n_features, candidates, target_opset)
        except ValueError as exc:
            warnings.warn(f"The exported model has no {method!r} output: {exc}", UserWarning, stacklevel=3)
            continue
        options = ort.SessionOptions()
        options.log_severity_level = 3  # skl2onnx declares some score shapes loosely; the values are checked
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        labels, scores = session.run(None, {"X": probe})[:2]
        binary = expected.ndim == 1
        scores = scores[:, -1] if binary else scores
        error = _relative_error(scores, expected) if scores.shape == expected.shape else np.inf
        if not heads and not np.array_equal(labels, est.predict(probe)):
            raise ValueError(f"skl2onnx's conversion of {type(est).__name__} does not predict its labels.")
        if error > TOLERANCE:
            warnings.warn(
                f"The exported model has no {method!r} output: skl2onnx's converter for {type(est).__name__} "
                f"does not reproduce it (relative error {error:.2g} on probe features).",
                UserWarning,
                stacklevel=3,
            )
            continue
        heads.append((method, model, binary))
    if not heads:
        raise ValueError(f"skl2onnx converts no score of {type(est).__name__}; nothing to export.")
    return heads


# -- assembling one graph -------------------------------------------------------------------------------------
def _compose(body, heads, classifier):
    """One model: ``body`` (images -> features) then each head on ``features``; outputs renamed."""
    import onnx
    from onnx import compose, helper

    graph = body.graph
    (features,) = [o.name for o in graph.output]
    nodes, inits = list(graph.node), list(graph.initializer)
    outputs = []
    opsets = {imp.domain: imp.version for imp in body.opset_import}
    if not classifier:
        outputs.append(graph.output[0])
    for k, (method, model, binary) in enumerate(heads):
        head = compose.add_prefix(model, f"{method}/")
        for imp in head.opset_import:
            opsets[imp.domain] = max(opsets.get(imp.domain, 0), imp.version)
        for node in head.graph.node:
            node.input[:] = [features if n == f"{method}/X" else n for n in node.input]
        nodes.extend(head.graph.node)
        inits.extend(head.graph.initializer)
        label, scores = head.graph.output[0], head.graph.output[1]
        if k == 0:  # labels from the first head: decision_function's when there is one, as predict does
            nodes.append(helper.make_node("Identity", [label.name], ["label"], name="label_out"))
            outputs.append(helper.make_tensor_value_info("label", label.type.tensor_type.elem_type, [None]))
        if binary:
            last = helper.make_tensor(f"{method}/last", onnx.TensorProto.INT64, [], [-1])
            inits.append(last)
            nodes.append(helper.make_node("Gather", [scores.name, last.name], [method], axis=1, name=f"{method}_out"))
            outputs.append(helper.make_tensor_value_info(method, onnx.TensorProto.FLOAT, [None]))
        else:
            nodes.append(helper.make_node("Identity", [scores.name], [method], name=f"{method}_out"))
            outputs.append(helper.make_tensor_value_info(method, onnx.TensorProto.FLOAT, [None, None]))
    merged = helper.make_graph(nodes, "sk_decaf_pipeline", list(graph.input), outputs, inits)
    return helper.make_model(
        merged, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()], ir_version=body.ir_version
    )


def _rename_output(model, new):
    """Rename the single output of ``model`` to ``new``."""
    old = model.graph.output[0].name
    for node in model.graph.node:
        node.output[:] = [new if n == old else n for n in node.output]
    model.graph.output[0].name = new
    return model


def to_onnx(pipeline, path, *, X=None, target_opset=None):
    """Write a fitted pipeline as one ONNX graph, from uint8 images to its final step's outputs.

    The graph's input ``images`` is a uint8 ``(N, 3, H, W)`` RGB batch prepared as the transformer prepares
    it; :class:`sk_decaf.deploy.OnnxPipeline` (numpy, Pillow and onnxruntime only) reads the preprocessing
    settings stored in the model and does this. Its outputs are:

    * for a pipeline ending in a classifier: ``label`` (``predict``), plus ``decision_function`` and
      ``predict_proba`` where the classifier has them, shaped as scikit-learn's;
    * for a pipeline ending in a transformer: ``features`` (``transform``).

    Exported steps: ``DeCAFTransformer`` (any layers, pooling and engine; float32), ``SignedSqrt``,
    ``FeatureDropout`` (its test-time scaling), the domain transformers applied to unlabelled images, which
    are target images (``DomainAugment``'s target layout, ``CORAL``'s identity on target rows,
    ``SubspaceAlignment``'s and ``GeodesicFlowKernel``'s linear maps), and every scikit-learn step that
    skl2onnx converts (``Normalizer``, ``StandardScaler``, ``PCA``, ``LinearSVC``, ``LogisticRegression``,
    ``SVC`` ...). :func:`unsupported_steps` says which steps cannot be exported and why; they are listed
    in the error.

    Parameters
    ----------
    pipeline : Pipeline or DeCAFTransformer
        Fitted; its first step is a ``DeCAFTransformer``.
    path : str or path-like
        Where to write the model (``.onnx``). Written only once the export is complete and, with ``X``,
        checked.
    X : sequence of images, default=None
        Images on which the exported model is checked against ``pipeline`` before it is written: same labels,
        scores within a relative error of 1e-4.
    target_opset : int, default=None
        ONNX opset of the default domain; None uses the network's (17).

    Returns
    -------
    model : onnx.ModelProto
        The model that was written.

    Raises
    ------
    ValueError
        If a step cannot be exported (all such steps are named, with the reason), or if the check on ``X``
        fails.

    See Also
    --------
    sk_decaf.deploy.OnnxPipeline : Run the exported model without torch or scikit-learn.
    sk_decaf.deploy.register_converters : Make ``skl2onnx.to_onnx`` convert sk_decaf's estimators.

    Examples
    --------
    >>> import tempfile, os
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.svm import LinearSVC
    >>> from sk_decaf import DeCAFTransformer, SignedSqrt, to_onnx
    >>> from sk_decaf.datasets import load_demo
    >>> from sk_decaf.deploy import OnnxPipeline
    >>> demo = load_demo()
    >>> pipe = make_pipeline(DeCAFTransformer(), SignedSqrt(), LinearSVC()).fit(demo.paths[::5], demo.target[::5])
    >>> path = os.path.join(tempfile.mkdtemp(), "model.onnx")
    >>> model = to_onnx(pipe, path)
    >>> [output.name for output in model.graph.output]
    ['label', 'decision_function']
    >>> bool((OnnxPipeline(path).predict(demo.paths[1:6]) == pipe.predict(demo.paths[1:6])).all())
    True
    """
    _require_skl2onnx()
    import onnx
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import UInt8TensorType

    from ._converters import register_converters
    from ._network import NETWORK_OPSET, preprocess_config
    from .runtime import OUTPUTS_KEY, PREPROCESS_KEY

    steps = _steps(pipeline)
    check_is_fitted(pipeline if isinstance(pipeline, Pipeline) else steps[0][1])
    problems = unsupported_steps(pipeline)
    if problems:
        raise ValueError(
            "This pipeline cannot be exported to ONNX:\n"
            + "\n".join(f"  step {name!r}: {why}" for name, why in problems)
        )
    register_converters()
    opset = target_opset or NETWORK_OPSET
    decaf, final = steps[0][1], steps[-1][1]
    classifier = is_classifier(final)
    body_steps = steps[:-1] if classifier else steps
    height, width = decaf.data_config_["input_size"][-2:]
    body_model = Pipeline(body_steps) if len(body_steps) > 1 else body_steps[0][1]
    try:
        body = convert_sklearn(
            body_model, initial_types=[("images", UInt8TensorType([None, 3, height, width]))], target_opset=opset
        )
    except (RuntimeError, TypeError, NameError) as exc:
        raise ValueError(f"skl2onnx could not convert the pipeline: {exc}") from exc
    body = _rename_output(body, "features")
    n_features = body.graph.output[0].type.tensor_type.shape.dim[1].dim_value
    heads = _heads(final, n_features, opset) if classifier else []
    model = _compose(body, heads, classifier)

    outputs = {
        "outputs": [o.name for o in model.graph.output],
        "final_step": type(final).__name__,
        "classes": final.classes_.tolist() if classifier else None,
    }
    meta = {
        PREPROCESS_KEY: preprocess_config(decaf.data_config_, decaf.preprocess, decaf.decode),
        OUTPUTS_KEY: outputs,
        "sk_decaf.steps": [[name, type(est).__name__] for name, est in steps],
        "sk_decaf.network": {
            "backbone": decaf.backbone if isinstance(decaf.backbone, str) else type(decaf.backbone).__name__,
            "layers": list(decaf.layers_),
            "pooling": decaf.pooling,
        },
    }
    onnx.helper.set_model_props(model, {key: json.dumps(value) for key, value in meta.items()})
    model.producer_name, model.producer_version = "sk_decaf", __version__
    model.doc_string = (
        f"sk_decaf pipeline {' -> '.join(type(e).__name__ for _, e in steps)}: uint8 images "
        f"(N, 3, {height}, {width}) -> {', '.join(outputs['outputs'])}."
    )
    onnx.checker.check_model(model)
    _write_checked(model, path, pipeline, X)
    return model


def _write_checked(model, path, pipeline, X):
    """Write ``model`` to ``path`` atomically, after checking it on ``X`` when given."""
    import onnx

    path = os.fspath(path)
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".onnx.tmp", dir=folder)
    os.close(fd)
    try:
        onnx.save(model, tmp)
        if X is not None:
            _check(tmp, pipeline, X)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _check(path, pipeline, X):
    from .runtime import OnnxPipeline

    got = OnnxPipeline(path).run(list(X))
    for name, value in got.items():
        method = {"label": "predict", "features": "transform"}.get(name, name)
        expected = np.asarray(getattr(pipeline, method)(X))
        if name == "label":
            mismatched = int((value != expected).sum())
            if mismatched:
                raise ValueError(f"The exported model predicts {mismatched} of {len(X)} labels differently.")
        else:
            error = _relative_error(value, expected)
            if error > TOLERANCE:
                raise ValueError(
                    f"The exported model's {name} differs from the pipeline's by a relative error "
                    f"of {error:.2g} (> {TOLERANCE:g})."
                )
