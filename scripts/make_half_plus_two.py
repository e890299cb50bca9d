#!/usr/bin/env python3
"""Generate the half_plus_two SavedModel used by local-mode examples and tests.

Version 1 computes y = 0.5 * x + 2 and version 2 y = 0.5 * x + 3, each with a
`serving_default` signature taking `x` (DT_FLOAT, shape [-1]) and returning `y`.
The weights are variables, so loading exercises the checkpoint restore path too.

    python scripts/make_half_plus_two.py [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys

DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "manifests", "examples", "models",
                           "half_plus_two")


def build(out_dir: str) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    class HalfPlus(tf.Module):
        def __init__(self, b: float) -> None:
            super().__init__()
            self.a = tf.Variable(0.5, dtype=tf.float32, name="a")
            self.b = tf.Variable(b, dtype=tf.float32, name="b")

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def serve(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"y": self.a * x + self.b}

    for version, b in ((1, 2.0), (2, 3.0)):
        target = os.path.join(out_dir, str(version))
        if os.path.exists(target):
            shutil.rmtree(target)
        module = HalfPlus(b)
        tf.saved_model.save(module, target, signatures={"serving_default": module.serve})
        _drop_fingerprint_uuid(os.path.join(target, "fingerprint.pb"))
        print(f"wrote {os.path.normpath(target)}: y = 0.5 * x + {b:g}")


def _drop_fingerprint_uuid(path: str) -> None:
    """The fingerprint carries a random UUID; clearing it makes reruns byte-identical."""
    from tensorflow.core.protobuf import fingerprint_pb2

    if not os.path.exists(path):
        return
    fingerprint = fingerprint_pb2.FingerprintDef()
    with open(path, "rb") as f:
        fingerprint.ParseFromString(f.read())
    fingerprint.ClearField("uuid")
    with open(path, "wb") as f:
        f.write(fingerprint.SerializeToString())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=DEFAULT_OUT, help="model base path (version dirs go inside)")
    args = parser.parse_args(argv)
    build(os.path.abspath(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
