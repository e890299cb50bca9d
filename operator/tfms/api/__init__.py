"""The TFModelService resource: schema, defaults, validation, typed model and names."""
