"""Loading one SavedModel version the way TF Serving does: TF1 graph + session.

`tf.compat.v1.saved_model.loader.load` imports the MetaGraphDef into its own Graph and
runs signatures by tensor name. Unlike `tf.saved_model.load` it never rebuilds Python
objects (Keras layers, optimizers), which is what breaks on models such as
basic-pitch 0.4.0 under Keras 3. This is the only module that imports tensorflow at
import time.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from tensorflow.core.framework import tensor_pb2

from tfms.runtime.errors import Code, ServingError, invalid
from tfms.runtime.signature import Signature, TensorInfo
from tfms.runtime.warmup import WarmupError, read_warmup

log = logging.getLogger("tfms.runtime")

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")


def _tensor_info(proto: Any) -> TensorInfo:
    encoding = proto.WhichOneof("encoding")
    shape = proto.tensor_shape
    extra: dict[str, Any] = {}
    if encoding not in (None, "name"):
        extra = {
            encoding: json_format.MessageToDict(
                getattr(proto, encoding),
                preserving_proto_field_name=True,
                always_print_fields_with_no_presence=True,
            )
        }
    return TensorInfo(
        name=proto.name,
        dtype=int(proto.dtype),
        dims=tuple((int(d.size), d.name) for d in shape.dim),
        unknown_rank=bool(shape.unknown_rank) or not proto.HasField("tensor_shape"),
        encoding_json=extra,
    )


def _signature(proto: Any) -> Signature:
    defaults = {
        k: json_format.MessageToDict(v, preserving_proto_field_name=True) for k, v in proto.defaults.items()
    }
    return Signature(
        inputs={k: _tensor_info(v) for k, v in proto.inputs.items()},
        outputs={k: _tensor_info(v) for k, v in proto.outputs.items()},
        method_name=proto.method_name,
        defaults=defaults,
    )


def session_config(intra_op: int, inter_op: int) -> Any:
    return tf.compat.v1.ConfigProto(
        intra_op_parallelism_threads=max(intra_op, 0), inter_op_parallelism_threads=max(inter_op, 0)
    )


class _Runner:
    """A prepared `TF_SessionRun` for fixed feeds and fetches.

    `Session.run` re-resolves names and rebuilds fetch handlers on every call, and
    `make_callable` falls back to it whenever there are feeds; this skips straight to
    the C call, which is most of the per-request cost for small models. Shapes are
    checked here because the C API would not check them against the placeholder.
    """

    def __init__(self, session: Any, feeds: list[Any], fetches: list[Any]) -> None:
        self._session = session
        self._feeds = [t._as_tf_output() for t in feeds]
        self._fetches = [t._as_tf_output() for t in fetches]
        self._checks = [
            (t.name, None if t.shape.rank is None else tuple(t.shape.as_list()), t.dtype.as_numpy_dtype)
            for t in feeds
        ]

    def __call__(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        feed: dict[Any, np.ndarray] = {}
        for out, arr, (name, shape, np_type) in zip(self._feeds, arrays, self._checks, strict=True):
            if shape is not None and (
                len(shape) != arr.ndim or any(d is not None and d != n for d, n in zip(shape, arr.shape, strict=True))
            ):
                want = tuple(shape)
                raise ValueError(f"Cannot feed value of shape {arr.shape} for Tensor {name}, which has shape {want}")
            if arr.dtype != np_type and np_type is not object:
                arr = arr.astype(np_type)
            feed[out] = arr
        results: list[np.ndarray] = self._session._call_tf_sessionrun(None, feed, self._fetches, [], None)
        return results


class TfServable:
    """One loaded version: a session plus plain-data signatures."""

    def __init__(self, export_dir: str, tags: Sequence[str], config: Any = None) -> None:
        self.export_dir = export_dir
        self.graph = tf.Graph()
        self.session = tf.compat.v1.Session(graph=self.graph, config=config)
        try:
            meta_graph = tf.compat.v1.saved_model.loader.load(self.session, list(tags), export_dir)
        except BaseException:
            self.session.close()
            raise
        self.signatures: dict[str, Signature] = {k: _signature(v) for k, v in meta_graph.signature_def.items()}
        self._runners: dict[tuple[str, tuple[str, ...]], _Runner] = {}
        self._lock = threading.Lock()

    def has_warmup_file(self) -> bool:
        return os.path.exists(os.path.join(self.export_dir, WARMUP_FILE))

    def replay_warmup(self) -> int:
        """Run every predict warmup record once (TF Serving does this before the version serves).

        A record that does not parse or fails to run fails the load, as upstream. Classify,
        regress and multi-inference records are counted but not replayed here.
        """
        with open(os.path.join(self.export_dir, WARMUP_FILE), "rb") as f:
            records = read_warmup(f.read())
        replayed = 0
        for record in records:
            if record.inputs is None:
                continue
            name = record.signature_name or "serving_default"
            if name not in self.signatures:
                raise WarmupError(f'Serving signature name: "{name}" not found in signature def')
            expected = self.signatures[name].inputs
            for alias in sorted(record.inputs):
                if alias not in expected:
                    raise WarmupError(f"Warmup request failed: input tensor alias not found in signature: {alias}. "
                                      f"Inputs expected to be in the set {{{','.join(sorted(expected))}}}.")
            try:
                arrays = {k: tf.make_ndarray(tensor_pb2.TensorProto.FromString(v)) for k, v in record.inputs.items()}
            except (DecodeError, TypeError, ValueError) as exc:
                raise WarmupError(f"Failed to parse warmup record tensors: {exc}") from None
            try:
                self.run(name, arrays)
            except ServingError as exc:
                raise WarmupError(f"Warmup request failed: {exc.to_string()}") from None
            replayed += 1
        return replayed

    def _runner(self, sig_name: str, aliases: tuple[str, ...]) -> _Runner:
        key = (sig_name, aliases)
        runner = self._runners.get(key)
        if runner is not None:
            return runner
        sig = self.signatures[sig_name]
        for alias in aliases:
            if sig.inputs[alias].encoding_json:
                raise ServingError(Code.UNIMPLEMENTED, f"Input {alias} is not a dense tensor")
        outputs = sorted(sig.outputs)
        for alias in outputs:
            if sig.outputs[alias].encoding_json:
                raise ServingError(Code.UNIMPLEMENTED, f"Output {alias} is not a dense tensor")
        with self._lock:
            try:
                feeds = [self.graph.get_tensor_by_name(sig.inputs[a].name) for a in aliases]
                fetches = [self.graph.get_tensor_by_name(sig.outputs[a].name) for a in outputs]
            except (KeyError, ValueError) as exc:
                raise invalid(str(exc)) from None
            runner = _Runner(self.session, feeds, fetches)
            self._runners[key] = runner
        return runner

    def run(self, sig_name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run a signature; TF errors become ServingErrors with TF's status code."""
        aliases = tuple(sorted(inputs))
        outputs = sorted(self.signatures[sig_name].outputs)
        try:
            values = self._runner(sig_name, aliases)([inputs[a] for a in aliases])
        except tf.errors.OpError as exc:
            raise ServingError(Code(exc.error_code), exc.message) from None
        except (ValueError, TypeError) as exc:
            raise invalid(str(exc)) from None
        return dict(zip(outputs, values, strict=True))

    def close(self) -> None:
        self.session.close()
