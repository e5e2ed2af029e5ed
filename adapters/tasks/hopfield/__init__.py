"""Reference task: hopfield (see adapters/tasks/__init__.py)."""
