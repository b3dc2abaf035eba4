"""Train and ship the diffusion reconstructor's score network (CPU friendly, resumable).

Reproduces the shipped ``adapters/weights/diffusion.{safetensors,json}``::

    nohup python benchmarks/train_diffusion.py --steps 6000 --threads 1 --out runs/diffusion \
        > runs/diffusion.log 2>&1 &
    python benchmarks/train_diffusion.py --skip-train --ship --out runs/diffusion

The first command trains (seeded; checkpoints every 250 steps, rerun to resume), the second
tunes the sampler defaults on the validation split, evaluates on the test split, times one
slice on 2 threads and writes the weights plus JSON. See
:func:`kspace_attacks.adapters.training.diffusion.main` for all options.
"""

import sys

import torch

from kspace_attacks.adapters.training.diffusion import main

if __name__ == "__main__":
    torch.set_flush_denormal(True)  # denormals made CPU steps 10-30x slower
    sys.exit(main(sys.argv[1:]))
