"""rbpsolve's asv suite. See benchmarks/README.md for how to run it."""
