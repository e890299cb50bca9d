"""`:classify` and `:regress`: JSON examples -> serialized tf.Example -> results.

tf.Example is rebuilt from descriptors (field numbers of tensorflow/core/example/*.proto)
so this path needs no tensorflow import; the servable is fed the serialized strings on
its single `inputs` tensor, as TF Serving's classifier/regressor do.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message

from tfms.runtime.config import add_field
from tfms.runtime.errors import invalid
from tfms.runtime.floatfmt import format_float32
from tfms.runtime.jsonvalue import json_type_string
from tfms.runtime.predict import Servable, find_signature, parse_request, signature_name
from tfms.runtime.tensor_decode import _decode_b64, _format_error, is_b64_object

_F = descriptor_pb2.FieldDescriptorProto
_FLT_MAX = 3.4028234663852886e38


def _example_pool() -> descriptor_pool.DescriptorPool:
    fd = descriptor_pb2.FileDescriptorProto(
        name="tfms/runtime/example.proto", package="tensorflow", syntax="proto3"
    )
    for name, ftype in (("BytesList", _F.TYPE_BYTES), ("FloatList", _F.TYPE_FLOAT), ("Int64List", _F.TYPE_INT64)):
        add_field(fd.message_type.add(name=name), "value", 1, ftype, repeated=True)
    feature = fd.message_type.add(name="Feature")
    feature.oneof_decl.add(name="kind")
    add_field(feature, "bytes_list", 1, _F.TYPE_MESSAGE, ".tensorflow.BytesList", oneof=0)
    add_field(feature, "float_list", 2, _F.TYPE_MESSAGE, ".tensorflow.FloatList", oneof=0)
    add_field(feature, "int64_list", 3, _F.TYPE_MESSAGE, ".tensorflow.Int64List", oneof=0)
    features = fd.message_type.add(name="Features")
    entry = features.nested_type.add(name="FeatureEntry")
    entry.options.map_entry = True
    add_field(entry, "key", 1, _F.TYPE_STRING)
    add_field(entry, "value", 2, _F.TYPE_MESSAGE, ".tensorflow.Feature")
    add_field(features, "feature", 1, _F.TYPE_MESSAGE, ".tensorflow.Features.FeatureEntry", repeated=True)
    example = fd.message_type.add(name="Example")
    add_field(example, "features", 1, _F.TYPE_MESSAGE, ".tensorflow.Features")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fd)
    return pool


_POOL = _example_pool()
Example: type[Message] = message_factory.GetMessageClass(_POOL.FindMessageTypeByName("tensorflow.Example"))
_KIND_NAMES = {"bytes_list": "bytes", "float_list": "float", "int64_list": "int64", None: "UNKNOWN"}


def _add_value(val: Any, name: str, feature: Any) -> None:
    """`AddValueToFeature`: the first value fixes the feature's kind."""
    kind = feature.WhichOneof("kind")

    def want(target: str) -> Any:
        if kind not in (None, target):
            raise invalid(f"Unexpected element type in feature: {name} expecting type: {_KIND_NAMES[kind]}")
        return getattr(feature, target).value

    if val is None or isinstance(val, list) or (isinstance(val, dict) and not is_b64_object(val)):
        raise invalid(f"Feature: {name} has element with unexpected JSON type: {json_type_string(val)}")
    if isinstance(val, bool):
        want("int64_list").append(1 if val else 0)
    elif isinstance(val, dict):
        want("bytes_list").append(_decode_b64(val))
    elif isinstance(val, str):
        want("bytes_list").append(val.encode())
    elif isinstance(val, float):
        values = want("float_list")
        if val == val and abs(val) != float("inf") and abs(val) > _FLT_MAX:
            raise invalid(f"Cannot convert JSON value: {val} to float without loss of precision.")
        values.append(val)
    else:
        values = want("int64_list")
        if val >= 2**63:
            raise invalid(f"Feature: {name} has uint64 element. Only int64 is supported.")
        values.append(val)


def _example(val: Any) -> Any:
    if not isinstance(val, dict):
        raise invalid(f"Example must be JSON object but got JSON {json_type_string(val)}")
    example: Any = Example()
    for name, content in val.items():
        feature = example.features.feature[name]
        for item in content if isinstance(content, list) else [content]:
            _add_value(item, name, feature)
    return example


def parse_examples(doc: dict[str, Any]) -> list[bytes]:
    """Serialized tf.Examples of a classify/regress request (context merged in)."""
    context = b""
    if "context" in doc:
        context = _example(doc["context"]).SerializeToString()
    if "examples" not in doc:
        raise _format_error(doc, "When method is classify, key 'examples' is expected and was not found")
    examples = doc["examples"]
    if not isinstance(examples, list):
        raise _format_error(doc, "Expecting 'examples' value to be an list/array")
    if not examples:
        raise _format_error(doc, "'examples' value is an empty array")
    return [context + _example(e).SerializeToString() for e in examples]


def _text(v: Any) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def classify_or_regress(verb: str, body: bytes, lookup: Callable[[], Servable]) -> bytes:
    """Run `:classify` or `:regress`; the response key is `results` for both."""
    doc = parse_request(body)
    requested = signature_name(doc)
    examples = parse_examples(doc)
    servable = lookup()
    key, sig = find_signature(servable, requested)
    if len(sig.inputs) != 1:
        raise invalid("Expected one input Tensor.")
    (input_alias,) = sig.inputs
    batch = len(examples)
    serialized = np.empty(batch, dtype=object)
    serialized[:] = examples
    if verb == "regress":
        if "outputs" not in sig.outputs:
            raise invalid("No regression outputs found in signature: expected 'outputs'.")
        out = servable.run(key, {input_alias: serialized})["outputs"]
        if not (out.shape == (batch,) or out.shape == (batch, 1)):
            raise invalid(f"Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but got "
                          f"{list(out.shape)}")
        values = ",".join(format_float32(float(v)) for v in out.reshape(batch).tolist())
        return ('{"results":[' + values + "]}").encode()
    if "classes" not in sig.outputs and "scores" not in sig.outputs:
        raise invalid("Expected classification signature outputs to contain at least one of 'classes' or 'scores'.")
    outputs = servable.run(key, {input_alias: serialized})
    classes, scores = outputs.get("classes"), outputs.get("scores")
    for label, arr in (("classes", classes), ("scores", scores)):
        if arr is not None and (arr.ndim != 2 or arr.shape[0] != batch):
            raise invalid(f"Expected Tensor shape: [{batch} num_classes] but got {list(arr.shape)} for {label}")
    if classes is not None and scores is not None and classes.shape != scores.shape:
        raise invalid(f"Tensors class and score should match in shape, but had shapes {list(classes.shape)} "
                      f"and {list(scores.shape)}")
    width = (scores if scores is not None else classes).shape[1]  # type: ignore[union-attr]
    results = []
    for i in range(batch):
        pairs = []
        for j in range(width):
            label = json.dumps(_text(classes[i, j]), ensure_ascii=False) if classes is not None else '""'
            score = format_float32(float(scores[i, j])) if scores is not None else "0.0"
            pairs.append(f"[{label},{score}]")
        results.append("[" + ",".join(pairs) + "]")
    return ('{"results":[' + ",".join(results) + "]}").encode()
