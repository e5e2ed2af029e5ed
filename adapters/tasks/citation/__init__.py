"""Reference task: citation (see adapters/tasks/__init__.py)."""
