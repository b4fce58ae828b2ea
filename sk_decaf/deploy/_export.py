"""``sk_decaf.to_onnx``: a fitted pipeline, from uint8 images to its final step's outputs, as one ONNX graph."""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from sklearn.base import BaseEstimator, is_classifier
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.utils.validation import check_is_fitted

from .._version import __version__
from ..transformers import DeCAFTransformer
from .runtime import ImageInputs

if TYPE_CHECKING:
    import onnx

#: ``[(name, estimator)]``: the steps of a pipeline.
Steps = list[tuple[str, Any]]
#: ``(method, model, binary)``: the final classifier converted for one of its scores (see ``_heads``).
Head = tuple[str, "onnx.ModelProto", bool]
#: ``(input name, preprocess config, shape)`` of each graph input.
GraphInput = tuple[str, dict[str, Any], list[int | None]]

__all__ = ["to_onnx", "unsupported_steps"]

#: Largest ``max|onnx - sklearn| / max|sklearn|`` accepted when the export is checked.
TOLERANCE = 1e-4

#: Steps that can never be exported, and why.
_NEVER = {
    "FineTunedClassifier": "it takes images and runs its own fine-tuned network, so it cannot follow a "
    "DeCAFTransformer; it is a whole pipeline by itself and has no ONNX export here",
    "RetrievalIndex": "it ranks a database of images: its answer is not a function of one image",
}


def _steps(pipeline: BaseEstimator) -> Steps:
    if isinstance(pipeline, DeCAFTransformer):
        return [("decaf", pipeline)]
    if isinstance(pipeline, FeatureUnion):
        return [("features", pipeline)]
    if not isinstance(pipeline, Pipeline):
        raise TypeError(
            "to_onnx exports a fitted Pipeline that starts with a DeCAFTransformer or a FeatureUnion of them (or "
            f"a fitted DeCAFTransformer or FeatureUnion); got {type(pipeline).__name__}."
        )
    return [(name, est) for name, est in pipeline.steps if est is not None and not isinstance(est, str)]


def _branches(union: FeatureUnion) -> list[tuple[str, Any, float | None]]:
    """``[(name, estimator or "passthrough", weight)]`` of a FeatureUnion, its dropped branches left out."""
    weights = union.transformer_weights or {}
    return [
        (name, est, weights.get(name))
        for name, est in union.transformer_list
        if est is not None and not (isinstance(est, str) and est == "drop")
    ]


def _branch_steps(est: object) -> Steps | None:
    """The steps of one branch of a union, or None when it is neither a DeCAFTransformer nor a Pipeline."""
    if isinstance(est, DeCAFTransformer):
        return [("decaf", est)]
    if isinstance(est, Pipeline):
        return _steps(est)
    return None


def _takes_images(est: object) -> bool:
    """Whether ``est`` starts from images: a DeCAFTransformer, or a union or pipeline that holds one first."""
    if isinstance(est, DeCAFTransformer):
        return True
    if isinstance(est, FeatureUnion):
        return any(not isinstance(b, str) and _takes_images(b) for _, b, _ in _branches(est))
    if isinstance(est, Pipeline):
        steps = _steps(est)
        return bool(steps) and _takes_images(steps[0][1])
    return False


def _require_skl2onnx() -> None:
    try:
        import skl2onnx  # noqa: F401
    except ImportError:
        raise ImportError("sk_decaf.to_onnx needs skl2onnx: pip install 'sk-decaf[export]'.") from None


def _reason(est: BaseEstimator, first: bool, last: bool) -> str | None:
    """Why ``est`` cannot be exported at its place in a pipeline (or a union's branch), or None when it can."""
    from skl2onnx import get_model_alias

    from ._converters import CONVERTERS

    name = type(est).__name__
    if first and not isinstance(est, DeCAFTransformer):
        return (
            "the graph starts from images, so the first step must be a DeCAFTransformer or a FeatureUnion whose "
            "branches start with one (to export a pipeline on features, use skl2onnx.to_onnx after "
            "sk_decaf.deploy.register_converters())"
        )
    if isinstance(est, DeCAFTransformer) and not first:
        return "a DeCAFTransformer takes images, so it can only be the first step"
    if _takes_images(est) and not first:
        return f"a {name} of DeCAFTransformers takes images, so it can only be the first step"
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


def _union_problems(union: FeatureUnion, name: str) -> list[tuple[str, str]]:
    """``(name, reason)`` for each branch step of a union of DeCAF branches that cannot be exported."""
    branches = _branches(union)
    if not branches:
        return [(name, "every branch of the FeatureUnion is dropped: it has no features to export")]
    problems = []
    for branch, est, _ in branches:
        where = f"{name}__{branch}"
        steps = None if isinstance(est, str) else _branch_steps(est)
        if steps is None:
            what = "'passthrough' would pass the images on" if isinstance(est, str) else f"it is a {type(est).__name__}"
            problems.append(
                (where, f"every branch of a FeatureUnion on images must start with a DeCAFTransformer; {what}")
            )
            continue
        for i, (step, step_est) in enumerate(steps):
            step_where = where if isinstance(est, DeCAFTransformer) else f"{where}__{step}"
            why: str | None
            if i > 0 and not hasattr(step_est, "transform"):
                why = "a branch of a FeatureUnion gives features, so its steps must be transformers"
            else:
                why = _reason(step_est, i == 0, False)
            if why is not None:
                problems.append((step_where, why))
    return problems


def unsupported_steps(pipeline: BaseEstimator) -> list[tuple[str, str]]:
    """The steps of ``pipeline`` that :func:`to_onnx` cannot export, each with the reason.

    Parameters
    ----------
    pipeline : Pipeline, FeatureUnion or DeCAFTransformer

    Returns
    -------
    problems : list of (str, str)
        ``(step name, reason)``; empty when the whole pipeline can be exported. A step inside a branch of a
        leading ``FeatureUnion`` is named as its parameters are, ``<union>__<branch>__<step>``.

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
    problems: list[tuple[str, str]] = []
    for i, (name, est) in enumerate(steps):
        if i == 0 and isinstance(est, FeatureUnion):
            problems += _union_problems(est, name)
            continue
        why = _reason(est, i == 0, i == len(steps) - 1)
        if why is not None:
            problems.append((name, why))
    return problems


# -- the final step's outputs ---------------------------------------------------------------------------------
def _convert_alone(
    est: BaseEstimator, n_features: int, candidates: Sequence[dict[str, Any]], target_opset: int
) -> onnx.ModelProto:
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


def _relative_error(a: np.ndarray, b: np.ndarray) -> float:
    scale = float(np.abs(b).max(initial=0.0))
    return float(np.abs(a - b).max(initial=0.0)) / max(scale, 1e-12)


def _heads(est: BaseEstimator, n_features: int, target_opset: int) -> list[Head]:
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
    heads: list[Head] = []
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
class _Graph:
    """Sub-models joined into one ONNX graph, each under its own name prefix, fed by tensors already there."""

    def __init__(self, inputs: Iterable[onnx.ValueInfoProto]) -> None:
        self.inputs = list(inputs)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.functions: list[onnx.FunctionProto] = []
        self.opsets: dict[str, int] = {}
        self.ir_version = 0

    def add(self, model: onnx.ModelProto, prefix: str, feeds: dict[str, str]) -> list[str]:
        """Add ``model``, its names prefixed; ``feeds`` maps each of its inputs to a tensor of this graph.

        Returns the names of the model's outputs in this graph.
        """
        from onnx import compose, helper

        if prefix:
            model = compose.add_prefix(model, prefix)
        initialized = {tensor.name for tensor in model.graph.initializer}  # listed as inputs by older IRs
        for value in model.graph.input:
            if value.name in initialized:
                continue
            source = feeds[value.name[len(prefix) :]]
            if source != value.name:
                self.nodes.append(helper.make_node("Identity", [source], [value.name], name=f"{value.name}_in"))
        self.nodes.extend(model.graph.node)
        self.initializers.extend(model.graph.initializer)
        self.functions.extend(model.functions)
        for imp in model.opset_import:
            self.opsets[imp.domain] = max(self.opsets.get(imp.domain, 0), imp.version)
        self.ir_version = max(self.ir_version, model.ir_version)
        return [o.name for o in model.graph.output]

    def node(self, op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        from onnx import helper

        self.nodes.append(helper.make_node(op, inputs, [output], name=f"{output}_{op.lower()}", **attrs))
        return output

    def constant(self, name: str, array: Any) -> str:
        from onnx import numpy_helper

        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def model(self, outputs: list[onnx.ValueInfoProto]) -> onnx.ModelProto:
        from onnx import helper

        graph = helper.make_graph(self.nodes, "sk_decaf_pipeline", self.inputs, outputs, self.initializers)
        return helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid(d, v) for d, v in self.opsets.items()],
            ir_version=self.ir_version,
            functions=self.functions,
        )


def _rename_output(model: onnx.ModelProto, new: str) -> onnx.ModelProto:
    """Rename the single output of ``model`` to ``new``."""
    old = model.graph.output[0].name
    for node in model.graph.node:
        node.output[:] = [new if n == old else n for n in node.output]
    model.graph.output[0].name = new
    return model


def _convert(est: BaseEstimator, initial_types: list[tuple[str, Any]], opset: int, what: str) -> onnx.ModelProto:
    """skl2onnx's conversion of ``est`` alone, its single output renamed ``features``."""
    from skl2onnx import convert_sklearn

    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning, module="sklearn")
            model = convert_sklearn(est, initial_types=initial_types, target_opset=opset)
    except (RuntimeError, TypeError, NameError) as exc:
        raise ValueError(f"skl2onnx could not convert {what}: {exc}") from exc
    return _rename_output(model, "features")


#: Preprocessing settings that do not change the uint8 input (the graph normalises), nor its description.
_GRAPH_SIDE = ("mean", "std")


def _inputs_of(decafs: Sequence[DeCAFTransformer]) -> tuple[list[GraphInput], list[str]]:
    """The graph's inputs, one per distinct preprocessing of ``decafs``, and the input of each transformer.

    Returns ``[(input name, preprocess config, shape)]`` and the list of input names, one per transformer:
    transformers that prepare images alike share one input, whatever their mean and std (normalisation is
    inside the graph). An input shared by networks that normalise differently records ``mean`` and ``std``
    as None.
    """
    from ._network import input_shape, preprocess_config

    inputs: list[GraphInput] = []
    names: list[str] = []
    for decaf in decafs:
        config = preprocess_config(decaf.data_config_, decaf.preprocess, decaf.decode, decaf.tta)
        key = {k: v for k, v in config.items() if k not in _GRAPH_SIDE}
        same = [k for k, (_, other, _) in enumerate(inputs) if {n: other[n] for n in key} == key]
        if same:
            other = inputs[same[0]][1]
            for name in _GRAPH_SIDE:
                if other[name] != config[name]:
                    other[name] = None
        else:
            same = [len(inputs)]
            inputs.append(("images" if not inputs else f"images_{len(inputs)}", config, input_shape(decaf)))
        names.append(inputs[same[0]][0])
    return inputs, names


def _body(
    front: DeCAFTransformer | FeatureUnion, middle: Steps, opset: int
) -> tuple[_Graph, str, list[GraphInput], list[tuple[str, DeCAFTransformer, str]]]:
    """The graph from images to the features the final step reads.

    Returns ``(graph, features, inputs, branches)``: the :class:`_Graph`, the name of its features tensor,
    the inputs as :func:`_inputs_of` gives them, and ``[(branch name, DeCAFTransformer, input name)]``.

    ``front`` is a DeCAFTransformer, converted together with the ``middle`` steps by skl2onnx, or a
    FeatureUnion: each branch converted on its own input (shared by the branches prepared alike), the
    branches weighted and concatenated as the union does, then the ``middle`` steps on the features.
    """
    import onnx
    from onnx import helper
    from skl2onnx.common.data_types import FloatTensorType, UInt8TensorType

    branches: list[tuple[str, Any, float | None]]
    if isinstance(front, DeCAFTransformer):
        decafs, branches = [front], [("", Pipeline([("decaf", front), *middle]) if middle else front, None)]
        middle = []
    else:
        branches = _branches(front)
        # Every branch is a DeCAFTransformer or a Pipeline that starts with one (unsupported_steps checked it).
        decafs = [cast(Steps, _branch_steps(est))[0][1] for _, est, _ in branches]
    inputs, input_names = _inputs_of(decafs)
    graph = _Graph(
        helper.make_tensor_value_info(name, onnx.TensorProto.UINT8, ["N", *shape[1:]]) for name, _, shape in inputs
    )
    parts: list[str] = []
    for (name, est, weight), input_name in zip(branches, input_names):
        what = "the pipeline" if not name else f"the branch {name!r}"
        shape = next(s for n, _, s in inputs if n == input_name)
        model = _convert(est, [("images", UInt8TensorType(shape))], opset, what)
        (out,) = graph.add(model, f"{name}/" if name else "", {"images": input_name})
        if weight is not None and weight != 1:
            factor = graph.constant(f"{name}/weight", np.float32(weight))
            out = graph.node("Mul", [out, factor], f"{name}/weighted")
        parts.append(out)
    if len(parts) > 1:
        features = graph.node("Concat", parts, "union/features", axis=1)
    else:
        features = parts[0]
    if middle:
        n_features = getattr(middle[0][1], "n_features_in_", None)
        post = _convert(
            Pipeline(middle),
            [("X", FloatTensorType([None, None if n_features is None else int(n_features)]))],
            opset,
            "the steps after the union",
        )
        (features,) = graph.add(post, "post/", {"X": features})
    return graph, features, inputs, list(zip([name for name, _, _ in branches], decafs, input_names))


def _assemble(
    graph: _Graph, features: str, n_features: int | None, heads: list[Head], classifier: bool
) -> onnx.ModelProto:
    """Each head on ``features``; the graph's outputs named as scikit-learn's methods."""
    import onnx
    from onnx import helper

    outputs: list[onnx.ValueInfoProto] = []
    if not classifier:
        if features != "features":
            graph.node("Identity", [features], "features")
        outputs.append(helper.make_tensor_value_info("features", onnx.TensorProto.FLOAT, ["N", n_features or "D"]))
    for k, (method, model, binary) in enumerate(heads):
        label, scores = graph.add(model, f"{method}/", {"X": features})[:2]
        label_type = model.graph.output[0].type.tensor_type.elem_type
        if k == 0:  # labels from the first head: decision_function's when there is one, as predict does
            outputs.append(helper.make_tensor_value_info(graph.node("Identity", [label], "label"), label_type, ["N"]))
        if binary:
            last = graph.constant(f"{method}/last", np.int64(-1))
            graph.node("Gather", [scores, last], method, axis=1)
            outputs.append(helper.make_tensor_value_info(method, onnx.TensorProto.FLOAT, ["N"]))
        else:
            graph.node("Identity", [scores], method)
            outputs.append(helper.make_tensor_value_info(method, onnx.TensorProto.FLOAT, ["N", None]))
    return graph.model(outputs)


def _network_description(decaf: DeCAFTransformer) -> dict[str, Any]:
    from ._network import network_precision

    return {
        "backbone": decaf.backbone if isinstance(decaf.backbone, str) else type(decaf.backbone).__name__,
        "layers": list(decaf.layers_),
        "pooling": decaf.pooling,
        "tta": decaf.tta,
        "tta_reduce": decaf.tta_reduce,
        "precision": network_precision(decaf),
    }


def to_onnx(
    pipeline: BaseEstimator,
    path: str | os.PathLike[str],
    *,
    X: ImageInputs | None = None,
    target_opset: int | None = None,
) -> onnx.ModelProto:
    """Write a fitted pipeline as one ONNX graph, from uint8 images to its final step's outputs.

    The graph's input ``images`` is a uint8 ``(N, 3, H, W)`` RGB batch prepared as the transformer prepares
    it; :class:`sk_decaf.deploy.OnnxPipeline` (numpy, Pillow and onnxruntime only) reads the preprocessing
    settings stored in the model and does this. With test-time augmentation, the graph computes the mirrors
    (``tta="flip"``: the input is unchanged) and reduces the views by ``tta_reduce``; ``"10crop"`` and
    ``"12jitter"`` take their 5 or 6 crops, ``(N, K, 3, H, W)``, from the runtime. A pipeline that starts
    with a ``FeatureUnion`` of ``DeCAFTransformer`` branches (``make_ensemble``, or ``make_union`` with other
    steps after each transformer) is one graph too, with one input per distinct preprocessing (``images``,
    ``images_1``, ...; branches that prepare images alike share one), listed with its settings in the
    model's ``sk_decaf.inputs`` metadata. Its outputs are:

    * for a pipeline ending in a classifier: ``label`` (``predict``), plus ``decision_function`` and
      ``predict_proba`` where the classifier has them, shaped as scikit-learn's;
    * for a pipeline ending in a transformer: ``features`` (``transform``).

    Exported steps: ``DeCAFTransformer`` (any layers, pooling, test-time augmentation, preprocessing,
    decoding and engine; float32, or int8 for ``precision="int8"``: the network quantized as its engine does,
    float32 with one warning where it disagrees), a ``FeatureUnion`` of them (with its
    ``transformer_weights``), ``SignedSqrt``,
    ``FeatureDropout`` (its test-time scaling), the domain transformers applied to unlabelled images, which
    are target images (``DomainAugment``'s target layout, ``CORAL``'s identity on target rows,
    ``SubspaceAlignment``'s and ``GeodesicFlowKernel``'s linear maps), and every scikit-learn step that
    skl2onnx converts (``Normalizer``, ``StandardScaler``, ``PCA``, ``LinearSVC``, ``LogisticRegression``,
    ``SVC`` ...). :func:`unsupported_steps` says which steps cannot be exported and why; they are listed
    in the error.

    Parameters
    ----------
    pipeline : Pipeline, FeatureUnion or DeCAFTransformer
        Fitted; its first step is a ``DeCAFTransformer``, or a ``FeatureUnion`` whose every branch is a
        ``DeCAFTransformer`` or a ``Pipeline`` that starts with one.
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

    from ._converters import register_converters
    from ._network import NETWORK_OPSET
    from .runtime import INPUTS_KEY, OUTPUTS_KEY, PREPROCESS_KEY

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
    front, final = steps[0][1], steps[-1][1]
    classifier = is_classifier(final)
    middle = steps[1:-1] if classifier else steps[1:]
    graph, features, inputs, networks = _body(front, middle, opset)
    n_features = _n_features(steps, classifier)
    heads = _heads(final, cast(int, n_features), opset) if classifier else []  # a classifier's n_features_in_
    model = _assemble(graph, features, n_features, heads, classifier)

    outputs: dict[str, Any] = {
        "outputs": [o.name for o in model.graph.output],
        "final_step": type(final).__name__,
        "classes": final.classes_.tolist() if classifier else None,
    }
    meta = {
        PREPROCESS_KEY: inputs[0][1],
        INPUTS_KEY: [{"name": name, "preprocess": config} for name, config, _ in inputs],
        OUTPUTS_KEY: outputs,
        "sk_decaf.steps": [[name, type(est).__name__] for name, est in steps],
    }
    if isinstance(front, DeCAFTransformer):
        meta["sk_decaf.network"] = _network_description(front)
    else:
        described = {name: (est, weight) for name, est, weight in _branches(front)}
        meta["sk_decaf.branches"] = [
            {
                "name": name,
                "input": input_name,
                "steps": [[step, type(e).__name__] for step, e in cast(Steps, _branch_steps(described[name][0]))],
                "weight": described[name][1],
                **_network_description(decaf),
            }
            for name, decaf, input_name in networks
        ]
    onnx.helper.set_model_props(model, {key: json.dumps(value) for key, value in meta.items()})
    model.producer_name, model.producer_version = "sk_decaf", __version__
    shapes = ", ".join(f"{name} {('N', *shape[1:])}" for name, _, shape in inputs)
    model.doc_string = (
        f"sk_decaf pipeline {' -> '.join(type(e).__name__ for _, e in steps)}: uint8 images "
        f"({shapes}) -> {', '.join(outputs['outputs'])}."
    )
    onnx.checker.check_model(model)
    _write_checked(model, path, pipeline, X)
    return model


def _n_features(steps: Steps, classifier: bool) -> int | None:
    """The number of features the final step reads (classifier) or outputs (transformer); None if unknown."""
    last = steps[-1][1]
    if classifier:
        return int(last.n_features_in_)
    try:
        return len(last.get_feature_names_out())
    except (AttributeError, TypeError, ValueError):  # a step without feature names: the graph leaves it symbolic
        return None


def _write_checked(
    model: onnx.ModelProto, path: str | os.PathLike[str], pipeline: BaseEstimator, X: ImageInputs | None
) -> None:
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


def _check(path: str, pipeline: BaseEstimator, X: ImageInputs) -> None:
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
