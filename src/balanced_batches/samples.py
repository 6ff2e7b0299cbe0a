"""Catalogue of the ``prod_Phase2_v2`` TauTuple samples the synthetic generator imitates.

The entries are the distinct CRAB output directories of the production's file list
(``crab_output/<dataset>/<request_dir>/<timestamp>/0000``), embedded here so that the package
never reads the reference list at run time. ``Sample.physics`` is the key of the generator's
physics model (see :mod:`balanced_batches.generate`).
"""

from __future__ import annotations

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


SAMPLES: tuple[Sample, ...] = (
    Sample(
        "DYToLL_M-50_TuneCP5_14TeV-pythia8", "crab_DYToLL_M-50_NoPU", "210317_190539", "NoPU", "DY"
    ),
    Sample(
        "DYToLL_M-50_TuneCP5_14TeV-pythia8",
        "crab_DYToLL_M-50_PU140",
        "210317_190543",
        "PU140",
        "DY",
    ),
    Sample(
        "DYToLL_M-50_TuneCP5_14TeV-pythia8",
        "crab_DYToLL_M-50_PU200",
        "210317_190547",
        "PU200",
        "DY",
    ),
    Sample(
        "DoubleElectron_FlatPt-1To100",
        "crab_DoubleElectron_FlatPt-1To100_NoPU",
        "210317_190551",
        "NoPU",
        "ElecGun",
    ),
    Sample(
        "DoubleElectron_FlatPt-1To100",
        "crab_DoubleElectron_FlatPt-1To100_PU140",
        "210317_190556",
        "PU140",
        "ElecGun",
    ),
    Sample(
        "DoubleElectron_FlatPt-1To100",
        "crab_DoubleElectron_FlatPt-1To100_PU200",
        "210317_190600",
        "PU200",
        "ElecGun",
    ),
    Sample(
        "DoubleMuon_gun_FlatPt-1To100",
        "crab_DoubleMuon_gun_FlatPt-1To100_NoPU",
        "210317_190720",
        "NoPU",
        "MuonGun",
    ),
    Sample(
        "DoubleMuon_gun_FlatPt-1To100",
        "crab_DoubleMuon_gun_FlatPt-1To100_PU140",
        "210317_190724",
        "PU140",
        "MuonGun",
    ),
    Sample(
        "DoubleMuon_gun_FlatPt-1To100",
        "crab_DoubleMuon_gun_FlatPt-1To100_PU200",
        "210317_190729",
        "PU200",
        "MuonGun",
    ),
    Sample(
        "GluGluHToTauTau_M125_14TeV_powheg_pythia8_TuneCP5",
        "crab_GluGluHToTauTau_M125_NoPU",
        "210317_190629",
        "NoPU",
        "HTauTau",
    ),
    Sample(
        "GluGluHToTauTau_M125_14TeV_powheg_pythia8_TuneCP5",
        "crab_GluGluHToTauTau_M125_PU200",
        "210317_190637",
        "PU200",
        "HTauTau",
    ),
    Sample(
        "GluGluHToTauTau_M125_TuneCP5_14TeV_powheg_pythia8",
        "crab_GluGluHToTauTau_M125_PU140",
        "210317_190633",
        "PU140",
        "HTauTau",
    ),
    Sample(
        "MinBias_TuneCP5_14TeV-pythia8", "crab_MinBias_NoPU", "210317_190651", "NoPU", "MinBias"
    ),
    Sample(
        "MinBias_TuneCP5_14TeV-pythia8", "crab_MinBias_PU140", "210317_190659", "PU140", "MinBias"
    ),
    Sample(
        "MinBias_TuneCP5_14TeV-pythia8", "crab_MinBias_PU200", "210317_190703", "PU200", "MinBias"
    ),
    Sample(
        "MinBias_TuneCP5_14TeV-pythia8",
        "crab_MinBias_ext1_NoPU",
        "210317_190655",
        "NoPU",
        "MinBias",
    ),
    Sample("Muminus_Pt10-gun", "crab_Muminus_Pt10-gun_NoPU", "210317_190733", "NoPU", "MuonGun"),
    Sample("Muminus_Pt10-gun", "crab_Muminus_Pt10-gun_PU140", "210317_190737", "PU140", "MuonGun"),
    Sample("Muminus_Pt10-gun", "crab_Muminus_Pt10-gun_PU200", "210317_190741", "PU200", "MuonGun"),
    Sample("Muminus_Pt100-gun", "crab_Muminus_Pt100-gun_NoPU", "210317_190757", "NoPU", "MuonGun"),
    Sample(
        "Muminus_Pt100-gun", "crab_Muminus_Pt100-gun_PU140", "210317_190802", "PU140", "MuonGun"
    ),
    Sample(
        "Muminus_Pt100-gun", "crab_Muminus_Pt100-gun_PU200", "210317_190807", "PU200", "MuonGun"
    ),
    Sample(
        "Muminus_Pt1000-gun", "crab_Muminus_Pt1000-gun_NoPU", "210317_190825", "NoPU", "MuonGun"
    ),
    Sample(
        "Muminus_Pt1000-gun", "crab_Muminus_Pt1000-gun_PU140", "210317_190829", "PU140", "MuonGun"
    ),
    Sample(
        "Muminus_Pt1000-gun", "crab_Muminus_Pt1000-gun_PU200", "210317_190833", "PU200", "MuonGun"
    ),
    Sample("Muminus_Pt50-gun", "crab_Muminus_Pt50-gun_NoPU", "210317_190745", "NoPU", "MuonGun"),
    Sample("Muminus_Pt50-gun", "crab_Muminus_Pt50-gun_PU140", "210317_190749", "PU140", "MuonGun"),
    Sample("Muminus_Pt50-gun", "crab_Muminus_Pt50-gun_PU200", "210317_190753", "PU200", "MuonGun"),
    Sample("Muminus_Pt500-gun", "crab_Muminus_Pt500-gun_NoPU", "210317_190812", "NoPU", "MuonGun"),
    Sample(
        "Muminus_Pt500-gun", "crab_Muminus_Pt500-gun_PU140", "210317_190817", "PU140", "MuonGun"
    ),
    Sample(
        "Muminus_Pt500-gun", "crab_Muminus_Pt500-gun_PU200", "210317_190821", "PU200", "MuonGun"
    ),
    Sample("Muplus_Pt10-gun", "crab_Muplus_Pt10-gun_NoPU", "210317_190837", "NoPU", "MuonGun"),
    Sample("Muplus_Pt10-gun", "crab_Muplus_Pt10-gun_PU140", "210317_190842", "PU140", "MuonGun"),
    Sample("Muplus_Pt10-gun", "crab_Muplus_Pt10-gun_PU200", "210317_190845", "PU200", "MuonGun"),
    Sample("Muplus_Pt100-gun", "crab_Muplus_Pt100-gun_NoPU", "210317_190902", "NoPU", "MuonGun"),
    Sample("Muplus_Pt100-gun", "crab_Muplus_Pt100-gun_PU140", "210317_190906", "PU140", "MuonGun"),
    Sample("Muplus_Pt100-gun", "crab_Muplus_Pt100-gun_PU200", "210317_190911", "PU200", "MuonGun"),
    Sample("Muplus_Pt1000-gun", "crab_Muplus_Pt1000-gun_NoPU", "210317_190927", "NoPU", "MuonGun"),
    Sample(
        "Muplus_Pt1000-gun", "crab_Muplus_Pt1000-gun_PU140", "210317_190931", "PU140", "MuonGun"
    ),
    Sample(
        "Muplus_Pt1000-gun", "crab_Muplus_Pt1000-gun_PU200", "210317_190936", "PU200", "MuonGun"
    ),
    Sample("Muplus_Pt50-gun", "crab_Muplus_Pt50-gun_NoPU", "210317_190849", "NoPU", "MuonGun"),
    Sample("Muplus_Pt50-gun", "crab_Muplus_Pt50-gun_PU140", "210317_190854", "PU140", "MuonGun"),
    Sample("Muplus_Pt50-gun", "crab_Muplus_Pt50-gun_PU200", "210317_190858", "PU200", "MuonGun"),
    Sample("Muplus_Pt500-gun", "crab_Muplus_Pt500-gun_NoPU", "210317_190914", "NoPU", "MuonGun"),
    Sample("Muplus_Pt500-gun", "crab_Muplus_Pt500-gun_PU140", "210317_190918", "PU140", "MuonGun"),
    Sample("Muplus_Pt500-gun", "crab_Muplus_Pt500-gun_PU200", "210317_190923", "PU200", "MuonGun"),
    Sample(
        "QCD_Pt-15to3000_TuneCP5_Flat_14TeV-pythia8",
        "crab_QCD_Pt-15to3000_Flat_NoPU",
        "210317_190941",
        "NoPU",
        "QCD",
    ),
    Sample(
        "QCD_Pt-15to3000_TuneCP5_Flat_14TeV-pythia8",
        "crab_QCD_Pt-15to3000_Flat_PU140",
        "210317_190945",
        "PU140",
        "QCD",
    ),
    Sample(
        "QCD_Pt-15to3000_TuneCP5_Flat_14TeV-pythia8",
        "crab_QCD_Pt-15to3000_Flat_PU200",
        "210317_190949",
        "PU200",
        "QCD",
    ),
    Sample(
        "QCD_Pt_120to170_TuneCP5_14TeV_pythia8",
        "crab_QCD_Pt_120to170_NoPU",
        "210317_191005",
        "NoPU",
        "QCD",
    ),
    Sample(
        "QCD_Pt_120to170_TuneCP5_14TeV_pythia8",
        "crab_QCD_Pt_120to170_PU140",
        "210317_191009",
        "PU140",
        "QCD",
    ),
    Sample(
        "QCD_Pt_120to170_TuneCP5_14TeV_pythia8",
        "crab_QCD_Pt_120to170_PU200",
        "210317_191013",
        "PU200",
        "QCD",
    ),
    Sample(
        "QCD_Pt_170to300_TuneCP5_14TeV_pythia8",
        "crab_QCD_Pt_170to300_NoPU",
        "210317_191017",
        "NoPU",
        "QCD",
    ),
    Sample(
        "QCD_Pt_170to300_TuneCP5_14TeV_pythia8",
        "crab_QCD_Pt_170to300_PU140",
        "210317_191022",
        "PU140",
        "QCD",
    ),
    Sample(
        "QCD_Pt_170to300_TuneCP5_14TeV_pythia8",
        "crab_QCD_Pt_170to300_PU200",
        "210317_191026",
        "PU200",
        "QCD",
    ),
    Sample(
        "QCD_Pt_300to470_TuneCP5_14TeV_pythia8",
        "crab_QCD_Pt_300to470_NoPU",
        "210317_191030",
        "NoPU",
        "QCD",
    ),
    Sample(
        "QCD_Pt_300to470_TuneCP5_14TeV_pythia8",
        "crab_QCD_Pt_300to470_PU140",
        "210317_191034",
        "PU140",
        "QCD",
    ),
    Sample(
        "QCD_Pt_300to470_TuneCP5_14TeV_pythia8",
        "crab_QCD_Pt_300to470_PU200",
        "210317_191038",
        "PU200",
        "QCD",
    ),
    Sample(
        "QCD_Pt_470to600_TuneCP5_14TeV_pythia8",
        "crab_QCD_Pt_470to600_NoPU",
        "210317_191042",
        "NoPU",
        "QCD",
    ),
    Sample(
        "QCD_Pt_470to600_TuneCP5_14TeV_pythia8",
        "crab_QCD_Pt_470to600_PU140",
        "210317_191047",
        "PU140",
        "QCD",
    ),
    Sample(
        "QCD_Pt_470to600_TuneCP5_14TeV_pythia8",
        "crab_QCD_Pt_470to600_PU200",
        "210317_191052",
        "PU200",
        "QCD",
    ),
    Sample(
        "QCD_Pt_600oInf_TuneCP5_14TeV_pythia8",
        "crab_QCD_Pt_600oInf_NoPU",
        "210317_191056",
        "NoPU",
        "QCD",
    ),
    Sample(
        "QCD_Pt_600oInf_TuneCP5_14TeV_pythia8",
        "crab_QCD_Pt_600oInf_PU140",
        "210317_191100",
        "PU140",
        "QCD",
    ),
    Sample(
        "QCD_Pt_600oInf_TuneCP5_14TeV_pythia8",
        "crab_QCD_Pt_600oInf_PU200",
        "210317_191104",
        "PU200",
        "QCD",
    ),
    Sample(
        "QCD_Pt_80to120_TuneCP5_14TeV_pythia8",
        "crab_QCD_Pt_80to120_NoPU",
        "210317_190953",
        "NoPU",
        "QCD",
    ),
    Sample(
        "QCD_Pt_80to120_TuneCP5_14TeV_pythia8",
        "crab_QCD_Pt_80to120_PU140",
        "210317_190957",
        "PU140",
        "QCD",
    ),
    Sample(
        "QCD_Pt_80to120_TuneCP5_14TeV_pythia8",
        "crab_QCD_Pt_80to120_PU200",
        "210317_191001",
        "PU200",
        "QCD",
    ),
    Sample(
        "SingleElectron_PT200to500",
        "crab_SingleElectron_PT200to500_NoPU",
        "210317_190616",
        "NoPU",
        "ElecGun",
    ),
    Sample(
        "SingleElectron_PT200to500",
        "crab_SingleElectron_PT200to500_PU140",
        "210317_190621",
        "PU140",
        "ElecGun",
    ),
    Sample(
        "SingleElectron_PT200to500",
        "crab_SingleElectron_PT200to500_PU200",
        "210317_190625",
        "PU200",
        "ElecGun",
    ),
    Sample(
        "SingleElectron_PT2to200",
        "crab_SingleElectron_PT2to200_NoPU",
        "210317_190604",
        "NoPU",
        "ElecGun",
    ),
    Sample(
        "SingleElectron_PT2to200",
        "crab_SingleElectron_PT2to200_PU140",
        "210317_190608",
        "PU140",
        "ElecGun",
    ),
    Sample(
        "SingleElectron_PT2to200",
        "crab_SingleElectron_PT2to200_PU200",
        "210317_190613",
        "PU200",
        "ElecGun",
    ),
    Sample(
        "TTTo2L2Nu_TuneCP5_14TeV-powheg-pythia8",
        "crab_TTTo2L2Nu_NoPU",
        "210317_191109",
        "NoPU",
        "TT",
    ),
    Sample(
        "TTTo2L2Nu_TuneCP5_14TeV-powheg-pythia8",
        "crab_TTTo2L2Nu_PU140",
        "210317_191113",
        "PU140",
        "TT",
    ),
    Sample(
        "TTTo2L2Nu_TuneCP5_14TeV-powheg-pythia8",
        "crab_TTTo2L2Nu_PU200",
        "210317_191117",
        "PU200",
        "TT",
    ),
    Sample(
        "TTToSemiLepton_TuneCP5_14TeV-powheg-pythia8",
        "crab_TTToSemiLepton_PU140",
        "210317_191121",
        "PU140",
        "TT",
    ),
    Sample(
        "TTToSemiLepton_TuneCP5_14TeV-powheg-pythia8",
        "crab_TTToSemiLepton_PU200",
        "210317_191126",
        "PU200",
        "TT",
    ),
    Sample("TT_TuneCP5_14TeV-powheg-pythia8", "crab_TT_NoPU", "210317_191130", "NoPU", "TT"),
    Sample("TT_TuneCP5_14TeV-powheg-pythia8", "crab_TT_PU140", "210317_191134", "PU140", "TT"),
    Sample("TT_TuneCP5_14TeV-powheg-pythia8", "crab_TT_PU200", "210317_191139", "PU200", "TT"),
    Sample(
        "VBFHToTauTau_M125_TuneCUETP8M1_14TeV_powheg_pythia8",
        "crab_VBFHToTauTau_M125_NoPU",
        "210317_190642",
        "NoPU",
        "HTauTau",
    ),
    Sample(
        "VBFHToTauTau_M125_TuneCUETP8M1_14TeV_powheg_pythia8",
        "crab_VBFHToTauTau_M125_PU140",
        "210317_190646",
        "PU140",
        "HTauTau",
    ),
    Sample(
        "WJetsToLNu_TuneCP5_14TeV-amcatnloFXFX-pythia8",
        "crab_WJetsToLNu_NoPU",
        "210317_191144",
        "NoPU",
        "WJets",
    ),
    Sample(
        "WJetsToLNu_TuneCP5_14TeV-amcatnloFXFX-pythia8",
        "crab_WJetsToLNu_PU140",
        "210317_191148",
        "PU140",
        "WJets",
    ),
    Sample(
        "WJetsToLNu_TuneCP5_14TeV-amcatnloFXFX-pythia8",
        "crab_WJetsToLNu_PU200",
        "210317_191152",
        "PU200",
        "WJets",
    ),
    Sample(
        "ZprimeToEE_M-6000_TuneCP5_14TeV-pythia8",
        "crab_ZprimeToEE_M-6000_NoPU",
        "210317_191157",
        "NoPU",
        "ZprimeEE",
    ),
    Sample(
        "ZprimeToEE_M-6000_TuneCP5_14TeV-pythia8",
        "crab_ZprimeToEE_M-6000_PU140",
        "210317_191201",
        "PU140",
        "ZprimeEE",
    ),
    Sample(
        "ZprimeToEE_M-6000_TuneCP5_14TeV-pythia8",
        "crab_ZprimeToEE_M-6000_PU200",
        "210317_191207",
        "PU200",
        "ZprimeEE",
    ),
    Sample(
        "ZprimeToMuMu_M-6000_TuneCP5_14TeV-pythia8",
        "crab_ZprimeToMuMu_M-6000_NoPU",
        "210317_191213",
        "NoPU",
        "ZprimeMuMu",
    ),
    Sample(
        "ZprimeToMuMu_M-6000_TuneCP5_14TeV-pythia8",
        "crab_ZprimeToMuMu_M-6000_PU140",
        "210317_191218",
        "PU140",
        "ZprimeMuMu",
    ),
    Sample(
        "ZprimeToMuMu_M-6000_TuneCP5_14TeV-pythia8",
        "crab_ZprimeToMuMu_M-6000_PU200",
        "210317_191222",
        "PU200",
        "ZprimeMuMu",
    ),
    Sample(
        "ZprimeToTauTau_M-1500_TuneCP5_14TeV-pythia8-tauola",
        "crab_ZprimeToTauTau_M-1500_NoPU",
        "210317_191238",
        "NoPU",
        "ZprimeTauTau",
    ),
    Sample(
        "ZprimeToTauTau_M-1500_TuneCP5_14TeV-pythia8-tauola",
        "crab_ZprimeToTauTau_M-1500_PU140",
        "210317_191243",
        "PU140",
        "ZprimeTauTau",
    ),
    Sample(
        "ZprimeToTauTau_M-1500_TuneCP5_14TeV-pythia8-tauola",
        "crab_ZprimeToTauTau_M-1500_PU200",
        "210317_191247",
        "PU200",
        "ZprimeTauTau",
    ),
    Sample(
        "ZprimeToTauTau_M-500_TuneCP5_14TeV-pythia8-tauola",
        "crab_ZprimeToTauTau_M-500_NoPU",
        "210317_191226",
        "NoPU",
        "ZprimeTauTau",
    ),
    Sample(
        "ZprimeToTauTau_M-500_TuneCP5_14TeV-pythia8-tauola",
        "crab_ZprimeToTauTau_M-500_PU140",
        "210317_191230",
        "PU140",
        "ZprimeTauTau",
    ),
    Sample(
        "ZprimeToTauTau_M-500_TuneCP5_14TeV-pythia8-tauola",
        "crab_ZprimeToTauTau_M-500_PU200",
        "210317_191234",
        "PU200",
        "ZprimeTauTau",
    ),
)
