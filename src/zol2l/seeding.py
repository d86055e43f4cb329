"""Seeds derived from integer keys (an instance id, a trial, an epoch, a purpose).

``mix_seed(k1, k2, ..., salt=S)`` folds the keys left to right,
``seed <- (seed * 1_000_003 + k + S) mod M``: the same keys give the same seed on every
machine and process, and each user picks its own ``salt`` (and modulus), so that two users
of the same keys draw different streams.  The salts and moduli in use are part of what
stored results depend on: changing one changes those results.
"""

from __future__ import annotations

import torch

__all__ = ["mix_seed", "seeded_generator"]


def mix_seed(*keys: int, salt: int, modulus: int = 2**62) -> int:
    """A seed in ``[0, modulus)`` from integer ``keys``."""
    seed = 0
    for k in keys:
        seed = (seed * 1_000_003 + int(k) + salt) % modulus
    return seed


def seeded_generator(*keys: int, salt: int, modulus: int = 2**62) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with :func:`mix_seed` of ``keys``."""
    return torch.Generator().manual_seed(mix_seed(*keys, salt=salt, modulus=modulus))
