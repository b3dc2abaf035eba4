"""Attacks on reconstructors ``f(y, physics)``: one attack per module."""

from .base import Attack, Problem
from .fgm import FGM
from .gaussian_noise import GaussianNoise
from .pgd import PGD
from .projected_adam import ProjectedAdam

__all__ = ["Attack", "Problem", "PGD", "ProjectedAdam", "FGM", "GaussianNoise"]
