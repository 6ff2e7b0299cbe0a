"""Every random stream derived from a seed, named in this module, and seeded random orders
that are computed, not stored.

The streams: `stream_key` (a region's candidate order, per process key and region),
`output_shuffle` (the entry order inside each output file), `check_sample` (the rows `check`
compares with their sources), `synthetic_file` (the arrays of a generated input file) and
`event_draw` (the number that puts an event in a split). A
new stream needs a new name here; an existing one must not change, or the same plan and seed
stop giving the same files.

A region's candidates are taken in a random order across all of its files. Storing
that order would cost one integer per candidate per region; instead the order is a
keyed bijection on [0, n): a Feistel network on the smallest even number of bits
covering n, with cycle-walking to stay inside [0, n). Any subset of candidates can
be mapped independently (a worker maps only the candidates of its file), and the
same key always gives the same order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

_ROUNDS = 6
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


_OUTPUT_SHUFFLE = 0x5EED
_CHECK_SAMPLE = 0xC8EC
_EVENT_DRAW = 0x5B17


def output_shuffle(seed: int, file_index: int) -> np.random.Generator:
    """The generator that shuffles the entries of output file `file_index`."""
    return np.random.default_rng([seed, file_index, _OUTPUT_SHUFFLE])


def check_sample(seed: int) -> np.random.Generator:
    """The generator that picks the rows `check` compares with their source entries."""
    return np.random.default_rng([seed, _CHECK_SAMPLE])


def synthetic_file(seed: int, sample_index: int, file_index: int) -> np.random.Generator:
    """The generator of a synthetic input file's arrays (`generate --seed`)."""
    return np.random.default_rng([seed, sample_index, file_index])


def event_draw(seed: int, identity: Sequence[np.ndarray]) -> np.ndarray:
    """A number in [0, 1) for every candidate, a pure function of the seed and its event's
    identity (`run`, `lumi`, `evt` ...): every candidate of an event draws the same number,
    whichever file holds it and whatever else is counted."""
    key = np.random.SeedSequence([seed, _EVENT_DRAW]).generate_state(1, dtype=np.uint64)[0]
    n = len(identity[0]) if identity else 0
    hashed = np.full(n, key, dtype=np.uint64)
    for column in identity:
        hashed = _mix(_as_bits(np.asarray(column)), hashed)
    draw: np.ndarray = (hashed >> np.uint64(11)).astype(np.float64) * 2.0**-53
    return draw


def _as_bits(values: np.ndarray) -> np.ndarray:
    """64 bits standing for each value: integers as themselves, floats by their bits."""
    if values.dtype.kind == "f":
        return values.astype(np.float64).view(np.uint64)
    return values.astype(np.uint64)


def stream_key(seed: int, *labels: str) -> np.ndarray:
    """Round keys for a named stream: stable whatever other streams exist."""
    digest = hashlib.blake2b("\x1f".join(labels).encode(), digest_size=8).digest()
    sequence = np.random.SeedSequence([seed, int.from_bytes(digest, "little")])
    return sequence.generate_state(_ROUNDS, dtype=np.uint64)


def _mix(values: np.ndarray, key: np.ndarray) -> np.ndarray:
    # splitmix64's finaliser: a fast, well-distributed 64-bit hash
    z = values ^ key
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    mixed: np.ndarray = z ^ (z >> np.uint64(31))
    return mixed


def _half_bits(n: np.ndarray) -> np.ndarray:
    """Half the bits of the smallest even-width domain covering [0, n), at least 1."""
    _, bits = np.frexp(np.maximum(n.astype(np.float64) - 1, 1))  # bit length of n - 1
    half: np.ndarray = np.maximum((bits.astype(np.uint64) + np.uint64(1)) // np.uint64(2), 1)
    return half


def _feistel(values: np.ndarray, keys: np.ndarray, half: np.ndarray, inverse: bool) -> np.ndarray:
    mask = (np.uint64(1) << half) - np.uint64(1)
    left, right = values >> half, values & mask
    order = reversed(range(_ROUNDS)) if inverse else range(_ROUNDS)
    for round_index in order:
        key = keys[..., round_index]
        if inverse:
            left, right = right ^ (_mix(left, key) & mask), left
        else:
            left, right = right, left ^ (_mix(right, key) & mask)
    joined: np.ndarray = (left << half) | right
    return joined


def _walk(values: np.ndarray, n: np.ndarray, keys: np.ndarray, inverse: bool) -> np.ndarray:
    """Feistel with cycle-walking; `n` and `keys` per element (or one for all)."""
    n = np.broadcast_to(np.asarray(n, dtype=np.uint64), values.shape)
    keys = np.broadcast_to(keys, (*values.shape, _ROUNDS))
    half = _half_bits(n)
    result = _feistel(values.astype(np.uint64), keys, half, inverse)
    outside = np.flatnonzero(result >= n)
    # cycle-walking: the domain is at most 4n, so few elements need more than a few rounds
    while outside.size:
        result[outside] = _feistel(result[outside], keys[outside], half[outside], inverse)
        outside = outside[result[outside] >= n[outside]]
    return result.astype(np.int64)


def permute(indices: np.ndarray, n: int | np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Position in the shuffled order of each candidate index in [0, n).

    `n` and `keys` may be given per index (shape (len,) and (len, rounds)): many
    streams' orders are then computed in one pass.
    """
    return _map(np.asarray(indices), n, keys, inverse=False)


def unpermute(positions: np.ndarray, n: int | np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Candidate index at each position of the shuffled order (inverse of `permute`)."""
    return _map(np.asarray(positions), n, keys, inverse=True)


def _map(values: np.ndarray, n: int | np.ndarray, keys: np.ndarray, inverse: bool) -> np.ndarray:
    sizes = np.broadcast_to(np.asarray(n, dtype=np.int64), values.shape)
    result = np.zeros(values.shape, dtype=np.int64)  # an order of 0 or 1 candidates is trivial
    active = np.flatnonzero(sizes > 1)
    if active.size:
        keys = keys if keys.ndim == 1 else keys[active]
        result[active] = _walk(values[active], sizes[active], keys, inverse)
    return result
