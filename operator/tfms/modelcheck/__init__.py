"""Model pre-flight: what TF Serving will find at a model base path, read without tensorflow.

Pure: file contents arrive through a `ModelReader` (local directories and gs:// buckets
live in `tfms.backends.storage`), and `saved_model.pb` is decoded with protobuf message
types built here from descriptors, so the operator process never imports tensorflow.
"""
