"""Framework adapters and the paper's reference tasks, installed as ``rbpsolve.adapters``.

Each framework subpackage is the only place that imports its framework:
``rbpsolve.adapters.torch`` imports torch, ``rbpsolve.adapters.jax`` imports jax. Importing
``rbpsolve.adapters`` itself imports no framework.

cupy needs no adapter (there is no ``rbpsolve.adapters.cupy``): the core computes with
the array API standard through ``array_api_compat``, so cupy arrays (and numpy, torch,
JAX and array-API-strict arrays) work in every core entry point as they are. An adapter
is needed only for what the array API does not cover, such as autograd graphs.

Adapters import only :mod:`rbpsolve` and :mod:`rbpsolve.extending`, the documented
surface for them; a third-party adapter should do the same.
"""
