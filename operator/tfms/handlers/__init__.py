"""The thin kopf shell: the only package that imports kopf."""
