"""Framework adapters and the paper's reference tasks, installed as ``rbpsolve.adapters``.

Each subpackage is the only place that imports its framework: ``rbpsolve.adapters.torch``
imports torch, ``rbpsolve.adapters.cupy`` cupy. Importing ``rbpsolve.adapters`` itself
imports neither.
"""
