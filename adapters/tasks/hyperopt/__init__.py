"""Reference task: hyperopt (see adapters/tasks/__init__.py)."""
