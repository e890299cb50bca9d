"""The `tfms` command line."""
