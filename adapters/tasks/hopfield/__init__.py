"""Reference task 1: associative memory with a continuous Hopfield network (Table 1, Figs. 1-2 of Liao et al. 2018).

``model`` (the network and its update), ``patterns`` (binarised MNIST digits, corruption),
``methods`` (one gradient per training method), ``train`` (one run), ``reproduce`` (the grid,
JSON and table), ``figures`` (Figs. 1-2), ``stats`` (Wilson intervals, the paper's Table 1),
``cli`` (``rbpsolve task hopfield`` / ``rbpsolve reproduce hopfield``).
"""
