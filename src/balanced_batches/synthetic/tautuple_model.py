"""The TauTuple model: physics models and the vectorised draws that fill a file.

Every file holds a TTree ``taus`` with one entry per tau candidate; several candidates share one
``(run, lumi, evt)``. The content of a file depends only on ``(seed, sample index, k)``: it is
drawn from ``shuffle.synthetic_file(seed, sample_index, k)`` in chunks of
:data:`CHUNK_ENTRIES` entries (:func:`generate_chunks`).

The branches and their types are in :mod:`.tautuple_schema`. Unmatched generator quantities hold
``-1`` (indices and ``genLepton_kind``) or TauTuple's default fill value ``-999`` (floats), so
every value is finite.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from ..errors import ConfigError
from ..shuffle import synthetic_file
from .samples import PHYSICS_KINDS, SAMPLES, Sample
from .tautuple_schema import JAGGED_GROUPS, SCALAR_BRANCHES

__all__ = [
    "CHUNK_ENTRIES",
    "PHYSICS_MODELS",
    "GenerateOptionsError",
    "PhysicsModel",
    "Spectrum",
    "generate_chunks",
]

Array = npt.NDArray[Any]

CHUNK_ENTRIES = 20_000
"""Entries drawn and written (one ``extend``, one basket per branch) at a time."""
PT_MIN, PT_JET_MAX, PT_MAX, ETA_MAX = 15.0, 3000.0, 7000.0, 2.8
DEFAULT = -999.0  # TauTuple's DefaultFillValue<float>()
_EVENTS_PER_FILE = 1_000_000_000  # evt = k * _EVENTS_PER_FILE + running event number

# Candidate classes: 0 = jet (genLepton_index == -1), 1..6 = genLepton_kind (PromptElectron,
# PromptMuon, TauDecayedToElectron, TauDecayedToMuon, TauDecayedToHadrons, Other).
_N_CLASSES = 7
_DM_VALUES = np.array([0, 1, 2, 5, 6, 7, 10, 11])
_DM_PROBS = np.array(
    [  # per class, over _DM_VALUES
        [0.20, 0.25, 0.05, 0.08, 0.07, 0.05, 0.20, 0.10],
        [0.55, 0.40, 0.03, 0.01, 0.01, 0.00, 0.00, 0.00],
        [0.90, 0.08, 0.01, 0.005, 0.005, 0.00, 0.00, 0.00],
        [0.55, 0.40, 0.03, 0.01, 0.01, 0.00, 0.00, 0.00],
        [0.90, 0.08, 0.01, 0.005, 0.005, 0.00, 0.00, 0.00],
        [0.25, 0.45, 0.06, 0.02, 0.02, 0.01, 0.14, 0.05],
        [0.20, 0.25, 0.05, 0.08, 0.07, 0.05, 0.20, 0.10],
    ]
)
_DM_MASS = np.array([0.13957, 0.75, 0.85, 0.9, 1.0, 1.1, 1.1, 1.25])
_DM_MASS_WIDTH = np.array([0.0, 0.15, 0.15, 0.2, 0.2, 0.2, 0.15, 0.2])
_GEN_RESPONSE_WIDTH = np.array([0.0, 0.03, 0.02, 0.08, 0.06, 0.10, 0.20])
_GEN_LEPTON_MASS = np.array([0.0, 0.000511, 0.10566, 0.000511, 0.10566, 0.0, 0.0])
_GENJET_PROB = np.array([0.90, 0.85, 0.30, 0.85, 0.30, 0.95, 0.80])
# DeepTau raw scores: Beta(a, b) per class, and working-point thresholds for the bit masks.
_DEEPTAU_BETA = {
    "VSjet": ([0.7, 2.0, 2.0, 3.0, 3.0, 6.0, 1.2], [5.0, 2.0, 2.0, 1.5, 1.5, 1.0, 3.0]),
    "VSe": ([5.0, 0.5, 6.0, 0.8, 6.0, 4.0, 5.0], [1.0, 6.0, 1.0, 4.0, 1.0, 1.2, 1.0]),
    "VSmu": ([6.0, 6.0, 0.5, 6.0, 0.8, 6.0, 6.0], [1.0, 1.0, 8.0, 1.0, 4.0, 1.0, 1.0]),
}
_DEEPTAU_WPS = np.array([0.26, 0.42, 0.60, 0.70, 0.80, 0.87, 0.92, 0.955])
# PF candidate particleType (TauMLTools): 1 h+-, 2 e, 3 mu, 4 gamma, 5 h0.
_PF_ISO_TYPE_CUM = np.cumsum([0.45, 0.01, 0.01, 0.33, 0.20])
_PF_MASS = np.array([0.0, 0.13957, 0.000511, 0.10566, 0.0, 0.0])
_PILEUP = {"NoPU": 0.0, "PU140": 140.0, "PU200": 200.0}


@dataclass(frozen=True)
class Spectrum:
    """A tau_pt spectrum above ``PT_MIN``: ``pareto`` (index ``a``, truncated at PT_JET_MAX),
    ``gamma`` (shape ``a``, scale ``b`` GeV, shifted by PT_MIN) or ``loguniform`` (up to ``a``)."""

    kind: Literal["pareto", "gamma", "loguniform"]
    a: float
    b: float = 0.0


@dataclass(frozen=True)
class PhysicsModel:
    """How one physics kind fills the tree.

    Attributes:
        class_fractions: relative rates of jets and genLepton kinds 1..6 (7 numbers).
        lepton_pt: spectrum of candidates matched to a genLepton of kind 1..5.
        jet_index: power-law index of the spectrum of jets and kind-6 candidates.
        extra_candidates: Poisson mean of candidates per event beyond the first.
        eta_shape: Beta(a, a) shape of ``(eta / ETA_MAX + 1) / 2``; 1 is flat in eta.
        negative_weights: fraction of events with genEventWeight -1 (NLO generators).
    """

    class_fractions: tuple[float, float, float, float, float, float, float]
    lepton_pt: Spectrum
    jet_index: float
    extra_candidates: float
    eta_shape: float = 1.3
    negative_weights: float = 0.0


_Z_LIKE = Spectrum("gamma", 2.5, 12.0)
PHYSICS_MODELS: dict[str, PhysicsModel] = {
    "DY": PhysicsModel((0.40, 0.20, 0.20, 0.02, 0.02, 0.13, 0.03), _Z_LIKE, 3.0, 1.0),
    "TT": PhysicsModel(
        (0.70, 0.07, 0.07, 0.01, 0.01, 0.10, 0.04), Spectrum("gamma", 2.0, 25), 2.5, 3
    ),
    "QCD": PhysicsModel((0.965, 0.004, 0.004, 0.0, 0.0, 0.002, 0.025), _Z_LIKE, 2.0, 3.0),
    "WJets": PhysicsModel(
        (0.92, 0.02, 0.02, 0.002, 0.002, 0.016, 0.02), _Z_LIKE, 2.8, 1.5, negative_weights=0.15
    ),
    "ElecGun": PhysicsModel(
        (0.10, 0.85, 0.0, 0.0, 0.0, 0.0, 0.05), Spectrum("loguniform", 500.0), 3.0, 0.3, 1.0
    ),
    "MuonGun": PhysicsModel(
        (0.05, 0.0, 0.92, 0.0, 0.0, 0.0, 0.03), Spectrum("loguniform", 1000.0), 3.0, 0.3, 1.0
    ),
    "ZprimeEE": PhysicsModel(
        (0.45, 0.50, 0.0, 0.0, 0.0, 0.0, 0.05), Spectrum("gamma", 2.0, 800.0), 2.5, 1.5, 1.6
    ),
    "ZprimeMuMu": PhysicsModel(
        (0.45, 0.0, 0.50, 0.0, 0.0, 0.0, 0.05), Spectrum("gamma", 2.0, 800.0), 2.5, 1.5, 1.6
    ),
    "ZprimeTauTau": PhysicsModel(
        (0.25, 0.01, 0.01, 0.03, 0.03, 0.65, 0.02), Spectrum("gamma", 2.0, 150.0), 2.5, 1.5, 1.6
    ),
    "HTauTau": PhysicsModel((0.40, 0.01, 0.01, 0.03, 0.03, 0.48, 0.04), _Z_LIKE, 2.8, 1.5),
    "MinBias": PhysicsModel((0.95, 0.01, 0.01, 0.0, 0.0, 0.0, 0.03), _Z_LIKE, 3.5, 0.2),
}
"""Physics model of every ``Sample.physics`` key."""


class GenerateOptionsError(ConfigError, ValueError):
    """Invalid generator options (a ValueError, and a ConfigError for the CLI).

    Defined here, where :func:`generate_chunks` raises it for a sample outside the catalogue, so
    that this module does not import :mod:`.generate`; re-exported there.
    """


def generate_chunks(
    sample: Sample,
    n_entries: int,
    seed: int,
    *,
    file_index: int = 1,
    chunk_entries: int | None = None,
) -> Iterator[dict[str, Any]]:
    """The arrays of one file, chunk by chunk: scalar branches as numpy arrays, jagged groups
    as awkward record arrays (the mapping ``TTree.extend`` takes).

    Chunks hold ``chunk_entries`` entries (:data:`CHUNK_ENTRIES` if None); the chunk size is
    part of what determines the content, since every chunk is drawn as a whole.
    """
    import awkward as ak

    if chunk_entries is None:
        chunk_entries = CHUNK_ENTRIES
    if chunk_entries < 1:
        raise ValueError(f"chunk_entries must be >= 1, got {chunk_entries}")
    if sample not in SAMPLES:
        raise GenerateOptionsError(f"sample {sample.directory!r} is not in the catalogue")
    sample_index = SAMPLES.index(sample)
    rng = synthetic_file(seed, sample_index, file_index)
    ids = {"dataset_id": sample_index, "dataset_group_id": PHYSICS_KINDS.index(sample.physics)}
    first_entry = first_event = 0
    while first_entry < n_entries:
        n = min(chunk_entries, n_entries - first_entry)
        columns, counts, n_events = _draw_chunk(rng, sample, n)
        columns["entry_index"] = np.arange(first_entry, first_entry + n)
        event = columns.pop("_event") + first_event + 1
        columns["evt"] = file_index * _EVENTS_PER_FILE + event
        columns["lumi"] = (file_index - 1) * (_EVENTS_PER_FILE // 200) + event // 200 + 1
        columns["run"] = np.ones(n)
        for name, value in ids.items():
            columns[name] = np.full(n, value)
        chunk: dict[str, Any] = {
            name: np.asarray(columns[name], dtype=dtype) for name, dtype in SCALAR_BRANCHES.items()
        }
        for group, fields in JAGGED_GROUPS.items():
            record = ak.zip(
                {f: np.asarray(columns[f"{group}_{f}"], dtype=t) for f, t in fields.items()}
            )
            chunk[group] = ak.unflatten(record, counts[group])
        yield chunk
        first_entry += n
        first_event += n_events


def _draw_chunk(
    rng: np.random.Generator, sample: Sample, n: int
) -> tuple[dict[str, Array], dict[str, Array], int]:
    """Flat columns of ``n`` candidates, counts per jagged group, and the number of events."""
    model = PHYSICS_MODELS[sample.physics]
    cols, event, starts = _draw_events(rng, model, _PILEUP[sample.pileup], n)
    cls = np.minimum(
        np.searchsorted(
            np.cumsum(model.class_fractions) / sum(model.class_fractions), rng.random(n), "right"
        ),
        _N_CLASSES - 1,
    )
    lepton_like = (cls >= 1) & (cls <= 5)
    pt = np.where(
        lepton_like,
        _draw_pt(rng, model.lepton_pt, n),
        _draw_pt(rng, Spectrum("pareto", model.jet_index), n),
    )
    eta = ETA_MAX * (2.0 * rng.beta(model.eta_shape, model.eta_shape, n) - 1.0)
    phi = rng.uniform(-np.pi, np.pi, n)
    dm_cum = np.cumsum(_DM_PROBS / _DM_PROBS.sum(axis=1, keepdims=True), axis=1)[cls]
    dm_idx = np.minimum((rng.random(n)[:, None] >= dm_cum).sum(axis=1), len(_DM_VALUES) - 1)
    jetlike = cls % 6 == 0  # jets and kind 6 (Other)
    mass = _DM_MASS[dm_idx] + _DM_MASS_WIDTH[dm_idx] * (1 + jetlike) * rng.normal(size=n)
    prongs = np.array([1, 1, 1, 2, 2, 2, 3, 3])[dm_idx]
    sign = rng.choice(np.array([-1, 1]), n)
    cols["tau_index"] = _rank_in_event(np.ones(n, bool), event, starts)
    cols |= {"tau_pt": pt, "tau_eta": eta, "tau_phi": phi, "tau_mass": np.clip(mass, 0.13957, 3)}
    cols["tau_charge"] = np.where(prongs == 2, np.where(rng.random(n) < 0.7, 0, 2 * sign), sign)
    cols["tau_decayMode"] = _DM_VALUES[dm_idx]
    cols["tau_n_charged_prongs"], cols["tau_n_neutral_prongs"] = prongs, _DM_VALUES[dm_idx] % 5
    cols["tau_decayModeFinding"] = np.isin(_DM_VALUES[dm_idx], [0, 1, 2, 10])
    cols["tau_decayModeFindingNewDMs"] = np.ones(n)
    cols |= _draw_truth(rng, cls, pt, eta, phi, cols["tau_mass"], event, starts)
    cols |= _draw_tau_features(rng, cls, cols)
    counts = _draw_candidates(rng, cls, cols)
    cols["_event"] = event
    return cols, counts, int(event[-1]) + 1


def _draw_events(
    rng: np.random.Generator, model: PhysicsModel, mean_pu: float, n: int
) -> tuple[dict[str, Array], Array, Array]:
    """Event-level columns broadcast to candidates, event number and first entry of each event."""
    sizes = 1 + rng.poisson(model.extra_candidates, n)
    ends = np.cumsum(sizes)
    n_events = int(np.searchsorted(ends, n)) + 1
    event = np.repeat(np.arange(n_events), sizes[:n_events])[:n]
    starts = np.concatenate(([0], ends[: n_events - 1]))
    npu = rng.poisson(mean_pu, n_events).astype(np.float64)
    npv = 1 + rng.binomial(npu.astype(np.int64), 0.65)
    rho = np.maximum(1.0 + 0.55 * npu + rng.normal(0.0, 1.0 + 0.05 * npu), 0.0)
    weight = np.where(rng.random(n_events) < model.negative_weights, -1.0, 1.0)
    per_event = {"npu": npu, "npv": npv, "rho": rho, "genEventWeight": weight}
    cols = {name: values[event] for name, values in per_event.items()}
    cols |= {"trainingWeight": np.ones(n), "sampleType": np.zeros(n)}
    return cols, event, starts


def _draw_pt(rng: np.random.Generator, spectrum: Spectrum, n: int) -> Array:
    """Transverse momenta in GeV, all >= PT_MIN and finite."""
    u = rng.random(n)
    if spectrum.kind == "pareto":
        tail = 1.0 - (PT_JET_MAX / PT_MIN) ** -spectrum.a
        return np.asarray(PT_MIN * (1.0 - u * tail) ** (-1.0 / spectrum.a))
    if spectrum.kind == "gamma":
        return np.minimum(PT_MIN + rng.gamma(spectrum.a, spectrum.b, n), PT_MAX)
    if spectrum.kind == "loguniform":
        return np.asarray(PT_MIN * (spectrum.a / PT_MIN) ** u)
    raise ValueError(f"unknown spectrum kind {spectrum.kind!r}")


def _rank_in_event(flags: Array, event: Array, starts: Array) -> Array:
    """Index among the flagged candidates of the same event (-1 where not flagged)."""
    before = np.cumsum(flags) - flags
    return np.where(flags, before - before[starts][event], -1)


def _wrap(phi: Array) -> Array:
    """Angles folded into [-pi, pi)."""
    return np.asarray((phi + np.pi) % (2 * np.pi) - np.pi)


def _draw_truth(
    rng: np.random.Generator,
    cls: Array,
    pt: Array,
    eta: Array,
    phi: Array,
    mass: Array,
    event: Array,
    starts: Array,
) -> dict[str, Array]:
    """genLepton_* and genJet_* columns."""
    n = len(cls)
    matched = cls > 0
    response = np.clip(rng.normal(1.0, _GEN_RESPONSE_WIDTH[cls]), 0.5, 1.5)
    vis_pt = pt / response
    vis_mass = np.where(cls == 5, np.clip(mass * rng.normal(1.0, 0.05, n), 0.13957, 1.777), 0.0)
    vis_mass = np.where(cls == 6, rng.uniform(0.0, 1.5, n), vis_mass + _GEN_LEPTON_MASS[cls])
    has_jet = rng.random(n) < _GENJET_PROB[cls]
    jet_pt = np.where(
        cls % 6 == 0, pt * rng.uniform(1.05, 2.0, n), vis_pt * rng.normal(1.05, 0.05, n)
    )
    gen = {
        "genLepton_index": _rank_in_event(matched, event, starts),
        "genLepton_kind": np.where(matched, cls, -1),
        "genLepton_vis_pt": vis_pt,
        "genLepton_vis_eta": eta + rng.normal(0.0, 0.01, n),
        "genLepton_vis_phi": _wrap(phi + rng.normal(0.0, 0.01, n)),
        "genLepton_vis_mass": vis_mass,
        "genLepton_lastMotherIndex": np.where(matched, rng.integers(0, 12, n), -1),
    }
    gen = {k: np.where(matched, v, DEFAULT) if v.dtype.kind == "f" else v for k, v in gen.items()}
    jet = {
        "genJet_pt": jet_pt,
        "genJet_eta": eta + rng.normal(0.0, 0.03, n),
        "genJet_phi": _wrap(phi + rng.normal(0.0, 0.03, n)),
        "genJet_mass": jet_pt * rng.uniform(0.03, 0.15, n),
    }
    jet = {k: np.where(has_jet, v, DEFAULT) for k, v in jet.items()}
    return gen | jet | {"genJet_index": _rank_in_event(has_jet, event, starts)}


def _beta_by_class(rng: np.random.Generator, cls: Array, a: list[float], b: list[float]) -> Array:
    """One Beta(a[c], b[c]) draw per candidate of class c."""
    return rng.beta(np.asarray(a)[cls], np.asarray(b)[cls])


def _draw_tau_features(
    rng: np.random.Generator, cls: Array, cols: dict[str, Array]
) -> dict[str, Array]:
    """Isolation, tau-ID scores, impact parameters, secondary vertex and shape variables."""
    n = len(cls)
    pt, eta, phi, npu = cols["tau_pt"], cols["tau_eta"], cols["tau_phi"], cols["npu"]
    jetlike, is_tauh = cls % 6 == 0, cls == 5
    lifetime = is_tauh | (cls == 3) | (cls == 4)
    iso = np.where(jetlike, 2.0 + 0.08 * pt, 0.6) + 0.01 * npu
    charged, neutral = rng.exponential(iso), rng.exponential(0.7 * iso)
    pu_corr = rng.exponential(0.5 + 0.15 * npu)
    f: dict[str, Array] = {
        "tau_chargedIsoPtSum": charged,
        "tau_chargedIsoPtSumdR03": charged * rng.uniform(0.3, 1.0, n),
        "tau_footprintCorrection": rng.exponential(0.5, n),
        "tau_neutralIsoPtSum": neutral,
        "tau_neutralIsoPtSumWeight": neutral * rng.uniform(0.3, 1.0, n),
        "tau_neutralIsoPtSumdR03": neutral * rng.uniform(0.3, 1.0, n),
        "tau_photonPtSumOutsideSignalCone": rng.exponential(np.where(jetlike, 2.0, 0.5)),
        "tau_puCorrPtSum": pu_corr,
        "tau_byCombinedIsolationDeltaBetaCorrRaw3Hits": charged
        + np.maximum(neutral - 0.2 * pu_corr, 0),
    }
    for name, (a, b) in _DEEPTAU_BETA.items():
        raw = _beta_by_class(rng, cls, a, b)
        f[f"tau_byDeepTau2017v2p1{name}raw"] = raw
        f[f"tau_byDeepTau2017v2p1{name}"] = (
            (raw[:, None] > _DEEPTAU_WPS) << np.arange(len(_DEEPTAU_WPS))
        ).sum(axis=1)
    vsjet = f["tau_byDeepTau2017v2p1VSjetraw"]
    f["tau_byIsolationMVArun2017v2DBoldDMwLTraw2017"] = np.clip(
        2 * vsjet - 1 + rng.normal(0, 0.2, n), -1, 1
    )
    sign = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    dxy = np.where(
        lifetime, sign * rng.exponential(0.004, n), rng.normal(0.0, np.where(jetlike, 0.01, 0.002))
    )
    dxy_error = 0.001 + 0.02 / pt * rng.uniform(0.5, 1.5, n)
    f |= {
        "tau_dxy": dxy,
        "tau_dxy_error": dxy_error,
        "tau_ip3d": dxy * rng.uniform(1.0, 1.6, n),
        "tau_ip3d_error": dxy_error * rng.uniform(1.0, 1.5, n),
        "tau_dz": rng.normal(0.0, np.where(jetlike, 0.02, 0.005)),
        "tau_dz_error": dxy_error * rng.uniform(1.0, 2.0, n),
        "tau_dxy_pca_x": -dxy * np.sin(phi),
        "tau_dxy_pca_y": dxy * np.cos(phi),
        "tau_dxy_pca_z": rng.normal(0.0, 3.5, n),
    }
    has_sv = (cols["tau_n_charged_prongs"] == 3) & (rng.random(n) < np.where(is_tauh, 0.8, 0.3))
    boost = pt * np.cosh(eta) / 1.777
    length = np.where(is_tauh, rng.exponential(0.0087 * boost), rng.exponential(0.01, n))
    theta = 2.0 * np.arctan(np.exp(-eta))
    flight = {
        "x": length * np.sin(theta) * np.cos(phi),
        "y": length * np.sin(theta) * np.sin(phi),
        "z": length * np.cos(theta),
    }
    sv = {
        **{f"tau_flightLength_{c}": v for c, v in flight.items()},
        **{f"tau_sv_{c}": v + rng.normal(0.0, 0.002, n) for c, v in flight.items()},
        "tau_flightLength_sig": length / (0.002 + rng.exponential(0.003, n)),
        "tau_gj_angle_diff": rng.exponential(0.01, n),
    }
    f |= {k: np.where(has_sv, v, DEFAULT) for k, v in sv.items()}
    f["tau_hasSecondaryVertex"] = has_sv
    has_pi0 = cols["tau_n_neutral_prongs"] > 0
    spread = 1.0 + 2.0 * jetlike
    e_ratio = _beta_by_class(rng, cls, [2, 8, 1, 8, 1, 2, 2], [3, 1, 6, 1, 6, 3, 3])
    f |= {
        "tau_pt_weighted_deta_strip": np.where(has_pi0, rng.exponential(0.01 * spread), 0.0),
        "tau_pt_weighted_dphi_strip": np.where(has_pi0, rng.exponential(0.02 * spread), 0.0),
        "tau_pt_weighted_dr_signal": rng.exponential(0.02 * spread),
        "tau_pt_weighted_dr_iso": rng.exponential(0.05 * spread),
        "tau_leadingTrackNormChi2": rng.gamma(2.0, 0.5, n),
        "tau_e_ratio": e_ratio,
        "tau_emFraction": np.clip(e_ratio + rng.normal(0.0, 0.05, n), 0.0, 1.0),
        "tau_n_photons": np.where(has_pi0, 1 + rng.poisson(1.5, n), rng.poisson(0.3, n)),
        "tau_inside_ecal_crack": (np.abs(eta) > 1.46) & (np.abs(eta) < 1.558),
        "tau_leadChargedCand_etaAtEcalEntrance": eta + rng.normal(0.0, 0.005, n),
    }
    return f


def _draw_candidates(
    rng: np.random.Generator, cls: Array, cols: dict[str, Array]
) -> dict[str, Array]:
    """Flat pfCand_*, ele_* and muon_* columns (added to ``cols``); returns the counts per group."""
    n = len(cls)
    jetlike = cls % 6 == 0
    is_e, is_mu = (cls == 1) | (cls == 3), (cls == 2) | (cls == 4)
    counts = {
        "pfCand": 15 + rng.binomial(45, np.clip(0.2 + 0.0012 * cols["npu"] + 0.12 * jetlike, 0, 1)),
        "ele": is_e + rng.binomial(2, 0.05 + 0.05 * jetlike),
        "muon": is_mu + rng.binomial(2, 0.03 + 0.03 * jetlike),
    }
    owner, local = {}, {}
    for group, count in counts.items():
        owner[group] = np.repeat(np.arange(n), count)
        local[group] = np.arange(len(owner[group])) - np.repeat(np.cumsum(count) - count, count)
    o, i, total = owner["pfCand"], local["pfCand"], len(owner["pfCand"])
    prongs, n_signal = (
        cols["tau_n_charged_prongs"][o],
        (cols["tau_n_charged_prongs"] + cols["tau_n_neutral_prongs"])[o],
    )
    signal = i < n_signal
    lead_type = np.where(is_e, 2, np.where(is_mu, 3, 1))[o]
    ptype = np.where(i == 0, lead_type, np.where(i < prongs, 1, 4))
    ptype = np.where(
        signal,
        ptype,
        1 + np.searchsorted(_PF_ISO_TYPE_CUM, rng.random(total) * _PF_ISO_TYPE_CUM[-1], "right"),
    )
    charged = ptype <= 3
    owner_pt = cols["tau_pt"][o]
    width = np.where(signal, 0.03, 0.25)
    from_pv = np.where(signal, 3, rng.choice(np.array([0, 1, 2, 3]), total, p=[0.3, 0.2, 0.2, 0.3]))
    cols |= {
        "pfCand_pt": np.where(
            signal,
            owner_pt * rng.uniform(0.4, 1.6, total) / n_signal,
            0.5 + rng.exponential(1.0 + 0.01 * owner_pt),
        ),
        "pfCand_eta": cols["tau_eta"][o] + rng.normal(0.0, width),
        "pfCand_phi": _wrap(cols["tau_phi"][o] + rng.normal(0.0, width)),
        "pfCand_mass": _PF_MASS[ptype],
        "pfCand_charge": np.where(charged, np.where(rng.random(total) < 0.5, -1, 1), 0),
        "pfCand_particleType": ptype,
        "pfCand_pvAssociationQuality": rng.choice(
            np.array([0, 1, 4, 5, 6, 7]), total, p=[0.1, 0.1, 0.1, 0.2, 0.2, 0.3]
        ),
        "pfCand_fromPV": from_pv,
        "pfCand_puppiWeight": np.where(charged & (from_pv >= 2), 1.0, rng.beta(2.0, 2.0, total)),
        "pfCand_dxy": np.where(charged, rng.normal(0.0, 0.01, total), DEFAULT),
        "pfCand_dz": np.where(charged, rng.normal(0.0, np.where(signal, 0.01, 0.5)), DEFAULT),
        "pfCand_hcalFraction": np.where(
            ptype == 5,
            rng.uniform(0.7, 1.0, total),
            np.where(ptype == 1, rng.uniform(0.0, 0.5, total), 0.0),
        ),
        "pfCand_rawCaloFraction": np.where(ptype == 1, rng.uniform(0.0, 1.2, total), 0.0),
        "pfCand_tauSignal": signal,
        "pfCand_tauIso": ~signal & (i < n_signal + 15),
        "pfCand_lostInnerHits": np.where(
            charged, rng.choice(np.array([-1, 0, 1, 2]), total, p=[0.8, 0.15, 0.04, 0.01]), 0
        ),
        "pfCand_numberOfPixelHits": np.where(charged, rng.integers(3, 9, total), 0),
    }
    for group, matched, mass in (("ele", is_e, 0.000511), ("muon", is_mu, 0.10566)):
        o, m = owner[group], len(owner[group])
        first = (local[group] == 0) & matched[o]
        pt = np.where(
            first, cols["tau_pt"][o] * rng.normal(1.0, 0.03, m), 1.0 + rng.exponential(5.0, m)
        )
        width = np.where(first, 0.005, 0.2)
        eta = cols["tau_eta"][o] + rng.normal(0.0, width)
        cols |= {
            f"{group}_pt": pt,
            f"{group}_eta": eta,
            f"{group}_phi": _wrap(cols["tau_phi"][o] + rng.normal(0.0, width)),
            f"{group}_mass": np.full(m, mass),
        }
    m = len(owner["ele"])
    cols["ele_cc_ele_energy"] = (
        cols["ele_pt"] * np.cosh(cols["ele_eta"]) * rng.uniform(0.85, 1.0, m)
    )
    cols["ele_gsfTrack_normalizedChi2"] = rng.gamma(2.0, 0.8, m)
    m = len(owner["muon"])
    cols["muon_dxy"] = rng.normal(0.0, 0.002, m)
    cols["muon_numberOfValidHits"] = rng.integers(10, 45, m)
    return counts
