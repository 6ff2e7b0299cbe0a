"""Catalogue of the ``prod_Phase2_v2`` TauTuple samples the synthetic generator imitates.

The entries are the distinct CRAB output directories of the production's file list
(``crab_output/<dataset>/<request_dir>/<timestamp>/0000``), embedded here so that the package
never reads the reference list at run time. ``Sample.physics`` is the key of the generator's
physics model (see :mod:`balanced_batches.synthetic.generate`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["CAMPAIGN", "PHYSICS_KINDS", "SAMPLES", "Sample"]

CAMPAIGN = "prod_Phase2_v2"

PHYSICS_KINDS: tuple[str, ...] = (
    "DY",
    "TT",
    "QCD",
    "WJets",
    "ElecGun",
    "MuonGun",
    "ZprimeEE",
    "ZprimeMuMu",
    "ZprimeTauTau",
    "HTauTau",
    "MinBias",
)
"""Every value ``Sample.physics`` can take."""


@dataclass(frozen=True)
class Sample:
    """One CRAB output directory of the campaign.

    Attributes:
        dataset: primary dataset name, e.g. ``DYToLL_M-50_TuneCP5_14TeV-pythia8``.
        request_dir: CRAB request directory, e.g. ``crab_DYToLL_M-50_PU200``.
        timestamp: CRAB task timestamp directory, e.g. ``210317_190547``.
        pileup: pile-up scenario, one of ``NoPU``, ``PU140``, ``PU200``.
        physics: physics-model key, one of :data:`PHYSICS_KINDS`.
    """

    dataset: str
    request_dir: str
    timestamp: str
    pileup: str
    physics: str

    @property
    def directory(self) -> str:
        """Relative path below ``crab_output/``: ``<dataset>/<request_dir>/<timestamp>/0000``."""
        return f"{self.dataset}/{self.request_dir}/{self.timestamp}/0000"


# Physics key of a dataset, by the first matching pattern (as in the production's
# process_types.yaml).
_PHYSICS_PATTERNS: tuple[tuple[str, str], ...] = (
    ("DYToLL", "DY"),
    ("^TT", "TT"),
    ("^QCD", "QCD"),
    ("^WJets", "WJets"),
    ("(Double|Single)Electron", "ElecGun"),
    ("DoubleMuon|Muplus|Muminus", "MuonGun"),
    ("ZprimeToEE", "ZprimeEE"),
    ("ZprimeToMuMu", "ZprimeMuMu"),
    ("ZprimeToTauTau", "ZprimeTauTau"),
    ("HToTauTau", "HTauTau"),
    ("MinBias", "MinBias"),
)

# <dataset>/<request_dir>/<timestamp> of every CRAB output directory (all end in /0000).
_DIRECTORIES = """
DYToLL_M-50_TuneCP5_14TeV-pythia8/crab_DYToLL_M-50_NoPU/210317_190539
DYToLL_M-50_TuneCP5_14TeV-pythia8/crab_DYToLL_M-50_PU140/210317_190543
DYToLL_M-50_TuneCP5_14TeV-pythia8/crab_DYToLL_M-50_PU200/210317_190547
DoubleElectron_FlatPt-1To100/crab_DoubleElectron_FlatPt-1To100_NoPU/210317_190551
DoubleElectron_FlatPt-1To100/crab_DoubleElectron_FlatPt-1To100_PU140/210317_190556
DoubleElectron_FlatPt-1To100/crab_DoubleElectron_FlatPt-1To100_PU200/210317_190600
DoubleMuon_gun_FlatPt-1To100/crab_DoubleMuon_gun_FlatPt-1To100_NoPU/210317_190720
DoubleMuon_gun_FlatPt-1To100/crab_DoubleMuon_gun_FlatPt-1To100_PU140/210317_190724
DoubleMuon_gun_FlatPt-1To100/crab_DoubleMuon_gun_FlatPt-1To100_PU200/210317_190729
GluGluHToTauTau_M125_14TeV_powheg_pythia8_TuneCP5/crab_GluGluHToTauTau_M125_NoPU/210317_190629
GluGluHToTauTau_M125_14TeV_powheg_pythia8_TuneCP5/crab_GluGluHToTauTau_M125_PU200/210317_190637
GluGluHToTauTau_M125_TuneCP5_14TeV_powheg_pythia8/crab_GluGluHToTauTau_M125_PU140/210317_190633
MinBias_TuneCP5_14TeV-pythia8/crab_MinBias_NoPU/210317_190651
MinBias_TuneCP5_14TeV-pythia8/crab_MinBias_PU140/210317_190659
MinBias_TuneCP5_14TeV-pythia8/crab_MinBias_PU200/210317_190703
MinBias_TuneCP5_14TeV-pythia8/crab_MinBias_ext1_NoPU/210317_190655
Muminus_Pt10-gun/crab_Muminus_Pt10-gun_NoPU/210317_190733
Muminus_Pt10-gun/crab_Muminus_Pt10-gun_PU140/210317_190737
Muminus_Pt10-gun/crab_Muminus_Pt10-gun_PU200/210317_190741
Muminus_Pt100-gun/crab_Muminus_Pt100-gun_NoPU/210317_190757
Muminus_Pt100-gun/crab_Muminus_Pt100-gun_PU140/210317_190802
Muminus_Pt100-gun/crab_Muminus_Pt100-gun_PU200/210317_190807
Muminus_Pt1000-gun/crab_Muminus_Pt1000-gun_NoPU/210317_190825
Muminus_Pt1000-gun/crab_Muminus_Pt1000-gun_PU140/210317_190829
Muminus_Pt1000-gun/crab_Muminus_Pt1000-gun_PU200/210317_190833
Muminus_Pt50-gun/crab_Muminus_Pt50-gun_NoPU/210317_190745
Muminus_Pt50-gun/crab_Muminus_Pt50-gun_PU140/210317_190749
Muminus_Pt50-gun/crab_Muminus_Pt50-gun_PU200/210317_190753
Muminus_Pt500-gun/crab_Muminus_Pt500-gun_NoPU/210317_190812
Muminus_Pt500-gun/crab_Muminus_Pt500-gun_PU140/210317_190817
Muminus_Pt500-gun/crab_Muminus_Pt500-gun_PU200/210317_190821
Muplus_Pt10-gun/crab_Muplus_Pt10-gun_NoPU/210317_190837
Muplus_Pt10-gun/crab_Muplus_Pt10-gun_PU140/210317_190842
Muplus_Pt10-gun/crab_Muplus_Pt10-gun_PU200/210317_190845
Muplus_Pt100-gun/crab_Muplus_Pt100-gun_NoPU/210317_190902
Muplus_Pt100-gun/crab_Muplus_Pt100-gun_PU140/210317_190906
Muplus_Pt100-gun/crab_Muplus_Pt100-gun_PU200/210317_190911
Muplus_Pt1000-gun/crab_Muplus_Pt1000-gun_NoPU/210317_190927
Muplus_Pt1000-gun/crab_Muplus_Pt1000-gun_PU140/210317_190931
Muplus_Pt1000-gun/crab_Muplus_Pt1000-gun_PU200/210317_190936
Muplus_Pt50-gun/crab_Muplus_Pt50-gun_NoPU/210317_190849
Muplus_Pt50-gun/crab_Muplus_Pt50-gun_PU140/210317_190854
Muplus_Pt50-gun/crab_Muplus_Pt50-gun_PU200/210317_190858
Muplus_Pt500-gun/crab_Muplus_Pt500-gun_NoPU/210317_190914
Muplus_Pt500-gun/crab_Muplus_Pt500-gun_PU140/210317_190918
Muplus_Pt500-gun/crab_Muplus_Pt500-gun_PU200/210317_190923
QCD_Pt-15to3000_TuneCP5_Flat_14TeV-pythia8/crab_QCD_Pt-15to3000_Flat_NoPU/210317_190941
QCD_Pt-15to3000_TuneCP5_Flat_14TeV-pythia8/crab_QCD_Pt-15to3000_Flat_PU140/210317_190945
QCD_Pt-15to3000_TuneCP5_Flat_14TeV-pythia8/crab_QCD_Pt-15to3000_Flat_PU200/210317_190949
QCD_Pt_120to170_TuneCP5_14TeV_pythia8/crab_QCD_Pt_120to170_NoPU/210317_191005
QCD_Pt_120to170_TuneCP5_14TeV_pythia8/crab_QCD_Pt_120to170_PU140/210317_191009
QCD_Pt_120to170_TuneCP5_14TeV_pythia8/crab_QCD_Pt_120to170_PU200/210317_191013
QCD_Pt_170to300_TuneCP5_14TeV_pythia8/crab_QCD_Pt_170to300_NoPU/210317_191017
QCD_Pt_170to300_TuneCP5_14TeV_pythia8/crab_QCD_Pt_170to300_PU140/210317_191022
QCD_Pt_170to300_TuneCP5_14TeV_pythia8/crab_QCD_Pt_170to300_PU200/210317_191026
QCD_Pt_300to470_TuneCP5_14TeV_pythia8/crab_QCD_Pt_300to470_NoPU/210317_191030
QCD_Pt_300to470_TuneCP5_14TeV_pythia8/crab_QCD_Pt_300to470_PU140/210317_191034
QCD_Pt_300to470_TuneCP5_14TeV_pythia8/crab_QCD_Pt_300to470_PU200/210317_191038
QCD_Pt_470to600_TuneCP5_14TeV_pythia8/crab_QCD_Pt_470to600_NoPU/210317_191042
QCD_Pt_470to600_TuneCP5_14TeV_pythia8/crab_QCD_Pt_470to600_PU140/210317_191047
QCD_Pt_470to600_TuneCP5_14TeV_pythia8/crab_QCD_Pt_470to600_PU200/210317_191052
QCD_Pt_600oInf_TuneCP5_14TeV_pythia8/crab_QCD_Pt_600oInf_NoPU/210317_191056
QCD_Pt_600oInf_TuneCP5_14TeV_pythia8/crab_QCD_Pt_600oInf_PU140/210317_191100
QCD_Pt_600oInf_TuneCP5_14TeV_pythia8/crab_QCD_Pt_600oInf_PU200/210317_191104
QCD_Pt_80to120_TuneCP5_14TeV_pythia8/crab_QCD_Pt_80to120_NoPU/210317_190953
QCD_Pt_80to120_TuneCP5_14TeV_pythia8/crab_QCD_Pt_80to120_PU140/210317_190957
QCD_Pt_80to120_TuneCP5_14TeV_pythia8/crab_QCD_Pt_80to120_PU200/210317_191001
SingleElectron_PT200to500/crab_SingleElectron_PT200to500_NoPU/210317_190616
SingleElectron_PT200to500/crab_SingleElectron_PT200to500_PU140/210317_190621
SingleElectron_PT200to500/crab_SingleElectron_PT200to500_PU200/210317_190625
SingleElectron_PT2to200/crab_SingleElectron_PT2to200_NoPU/210317_190604
SingleElectron_PT2to200/crab_SingleElectron_PT2to200_PU140/210317_190608
SingleElectron_PT2to200/crab_SingleElectron_PT2to200_PU200/210317_190613
TTTo2L2Nu_TuneCP5_14TeV-powheg-pythia8/crab_TTTo2L2Nu_NoPU/210317_191109
TTTo2L2Nu_TuneCP5_14TeV-powheg-pythia8/crab_TTTo2L2Nu_PU140/210317_191113
TTTo2L2Nu_TuneCP5_14TeV-powheg-pythia8/crab_TTTo2L2Nu_PU200/210317_191117
TTToSemiLepton_TuneCP5_14TeV-powheg-pythia8/crab_TTToSemiLepton_PU140/210317_191121
TTToSemiLepton_TuneCP5_14TeV-powheg-pythia8/crab_TTToSemiLepton_PU200/210317_191126
TT_TuneCP5_14TeV-powheg-pythia8/crab_TT_NoPU/210317_191130
TT_TuneCP5_14TeV-powheg-pythia8/crab_TT_PU140/210317_191134
TT_TuneCP5_14TeV-powheg-pythia8/crab_TT_PU200/210317_191139
VBFHToTauTau_M125_TuneCUETP8M1_14TeV_powheg_pythia8/crab_VBFHToTauTau_M125_NoPU/210317_190642
VBFHToTauTau_M125_TuneCUETP8M1_14TeV_powheg_pythia8/crab_VBFHToTauTau_M125_PU140/210317_190646
WJetsToLNu_TuneCP5_14TeV-amcatnloFXFX-pythia8/crab_WJetsToLNu_NoPU/210317_191144
WJetsToLNu_TuneCP5_14TeV-amcatnloFXFX-pythia8/crab_WJetsToLNu_PU140/210317_191148
WJetsToLNu_TuneCP5_14TeV-amcatnloFXFX-pythia8/crab_WJetsToLNu_PU200/210317_191152
ZprimeToEE_M-6000_TuneCP5_14TeV-pythia8/crab_ZprimeToEE_M-6000_NoPU/210317_191157
ZprimeToEE_M-6000_TuneCP5_14TeV-pythia8/crab_ZprimeToEE_M-6000_PU140/210317_191201
ZprimeToEE_M-6000_TuneCP5_14TeV-pythia8/crab_ZprimeToEE_M-6000_PU200/210317_191207
ZprimeToMuMu_M-6000_TuneCP5_14TeV-pythia8/crab_ZprimeToMuMu_M-6000_NoPU/210317_191213
ZprimeToMuMu_M-6000_TuneCP5_14TeV-pythia8/crab_ZprimeToMuMu_M-6000_PU140/210317_191218
ZprimeToMuMu_M-6000_TuneCP5_14TeV-pythia8/crab_ZprimeToMuMu_M-6000_PU200/210317_191222
ZprimeToTauTau_M-1500_TuneCP5_14TeV-pythia8-tauola/crab_ZprimeToTauTau_M-1500_NoPU/210317_191238
ZprimeToTauTau_M-1500_TuneCP5_14TeV-pythia8-tauola/crab_ZprimeToTauTau_M-1500_PU140/210317_191243
ZprimeToTauTau_M-1500_TuneCP5_14TeV-pythia8-tauola/crab_ZprimeToTauTau_M-1500_PU200/210317_191247
ZprimeToTauTau_M-500_TuneCP5_14TeV-pythia8-tauola/crab_ZprimeToTauTau_M-500_NoPU/210317_191226
ZprimeToTauTau_M-500_TuneCP5_14TeV-pythia8-tauola/crab_ZprimeToTauTau_M-500_PU140/210317_191230
ZprimeToTauTau_M-500_TuneCP5_14TeV-pythia8-tauola/crab_ZprimeToTauTau_M-500_PU200/210317_191234
"""


def _sample(directory: str) -> Sample:
    """The catalogue entry of one ``<dataset>/<request_dir>/<timestamp>`` directory."""
    dataset, request_dir, timestamp = directory.split("/")
    physics = next(key for pattern, key in _PHYSICS_PATTERNS if re.search(pattern, dataset))
    return Sample(dataset, request_dir, timestamp, request_dir.rsplit("_", 1)[1], physics)


SAMPLES: tuple[Sample, ...] = tuple(_sample(line) for line in _DIRECTORIES.split())
"""Every CRAB output directory of the campaign, sorted by path; the position is the sample index."""
