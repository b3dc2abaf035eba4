"""Training of the shipped reconstructors (installed as ``kspace_attacks.adapters.training``).

- :mod:`.supervised`: i-RIM and ResUnet++ (``kspace-attacks train irim|resunetpp``);
- :mod:`.diffusion`: the diffusion reconstructor's score network (``kspace-attacks train
  diffusion``): train, tune the sampler, evaluate, export;
- :mod:`.common`: what both share (argument checks, checkpoints, logs, run facts).

Nothing is imported here, so ``import kspace_attacks.adapters.training`` stays cheap.
"""

