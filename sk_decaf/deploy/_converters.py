"""skl2onnx converters for sk_decaf's estimators, as they behave at predict time.

Each estimator gets a shape calculator and a converter, registered with
``skl2onnx.update_registered_converter``; after :func:`register_converters`, ``skl2onnx.to_onnx`` converts
pipelines that contain them like any scikit-learn pipeline. What each one becomes:

* ``DeCAFTransformer``: its network (:func:`~sk_decaf.deploy._network.network_to_onnx`), uint8 images in
  (with test-time augmentation, its crops; the mirrors and the reduction over the views are in the graph);
* ``SignedSqrt``: normalise, signed power, normalise again (zero rows stay zero, as in scikit-learn);
* ``FeatureDropout``: its test-time ``transform``, a multiplication by ``1 - p``;
* domain transformers, applied to unlabelled rows, which are target rows: ``DomainAugment`` gives the
  target layout ``[x, 0, ..., x, ...]``, ``CORAL`` leaves target rows as they are, ``SubspaceAlignment``
  projects on the target basis, ``GeodesicFlowKernel`` multiplies by its factor ``L``.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import numpy as np
import onnx
from onnx import numpy_helper
from skl2onnx import update_registered_converter
from skl2onnx.common.data_types import FloatTensorType, UInt8TensorType, guess_numpy_type

from ..domain import CORAL, DomainAugment, GeodesicFlowKernel, SubspaceAlignment
from ..transformers import DeCAFTransformer, FeatureDropout, SignedSqrt
from ._network import NETWORK_OPSET, input_shape, network_to_onnx

__all__ = ["register_converters", "CONVERTERS"]

# skl2onnx's conversion objects, untyped: the scope names variables and operators, the container collects the
# graph's nodes and initializers, an operator is one estimator of the converted pipeline.
Scope: TypeAlias = Any
Container: TypeAlias = Any
Operator: TypeAlias = Any


# -- helpers ---------------------------------------------------------------------------------------------------
def _const(scope: Scope, container: Container, value: Any, dtype: Any, name: str = "c") -> str:
    """An initializer holding ``value`` as ``dtype``; returns its name."""
    array = np.asarray(value, dtype=dtype)
    tensor = numpy_helper.from_array(array, scope.get_unique_variable_name(name))
    container.add_initializer(tensor.name, tensor.data_type, list(array.shape), tensor)
    return tensor.name


def _node(
    scope: Scope,
    container: Container,
    op: str,
    inputs: list[str],
    name: str | None = None,
    output: str | None = None,
    **attrs: Any,
) -> str:
    """Add one node; returns the name of its (single) output."""
    output = output or scope.get_unique_variable_name(name or op.lower())
    container.add_node(op, inputs, [output], name=scope.get_unique_operator_name(op), **attrs)
    return output


def _row_reduce(scope: Scope, container: Container, op: str, x: str) -> str:
    """``op`` (ReduceSumSquare, ReduceL1, ReduceMax) over axis 1, keeping dims: axes is an input from opset 18."""
    if container.target_opset >= 18:
        axes = _const(scope, container, [1], np.int64, "axes")
        return _node(scope, container, op, [x, axes], keepdims=1)
    return _node(scope, container, op, [x], axes=[1], keepdims=1)


def _normalize(scope: Scope, container: Container, x: str, norm: str, dtype: Any) -> str:
    """``sklearn.preprocessing.normalize``: divide each row by its norm, rows of norm 0 left as they are."""
    if norm == "l2":
        size = _node(scope, container, "Sqrt", [_row_reduce(scope, container, "ReduceSumSquare", x)])
    elif norm == "l1":
        size = _row_reduce(scope, container, "ReduceL1", x)
    else:  # "max": of the absolute values
        size = _row_reduce(scope, container, "ReduceMax", _node(scope, container, "Abs", [x]))
    zero, one = _const(scope, container, 0, dtype), _const(scope, container, 1, dtype)
    safe = _node(scope, container, "Where", [_node(scope, container, "Equal", [size, zero]), one, size])
    return _node(scope, container, "Div", [x, safe])


def _output_type(operator: Operator, n_features: int) -> None:
    operator.outputs[0].type = operator.inputs[0].type.__class__(
        [operator.inputs[0].get_first_dimension(), int(n_features)]
    )


def _float_dtype(operator: Operator) -> Any:
    dtype = guess_numpy_type(operator.inputs[0].type)
    return dtype if dtype in (np.float32, np.float64) else np.float32


# -- DeCAFTransformer -------------------------------------------------------------------------------------------
def _decaf_shape(operator: Operator) -> None:
    decaf = operator.raw_operator
    in_type = operator.inputs[0].type
    shape = input_shape(decaf)
    if not isinstance(in_type, UInt8TensorType) or len(in_type.shape) != len(shape):
        raise TypeError(
            f"DeCAFTransformer's ONNX input is a uint8 image batch {('N', *shape[1:])}, not "
            f"{type(in_type).__name__}{list(in_type.shape)}: pass initial_types=[('images', "
            f"UInt8TensorType({shape}))]."
        )
    operator.outputs[0].type = FloatTensorType([operator.inputs[0].get_first_dimension(), decaf.n_features_out_])


def _embed(
    scope: Scope, container: Container, model: onnx.ModelProto, inputs: dict[str, str], outputs: dict[str, str]
) -> None:
    """Copy ``model``'s graph into the container, renaming every tensor and node so that none collides."""
    opset = {imp.domain or "": imp.version for imp in model.opset_import}
    if opset.get("", NETWORK_OPSET) != container.target_opset:
        model = onnx.version_converter.convert_version(model, container.target_opset)
        opset = {imp.domain or "": imp.version for imp in model.opset_import}
    graph = model.graph
    names = dict(inputs)
    names.update(outputs)

    def rename(name: str) -> str:
        if name == "":
            raise ValueError(
                "The network's ONNX graph omits an optional input before a given one, which skl2onnx cannot order."
            )
        if name not in names:
            names[name] = scope.get_unique_variable_name(name.replace("/", "_").strip("_") or "t")
        return names[name]

    for tensor in graph.initializer:
        copy = onnx.TensorProto()
        copy.CopyFrom(tensor)
        copy.name = rename(tensor.name)
        container.initializers.append(copy)
    for node in graph.node:
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        copy.name = scope.get_unique_operator_name(node.op_type)
        node_inputs = list(node.input)
        while node_inputs and node_inputs[-1] == "":  # omitted trailing optional inputs (Clip without max): drop
            node_inputs.pop()  # them, skl2onnx's topological sort would look for a producer of ""
        copy.input[:] = [rename(n) for n in node_inputs]
        copy.output[:] = [rename(n) for n in node.output]
        container.nodes.append(copy)
        container.node_domain_version_pair_sets.add((node.domain, opset[node.domain or ""]))


def _decaf_converter(scope: Scope, operator: Operator, container: Container) -> None:
    model = network_to_onnx(operator.raw_operator)
    _embed(
        scope, container, model, {"images": operator.inputs[0].full_name}, {"features": operator.outputs[0].full_name}
    )


# -- the feature transformers -------------------------------------------------------------------------------------
def _same_shape(operator: Operator) -> None:
    operator.outputs[0].type = operator.inputs[0].type.__class__(list(operator.inputs[0].type.shape))


def _signed_sqrt_converter(scope: Scope, operator: Operator, container: Container) -> None:
    est, dtype = operator.raw_operator, _float_dtype(operator)
    x = operator.inputs[0].full_name
    if est.norm is not None:
        x = _normalize(scope, container, x, est.norm, dtype)
    if est.power != 1:
        magnitude = _node(
            scope,
            container,
            "Pow",
            [_node(scope, container, "Abs", [x]), _const(scope, container, est.power, dtype, "power")],
        )
        x = _node(scope, container, "Mul", [_node(scope, container, "Sign", [x]), magnitude])
    if est.renorm is not None:
        x = _normalize(scope, container, x, est.renorm, dtype)
    _node(scope, container, "Identity", [x], output=operator.outputs[0].full_name)


def _feature_dropout_converter(scope: Scope, operator: Operator, container: Container) -> None:
    est, dtype = operator.raw_operator, _float_dtype(operator)
    x, out = operator.inputs[0].full_name, operator.outputs[0].full_name
    if est.p == 0:
        _node(scope, container, "Identity", [x], output=out)
    else:
        _node(scope, container, "Mul", [x, _const(scope, container, 1.0 - est.p, dtype, "keep")], output=out)


def _domain_augment_shape(operator: Operator) -> None:
    est = operator.raw_operator
    _output_type(operator, est.n_features_in_ * (1 + len(est.domains_)))


def _domain_augment_converter(scope: Scope, operator: Operator, container: Container) -> None:
    est, dtype = operator.raw_operator, _float_dtype(operator)
    x = operator.inputs[0].full_name
    shape = _node(scope, container, "Shape", [x])
    zero = onnx.helper.make_tensor("zero", onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype)), [1], [0])
    zeros = _node(scope, container, "ConstantOfShape", [shape], value=zero)
    # An unlabelled row is a target row: the shared block, then x in the target's block and zeros elsewhere.
    blocks = [x] + [x if d == est.target_domain_ else zeros for d in est.domains_]
    _node(scope, container, "Concat", blocks, output=operator.outputs[0].full_name, axis=1)


def _coral_converter(scope: Scope, operator: Operator, container: Container) -> None:
    # CORAL re-colours source rows only; target rows, which unlabelled rows are, pass unchanged.
    _node(scope, container, "Identity", [operator.inputs[0].full_name], output=operator.outputs[0].full_name)


def _affine(
    scope: Scope, container: Container, operator: Operator, mean: np.ndarray | None, matrix: np.ndarray
) -> None:
    """``(x - mean) @ matrix`` (no subtraction when ``mean`` is None), into the operator's output."""
    dtype = _float_dtype(operator)
    x = operator.inputs[0].full_name
    if mean is not None:
        x = _node(scope, container, "Sub", [x, _const(scope, container, mean, dtype, "mean")])
    _node(
        scope,
        container,
        "MatMul",
        [x, _const(scope, container, matrix, dtype, "matrix")],
        output=operator.outputs[0].full_name,
    )


def _subspace_alignment_shape(operator: Operator) -> None:
    _output_type(operator, operator.raw_operator.n_components_)


def _subspace_alignment_converter(scope: Scope, operator: Operator, container: Container) -> None:
    est = operator.raw_operator
    _affine(scope, container, operator, est.mean_target_, est.components_target_.T)


def _gfk_shape(operator: Operator) -> None:
    _output_type(operator, 2 * operator.raw_operator.n_components_)


def _gfk_converter(scope: Scope, operator: Operator, container: Container) -> None:
    est = operator.raw_operator
    _affine(scope, container, operator, est.mean_target_ if est.center else None, est.projection_)


#: estimator class -> (skl2onnx alias, shape calculator, converter)
CONVERTERS: dict[type, tuple[str, Any, Any]] = {
    DeCAFTransformer: ("SkDecafDeCAFTransformer", _decaf_shape, _decaf_converter),
    SignedSqrt: ("SkDecafSignedSqrt", _same_shape, _signed_sqrt_converter),
    FeatureDropout: ("SkDecafFeatureDropout", _same_shape, _feature_dropout_converter),
    DomainAugment: ("SkDecafDomainAugment", _domain_augment_shape, _domain_augment_converter),
    CORAL: ("SkDecafCORAL", _same_shape, _coral_converter),
    SubspaceAlignment: ("SkDecafSubspaceAlignment", _subspace_alignment_shape, _subspace_alignment_converter),
    GeodesicFlowKernel: ("SkDecafGeodesicFlowKernel", _gfk_shape, _gfk_converter),
}


def register_converters() -> None:
    """Register sk_decaf's estimators with skl2onnx, so that ``skl2onnx.to_onnx`` converts them.

    :func:`sk_decaf.to_onnx` calls it; call it yourself before using skl2onnx directly. Registering twice is
    harmless.

    Examples
    --------
    >>> import numpy as np
    >>> import skl2onnx
    >>> from sk_decaf import SignedSqrt
    >>> from sk_decaf.deploy import register_converters
    >>> register_converters()
    >>> X = np.array([[9.0, -16.0]], dtype=np.float32)
    >>> model = skl2onnx.to_onnx(SignedSqrt().fit(X), X, target_opset=17)
    >>> [node.op_type for node in model.graph.node][:3]
    ['ReduceSumSquare', 'Sqrt', 'Equal']
    """
    for cls, (alias, shape, convert) in CONVERTERS.items():
        update_registered_converter(cls, alias, shape, convert)
