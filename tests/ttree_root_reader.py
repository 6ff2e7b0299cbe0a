"""Reads TTrees with ROOT's own C++ readers and prints what each saw, as JSON.

Run as ``python ttree_root_reader.py SCHEMA.json TREE FILE...`` by tests/test_ttree_writer.py, in a
process of its own so that the test can check everything ROOT prints (missing dictionaries, read
errors) on stderr. The schema lists the branches: name, kind (scalar, fixed, counted, vector), C++
type of one value, and the counter of a counted array. For every file and branch it reports the
values (as doubles) and entry sizes seen by

- ``SetBranchAddress`` of every branch at once (``std::vector<T>*``, scalars, C arrays) and
  ``TTree::GetEntry`` over all entries, as TauMLTools' TauTuple reads;
- ``TTreeReaderValue<std::vector<T>>`` (vectors) and ``TTreeReaderArray<T>`` (vectors, counted);
- ``RDataFrame``: ``Sum`` and ``Take<std::vector<T>>`` of every vector column but ``vector<bool>``
  (which RDataFrame 6.40 misreads, or crashes on, in ROOT's own files as well);
- ``TTree::Draw`` of every vector branch (all its elements).
"""

from __future__ import annotations

import json
import sys
import warnings
from typing import Any

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # the PyPI build warns that it is an alpha release
    import ROOT

MAX_COUNTED = 64  # the size of the C arrays bound to counted branches


def cpp_reader(schema: list[dict[str, Any]]) -> str:
    """C++ of ``read_tree(path, tree, values, sizes)`` for trees of this schema."""
    declare, bind, fill = [], [], []
    for i, branch in enumerate(schema):
        name, kind, ctype = branch["name"], branch["kind"], branch["ctype"]
        var = f"b{i}"
        if kind == "vector":
            declare.append(f"std::vector<{ctype}>* {var} = nullptr;")
            bind.append(f'tree->SetBranchAddress("{name}", &{var});')
            fill.append(
                f'for (auto v : *{var}) values["{name}"].push_back(v);'
                f' sizes["{name}"].push_back({var}->size());'
            )
        elif kind == "counted":
            count = f"b{[b['name'] for b in schema].index(branch['counter'])}"
            declare.append(f"{ctype} {var}[{MAX_COUNTED}];")
            bind.append(f'tree->SetBranchAddress("{name}", {var});')
            fill.append(
                f'for (int k = 0; k < {count}; ++k) values["{name}"].push_back({var}[k]);'
                f' sizes["{name}"].push_back({count});'
            )
        elif kind == "fixed":
            n = 1
            for d in branch["shape"]:
                n *= d
            declare.append(f"{ctype} {var}[{n}];")
            bind.append(f'tree->SetBranchAddress("{name}", {var});')
            fill.append(f'for (int k = 0; k < {n}; ++k) values["{name}"].push_back({var}[k]);')
        else:
            declare.append(f"{ctype} {var};")
            bind.append(f'tree->SetBranchAddress("{name}", &{var});')
            fill.append(f'values["{name}"].push_back({var});')
    return f"""
#include <map>
#include <string>
#include <vector>
#include "TFile.h"
#include "TTree.h"
void read_tree(const char* path, const char* name,
               std::map<std::string, std::vector<double>>& values,
               std::map<std::string, std::vector<double>>& sizes) {{
  TFile file(path);
  TTree* tree = file.Get<TTree>(name);
  {" ".join(declare)}
  {" ".join(bind)}
  for (Long64_t i = 0; i < tree->GetEntries(); ++i) {{
    if (tree->GetEntry(i) <= 0) {{ values["__failed__"].push_back(i); return; }}
    {" ".join(fill)}
  }}
  tree->ResetBranchAddresses();
}}
template <typename T>
void reader_value(const char* path, const char* tree, const char* name,
                  std::vector<double>& values, std::vector<double>& sizes) {{
  TFile file(path);
  TTreeReader reader(tree, &file);
  TTreeReaderValue<std::vector<T>> vector(reader, name);
  while (reader.Next()) {{
    for (auto v : *vector) values.push_back(v);
    sizes.push_back(vector->size());
  }}
}}
template <typename T>
void reader_array(const char* path, const char* tree, const char* name,
                  std::vector<double>& values, std::vector<double>& sizes) {{
  TFile file(path);
  TTreeReader reader(tree, &file);
  TTreeReaderArray<T> array(reader, name);
  while (reader.Next()) {{
    for (auto v : array) values.push_back(v);
    sizes.push_back(array.GetSize());
  }}
}}
template <typename T>
double dataframe(const char* path, const char* tree, const char* name,
                 std::vector<double>& values, std::vector<double>& sizes) {{
  ROOT::RDataFrame frame(tree, path);
  auto taken = frame.Take<std::vector<T>>(name);
  double total = *frame.Sum<std::vector<T>>(name);
  for (const auto& entry : *taken) {{
    for (auto v : entry) values.push_back(v);
    sizes.push_back(entry.size());
  }}
  return total;
}}
void draw(const char* path, const char* tree_name, const char* name, std::vector<double>& values) {{
  TFile file(path);
  TTree* tree = file.Get<TTree>(tree_name);
  tree->SetEstimate(10000000);  // rows kept in GetV1 (-1 would mean one per entry)
  Long64_t rows = tree->Draw(name, "", "goff");
  for (Long64_t i = 0; i < rows; ++i) values.push_back(tree->GetV1()[i]);
}}
"""


def as_lists(mapping: Any) -> dict[str, list[float]]:
    """A C++ map of vectors of doubles as a dict of lists."""
    return {str(pair.first): list(pair.second) for pair in mapping}


def read(path: str, tree: str, schema: list[dict[str, Any]]) -> dict[str, Any]:
    """What each of ROOT's readers saw in one file."""
    doubles = ROOT.std.vector["double"]
    maps = [ROOT.std.map["std::string", "std::vector<double>"]() for _ in range(2)]
    ROOT.read_tree(path, tree, *maps)
    result: dict[str, Any] = {"branch_address": [as_lists(m) for m in maps]}
    for reader in ("reader_value", "reader_array", "dataframe", "draw"):
        result[reader] = {}
    for branch in schema:
        name, ctype = branch["name"], branch["ctype"]
        if branch["kind"] not in ("vector", "counted"):
            continue
        values, sizes = doubles(), doubles()
        ROOT.reader_array[ctype](path, tree, name, values, sizes)
        result["reader_array"][name] = [list(values), list(sizes)]
        if branch["kind"] != "vector":
            continue
        values, sizes = doubles(), doubles()
        ROOT.reader_value[ctype](path, tree, name, values, sizes)
        result["reader_value"][name] = [list(values), list(sizes)]
        if ctype != "bool":  # RDataFrame misreads vector<bool> (ROOT's own files too)
            values, sizes = doubles(), doubles()
            total = ROOT.dataframe[ctype](path, tree, name, values, sizes)
            result["dataframe"][name] = [list(values), list(sizes), float(total)]
        values = doubles()
        ROOT.draw(path, tree, name, values)
        result["draw"][name] = list(values)
    return result


def main() -> None:
    """Reads every file given on the command line; prints {path: what was read}."""
    ROOT.gROOT.SetBatch(True)
    with open(sys.argv[1]) as stream:
        schema = json.load(stream)
    tree = sys.argv[2]
    ROOT.gInterpreter.Declare(cpp_reader(schema))
    print(json.dumps({path: read(path, tree, schema) for path in sys.argv[3:]}))


if __name__ == "__main__":
    main()
