"""Seeded random orders that are computed, not stored.

A region's candidates are taken in a random order across all of its files. Storing
that order would cost one integer per candidate per region; instead the order is a
keyed bijection on [0, n): a Feistel network on the smallest even number of bits
covering n, with cycle-walking to stay inside [0, n). Any subset of candidates can
be mapped independently (a worker maps only the candidates of its file), and the
same key always gives the same order.
"""

from __future__ import annotations

import hashlib

import numpy as np

_ROUNDS = 6
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def stream_key(seed: int, *labels: str) -> np.ndarray:
    """Round keys for a named stream: stable whatever other streams exist."""
    digest = hashlib.blake2b("\x1f".join(labels).encode(), digest_size=8).digest()
    sequence = np.random.SeedSequence([seed, int.from_bytes(digest, "little")])
    return sequence.generate_state(_ROUNDS, dtype=np.uint64)


def _mix(values: np.ndarray, key: np.uint64) -> np.ndarray:
    # splitmix64's finaliser: a fast, well-distributed 64-bit hash
    z = values ^ key
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def _half_bits(n: int) -> int:
    return max(1, (max(n - 1, 1).bit_length() + 1) // 2)


def _feistel(values: np.ndarray, keys: np.ndarray, half: int, inverse: bool) -> np.ndarray:
    mask = np.uint64((1 << half) - 1)
    shift = np.uint64(half)
    left, right = values >> shift, values & mask
    order = reversed(range(_ROUNDS)) if inverse else range(_ROUNDS)
    for round_index in order:
        if inverse:
            left, right = right ^ (_mix(left, keys[round_index]) & mask), left
        else:
            left, right = right, left ^ (_mix(right, keys[round_index]) & mask)
    return (left << shift) | right


def _walk(values: np.ndarray, n: int, keys: np.ndarray, inverse: bool) -> np.ndarray:
    half = _half_bits(n)
    result = _feistel(values.astype(np.uint64), keys, half, inverse)
    outside = np.flatnonzero(result >= np.uint64(n))
    # cycle-walking: the domain is at most 4n, so few elements need more than a few rounds
    while outside.size:
        result[outside] = _feistel(result[outside], keys, half, inverse)
        outside = outside[result[outside] >= np.uint64(n)]
    return result.astype(np.int64)


def permute(indices: np.ndarray, n: int, keys: np.ndarray) -> np.ndarray:
    """Position in the shuffled order of each candidate index in [0, n)."""
    if n <= 1:
        return np.zeros(len(indices), dtype=np.int64)
    return _walk(np.asarray(indices), n, keys, inverse=False)


def unpermute(positions: np.ndarray, n: int, keys: np.ndarray) -> np.ndarray:
    """Candidate index at each position of the shuffled order (inverse of `permute`)."""
    if n <= 1:
        return np.zeros(len(positions), dtype=np.int64)
    return _walk(np.asarray(positions), n, keys, inverse=True)
