"""Reference task: hyperparameter optimisation through training as a recurrent network.

Figure 5 and Table 3 of Liao et al. (2018), after Maclaurin et al. (2015): SGD with momentum
on a 784-50-50-50-10 tanh network is a recurrent network whose state is ``(weights,
velocities)`` and whose learnable parameters are the 16 hyperparameters (one learning
rate and one momentum per weight matrix and per bias vector).

- :mod:`.sgd`: the network, the state vector and one training step ``h_{t+1} = F(h_t; theta, batch_t)``;
- :mod:`.hypergrad`: one meta step -- train ``T`` steps, the meta-loss and its gradient
  by BPTT, TBPTT or RBP with any rbpsolve solver (Neumann-RBP, RBP, CG-RBP, ...);
- :mod:`.data`: the 10,000 / 50,000 / 10,000 MNIST split of the paper's code;
- :mod:`.experiment`: the meta-optimisation loop (Adam) and the grid of the paper;
- :mod:`.report`: JSON, markdown table and the figures; :mod:`.cli`: the commands;
- :mod:`.tsne`: Figure 6, t-SNE of the training trajectories with the theta of chosen meta steps.
"""
