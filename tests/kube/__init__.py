"""Tests against a real Kubernetes API server (k8s/README.md)."""
