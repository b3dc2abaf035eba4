"""Training of the shipped reconstructors (installed as ``kspace_attacks.adapters.training``).

- :mod:`.supervised`: i-RIM and ResUnet++ (``kspace-attacks train irim|resunetpp``);
- :mod:`.diffusion`: the diffusion reconstructor's score network (``kspace-attacks train
  diffusion``): train, tune the sampler, evaluate, export;
- :mod:`.common`: what both share (argument checks, checkpoints, logs, run facts).

Nothing is imported here, so ``import kspace_attacks.adapters.training`` stays cheap.
"""


def __getattr__(name: str):
    # 0.1 had the supervised trainer in this module (kspace_attacks.adapters.training.train):
    # its names keep working for one release, with a warning.
    import importlib
    import warnings

    supervised = importlib.import_module(".supervised", __name__)
    if hasattr(supervised, name) and not name.startswith("__"):
        warnings.warn(f"kspace_attacks.adapters.training.{name} is deprecated; use "
                      f"kspace_attacks.adapters.training.supervised.{name}", DeprecationWarning, stacklevel=2)
        return getattr(supervised, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
