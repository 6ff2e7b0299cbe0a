"""The TauTuple branch schema: the name and type of every branch of the ``taus`` tree.

Branch types are in :data:`BRANCH_TYPES`: the scalar branches (:data:`SCALAR_BRANCHES`, one value
per candidate) and the jagged groups (:data:`JAGGED_GROUPS`). Each jagged group is written from one
``ak.zip`` record; uproot 5.7 stores it as one shared ``int32`` counter branch ``n<group>``
(``npfCand``, ``nele``, ``nmuon``) plus one variable-length branch per field, named
``<group>_<field>`` (``pfCand_pt[npfCand]/F``, ...), not ``std::vector``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["BRANCH_TYPES", "JAGGED_GROUPS", "SCALAR_BRANCHES"]

_F4, _I4 = np.dtype(np.float32), np.dtype(np.int32)
_U2, _U4, _U8 = np.dtype(np.uint16), np.dtype(np.uint32), np.dtype(np.uint64)


def _schema(dtype: np.dtype[Any], names: str) -> dict[str, np.dtype[Any]]:
    """``{name: dtype}`` for every space-separated name."""
    return dict.fromkeys(names.split(), dtype)


SCALAR_BRANCHES: dict[str, np.dtype[Any]] = {
    **_schema(_U4, "run lumi"),
    "evt": _U8,
    "npv": _I4,
    **_schema(_F4, "npu rho genEventWeight trainingWeight"),
    **_schema(_I4, "sampleType dataset_id dataset_group_id entry_index"),
    **_schema(_I4, "genLepton_index genLepton_kind"),
    **_schema(_F4, "genLepton_vis_pt genLepton_vis_eta genLepton_vis_phi genLepton_vis_mass"),
    **_schema(_I4, "genLepton_lastMotherIndex genJet_index"),
    **_schema(_F4, "genJet_pt genJet_eta genJet_phi genJet_mass"),
    "tau_index": _I4,
    **_schema(_F4, "tau_pt tau_eta tau_phi tau_mass"),
    **_schema(_I4, "tau_charge tau_decayMode tau_decayModeFinding tau_decayModeFindingNewDMs"),
    **_schema(
        _F4,
        "tau_chargedIsoPtSum tau_chargedIsoPtSumdR03 tau_footprintCorrection tau_neutralIsoPtSum"
        " tau_neutralIsoPtSumWeight tau_neutralIsoPtSumdR03 tau_photonPtSumOutsideSignalCone"
        " tau_puCorrPtSum tau_byDeepTau2017v2p1VSjetraw tau_byDeepTau2017v2p1VSeraw"
        " tau_byDeepTau2017v2p1VSmuraw tau_byIsolationMVArun2017v2DBoldDMwLTraw2017"
        " tau_byCombinedIsolationDeltaBetaCorrRaw3Hits",
    ),
    **_schema(_U2, "tau_byDeepTau2017v2p1VSjet tau_byDeepTau2017v2p1VSe tau_byDeepTau2017v2p1VSmu"),
    **_schema(
        _F4,
        "tau_dxy_pca_x tau_dxy_pca_y tau_dxy_pca_z tau_dxy tau_dxy_error tau_ip3d tau_ip3d_error"
        " tau_dz tau_dz_error",
    ),
    "tau_hasSecondaryVertex": _I4,
    **_schema(
        _F4,
        "tau_sv_x tau_sv_y tau_sv_z tau_flightLength_x tau_flightLength_y tau_flightLength_z"
        " tau_flightLength_sig tau_pt_weighted_deta_strip tau_pt_weighted_dphi_strip"
        " tau_pt_weighted_dr_signal tau_pt_weighted_dr_iso tau_leadingTrackNormChi2 tau_e_ratio"
        " tau_gj_angle_diff",
    ),
    "tau_n_photons": _I4,
    "tau_emFraction": _F4,
    "tau_inside_ecal_crack": _I4,
    "tau_leadChargedCand_etaAtEcalEntrance": _F4,
    **_schema(_I4, "tau_n_charged_prongs tau_n_neutral_prongs"),
}
"""Scalar branches, one value per candidate, in the order they are written."""

JAGGED_GROUPS: dict[str, dict[str, np.dtype[Any]]] = {
    "pfCand": {
        **_schema(_F4, "pt eta phi mass"),
        **_schema(_I4, "charge particleType pvAssociationQuality fromPV"),
        **_schema(_F4, "puppiWeight dxy dz hcalFraction rawCaloFraction"),
        **_schema(_I4, "tauSignal tauIso lostInnerHits numberOfPixelHits"),
    },
    "ele": {**_schema(_F4, "pt eta phi mass cc_ele_energy gsfTrack_normalizedChi2")},
    "muon": {**_schema(_F4, "pt eta phi mass dxy"), "numberOfValidHits": _I4},
}
"""Jagged groups: group name -> field -> element type."""

BRANCH_TYPES: dict[str, np.dtype[Any]] = {
    **SCALAR_BRANCHES,
    **{
        name: dtype
        for group, fields in JAGGED_GROUPS.items()
        for name, dtype in {
            f"n{group}": _I4,
            **{f"{group}_{field}": dtype for field, dtype in fields.items()},
        }.items()
    },
}
"""Every branch as uproot writes it (jagged ones by element type), counters included."""
