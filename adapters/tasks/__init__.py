"""The three reference tasks of Liao et al. (2018), and their data loaders.

``hopfield``: associative memory with a continuous Hopfield network on MNIST (Table 1, Figs. 1-2);
``citation``: a GRU graph network on the Planetoid citation graphs (Table 2, Fig. 3);
``hyperopt``: hyperparameter optimisation through SGD as a recurrent network (Fig. 5, Table 3).
``data`` holds the loaders they share. ``ddp_deq`` is no paper task: a deep-equilibrium
classifier trained in DistributedDataParallel, whose per-sample adjoint solves need no
communication. The models import torch; this package itself does not.
"""
