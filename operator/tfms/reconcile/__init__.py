"""Orchestration: make Cloud Run match a TFModelService, through backend interfaces only."""
