"""The `:predict` pipeline, in the order TF Serving checks things.

JSON is parsed and `signature_name` validated before the servable is looked up, so an
empty body to an unknown model still reports the parse error, exactly as upstream.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from tfms.runtime.errors import invalid
from tfms.runtime.jsonvalue import parse_json, value_to_string
from tfms.runtime.signature import Signature
from tfms.runtime.tensor_decode import decode_predict_inputs
from tfms.runtime.tensor_encode import encode_predict

DEFAULT_SIGNATURE = "serving_default"


class Servable(Protocol):
    """What a loaded model version offers to the request path."""

    signatures: dict[str, Signature]

    def run(self, sig_name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...


def parse_request(body: bytes) -> dict[str, Any]:
    """Parse the body and insist on a top-level object (`ParseJson`)."""
    doc = parse_json(body)
    if not isinstance(doc, dict):
        raise invalid(f"JSON Value: {value_to_string(doc)} Is not object")
    return doc


def signature_name(doc: dict[str, Any]) -> str:
    """`FillSignature`: the optional name must be a string."""
    name = doc.get("signature_name", "")
    if not isinstance(name, str):
        raise invalid(
            f"JSON Value: {value_to_string(doc)} not formatted correctly. "
            "'signature_name' key must be a string value."
        )
    return name


def find_signature(servable: Servable, name: str) -> tuple[str, Signature]:
    key = name or DEFAULT_SIGNATURE
    sig = servable.signatures.get(key)
    if sig is None:
        raise invalid(f'Serving signature name: "{key}" not found in signature def')
    return key, sig


def predict(body: bytes, lookup: Callable[[], Servable]) -> bytes:
    """Run one `:predict` request body against the servable `lookup` resolves."""
    doc = parse_request(body)
    requested = signature_name(doc)
    servable = lookup()
    key, sig = find_signature(servable, requested)
    if not sig.inputs:
        raise invalid(f"Failed to get input map for signature: {requested or 'DEFAULT'}")
    maybe_bools = b"true" in body or b"false" in body
    inputs, fmt = decode_predict_inputs(doc, sig.inputs, maybe_bools)
    outputs = servable.run(key, inputs)
    return encode_predict(outputs, {k: v.dtype for k, v in sig.outputs.items()}, fmt)
