"""tfms benchmarks (issue 9): `python -m bench.run` runs them and prints a table.

Every figure is a ratio of two things measured side by side in the same run, because
absolute times on a shared 2-core machine drift. See BENCHMARKS.md.
"""
