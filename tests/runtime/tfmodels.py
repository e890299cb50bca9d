"""Small SavedModels built with tensorflow in a subprocess, once, into the test cache.

One build makes every model the parity and pre-flight suites need (the operator-side tests
must not import tensorflow themselves). The cache key is a hash of the build script, so a
changed script rebuilds.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.models import cache_dir

BUILD = r'''
import os, sys
import numpy as np
import tensorflow as tf

out = sys.argv[1]
tf1 = tf.compat.v1

# strings: DT_STRING in, text and binary (_bytes) strings out.
class Strings(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def serve(self, text):
        return {"upper": tf.strings.upper(text), "length": tf.strings.length(text),
                "text_bytes": tf.strings.join([text, "\x00\xff"])}

m = Strings()
tf.saved_model.save(m, os.path.join(out, "strings", "1"), signatures={"serving_default": m.serve})

# multi: several inputs of different dtypes, several outputs.
class Multi(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="a"),
                                  tf.TensorSpec([None], tf.int64, name="n"),
                                  tf.TensorSpec([None], tf.string, name="tag")])
    def serve(self, a, n, tag):
        return {"score": tf.reduce_sum(a, axis=1), "bucket_plus_one": n + 1,
                "echo_bytes": tag, "upper": tf.strings.upper(tag)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def inconsistent(self, x):
        return {"y": x * 2.0, "total": tf.reduce_sum(x, keepdims=True)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.bool, name="b")])
    def negate(self, b):
        return {"not_b": tf.logical_not(b)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float64, name="d")])
    def doubles(self, d):
        return {"third": d / 3.0, "inv": 1.0 / d}

m = Multi()
tf.saved_model.save(m, os.path.join(out, "multi", "1"), signatures={
    "serving_default": m.serve, "inconsistent": m.inconsistent, "negate": m.negate, "doubles": m.doubles})

# examples: an estimator-style graph fed serialized tf.Examples, with classify, regress and
# predict signatures (TF Serving's classifier/regressor contract: one DT_STRING input "inputs").
def examples_model(path):
    graph = tf.Graph()
    with graph.as_default():
        serialized = tf1.placeholder(tf.string, [None], name="tf_example")
        feats = tf1.parse_example(serialized, {"x": tf1.FixedLenFeature([1], tf.float32, default_value=[0.0]),
                                               "w": tf1.FixedLenFeature([1], tf.float32, default_value=[1.0])})
        x = feats["x"] * feats["w"]
        prob = tf.sigmoid(x)
        scores = tf.concat([1.0 - prob, prob], axis=1)
        batch = tf.shape(serialized)[0]
        classes = tf.tile(tf.constant([["neg", "pos"]]), [batch, 1])
        regression = 2.0 * x + 1.0
        info = tf1.saved_model.utils.build_tensor_info
        sigs = {
            "serving_default": tf1.saved_model.classification_signature_def(serialized, classes, scores),
            "classify_scores_only": tf1.saved_model.signature_def_utils.build_signature_def(
                {"inputs": info(serialized)}, {"scores": info(scores)}, "tensorflow/serving/classify"),
            "regress": tf1.saved_model.regression_signature_def(serialized, regression),
            "predict": tf1.saved_model.predict_signature_def({"examples": serialized}, {"y": regression}),
        }
        with tf1.Session(graph=graph) as sess:
            builder = tf1.saved_model.Builder(path)
            builder.add_meta_graph_and_variables(sess, ["serve"], signature_def_map=sigs)
            builder.save()

examples_model(os.path.join(out, "examples", "1"))

# doubler with warmup records (a valid file and a broken one) and with a TF2 default signature.
class Doubler(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def serve(self, x):
        return {"y": 2.0 * x}

sys.path.insert(0, sys.argv[2])
from tfms.runtime.warmup import PredictionLog

def warmup_file(path, inputs_by_record):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for inputs in inputs_by_record:
            log = PredictionLog()
            for name, value in inputs.items():
                log.predict_log.request.inputs[name] = tf.make_tensor_proto(value).SerializeToString()
            log.predict_log.request.model_spec.name = "doubler"
            writer.write(log.SerializeToString())

for name, records in (("warmup", [{"x": np.array([1.0, 2.0], np.float32)}] * 3),
                      ("badwarmup", [{"nope": np.array([1.0], np.float32)}])):
    d = Doubler()
    path = os.path.join(out, name, "1")
    tf.saved_model.save(d, path, signatures={"serving_default": d.serve})
    warmup_file(os.path.join(path, "assets.extra", "tf_serving_warmup_requests"), records)

# nodefault: no serving_default signature (B-031); train: no "serve" tag set.
d = Doubler()
tf.saved_model.save(d, os.path.join(out, "nodefault", "1"), signatures={"predict_images": d.serve})
graph = tf.Graph()
with graph.as_default():
    v = tf1.placeholder(tf.float32, [None], name="v")
    with tf1.Session(graph=graph) as sess:
        builder = tf1.saved_model.Builder(os.path.join(out, "train", "1"))
        builder.add_meta_graph_and_variables(sess, ["train"], signature_def_map={
            "serving_default": tf1.saved_model.predict_signature_def({"v": v}, {"w": v * 2.0})})
        builder.save()

# slow: half_plus_two's version 1 answer after a data-dependent busy loop (~120 ms a call here),
# the model version that got heavier and must be rolled back by latency analysis.
class Slow(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def serve(self, x):
        seed = tf.fill([64, 64], tf.reduce_mean(x) * 1e-3 + 1.0)  # depends on x: nothing to constant-fold
        def body(i, acc):
            return i + 1, tf.tanh(tf.matmul(acc, seed) / 64.0)
        _, acc = tf.while_loop(lambda i, a: i < 6000, body, (tf.constant(0), seed))
        return {"y": 0.5 * x + 2.0 + 0.0 * tf.reduce_sum(acc)}

m = Slow()
tf.saved_model.save(m, os.path.join(out, "slow", "1"), signatures={"serving_default": m.serve})
'''

NAMES = ("strings", "multi", "examples", "warmup", "badwarmup", "nodefault", "train", "slow")


def zoo() -> Path:
    """The directory holding every model above as `<name>/1/` (built on first use)."""
    key = hashlib.sha256(BUILD.encode()).hexdigest()[:12]
    root = cache_dir() / f"tfms-zoo-{key}"
    if all((root / n / "1").is_dir() for n in NAMES):
        return root
    staging = root.with_name(root.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    operator = Path(__file__).resolve().parents[2] / "operator"
    subprocess.run([sys.executable, "-c", BUILD, str(staging), str(operator)], check=True, capture_output=True,
                   timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""})
    shutil.rmtree(root, ignore_errors=True)
    staging.rename(root)
    return root
