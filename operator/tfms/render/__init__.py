"""Pure builders: a TFModelService rendered as Cloud Run and Knative objects."""
