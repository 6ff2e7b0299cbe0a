"""Tests of expressions.py: ROOT-style selections, evaluated safely and vectorised."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from balanced_batches.errors import ConfigError
from balanced_batches.expressions import parse_expression

Arrays = dict[str, np.ndarray]

# (ROOT-style text, the same selection written with numpy operators)
EQUIVALENTS: list[tuple[str, Callable[[Arrays], np.ndarray]]] = [
    (
        "genLepton_index >= 0 && (genLepton_kind == 1 || genLepton_kind == 3)",
        lambda a: (
            (a["genLepton_index"] >= 0) & ((a["genLepton_kind"] == 1) | (a["genLepton_kind"] == 3))
        ),
    ),
    ("genLepton_index == -1", lambda a: a["genLepton_index"] == -1),
    ("genLepton_kind != 5", lambda a: a["genLepton_kind"] != 5),
    (
        "genLepton_kind!=5&&genLepton_index>=0",
        lambda a: (a["genLepton_kind"] != 5) & (a["genLepton_index"] >= 0),
    ),
    ("!(genLepton_kind == 5)", lambda a: ~(a["genLepton_kind"] == 5)),
    ("!(genLepton_kind != 5)", lambda a: a["genLepton_kind"] == 5),
    ("!genLepton_kind", lambda a: a["genLepton_kind"] == 0),
    ("!!genLepton_kind", lambda a: a["genLepton_kind"] != 0),
    # C precedence: `!` binds tighter than `==`, so this is (!kind) == 1, i.e. kind == 0
    ("!genLepton_kind == 1", lambda a: a["genLepton_kind"] == 0),
    (
        "genLepton_kind == !genLepton_index",
        lambda a: a["genLepton_kind"] == (a["genLepton_index"] == 0).astype(np.int32),
    ),
    # && binds tighter than ||
    (
        "genLepton_kind == 1 || genLepton_kind == 2 && genLepton_index >= 0",
        lambda a: (
            (a["genLepton_kind"] == 1) | ((a["genLepton_kind"] == 2) & (a["genLepton_index"] >= 0))
        ),
    ),
    ("abs(tau_eta) < 1.5", lambda a: np.abs(a["tau_eta"]) < 1.5),
    ("fabs(tau_eta) >= 0.6", lambda a: np.abs(a["tau_eta"]) >= 0.6),
    (
        "0.6 <= abs(tau_eta) < 1.2",
        lambda a: (np.abs(a["tau_eta"]) >= 0.6) & (np.abs(a["tau_eta"]) < 1.2),
    ),
    (
        "-1 < genLepton_index <= 2 != genLepton_kind",
        lambda a: (
            (a["genLepton_index"] > -1) & (a["genLepton_index"] <= 2) & (a["genLepton_kind"] != 2)
        ),
    ),
    ("tau_pt * 2 - 10 > tau_eta ** 2 + 1", lambda a: a["tau_pt"] * 2 - 10 > a["tau_eta"] ** 2 + 1),
    ("-tau_eta > 0.5", lambda a: -a["tau_eta"] > 0.5),
    ("genLepton_kind % 2 == 1", lambda a: a["genLepton_kind"] % 2 == 1),
    ("tau_pt / 2 >= 20", lambda a: a["tau_pt"] / 2 >= 20),
    ("true && tau_pt > 20", lambda a: a["tau_pt"] > 20),
    ("false || tau_pt > 20", lambda a: a["tau_pt"] > 20),
    ("min(tau_pt, 30) == 30", lambda a: np.minimum(a["tau_pt"], 30) == 30),
    ("hypot(tau_pt, tau_eta) > 25", lambda a: np.hypot(a["tau_pt"], a["tau_eta"]) > 25),
]


def candidate_arrays(n: int) -> st.SearchStrategy[Arrays]:
    """Branch arrays of n candidates, values around the interesting cuts."""
    return st.fixed_dictionaries(
        {
            "genLepton_index": hnp.arrays(np.int32, n, elements=st.integers(-3, 3)),
            "genLepton_kind": hnp.arrays(np.int32, n, elements=st.integers(0, 7)),
            "tau_pt": hnp.arrays(
                np.float32, n, elements=st.sampled_from([0.0, 15.0, 20.0, 25.5, 30.0, 60.0])
            ),
            "tau_eta": hnp.arrays(
                np.float32, n, elements=st.sampled_from([-2.5, -1.2, -0.6, 0.0, 0.6, 1.2, 1.8])
            ),
        }
    )


@pytest.mark.parametrize(("text", "numpy_version"), EQUIVALENTS, ids=[t for t, _ in EQUIVALENTS])
@given(data=st.data())
@settings(max_examples=25, deadline=None)
def test_root_syntax_agrees_with_numpy(
    text: str, numpy_version: Callable[[Arrays], np.ndarray], data: st.DataObject
) -> None:
    arrays = data.draw(candidate_arrays(data.draw(st.integers(1, 30))))
    result = parse_expression(text, "types.test").evaluate(arrays)
    expected = numpy_version(arrays)
    assert result.shape == expected.shape
    assert result.tolist() == expected.tolist()


def test_evaluation_is_vectorised_and_leaves_inputs_alone() -> None:
    kind = np.array([1, 3, 5, 2], dtype=np.int32)
    index = np.array([0, 2, 0, -1], dtype=np.int32)
    arrays = {"genLepton_kind": kind, "genLepton_index": index}
    result = parse_expression(
        "genLepton_index >= 0 && (genLepton_kind == 1 || genLepton_kind == 3)", "types.electron"
    ).evaluate(arrays)
    assert result.dtype == np.bool_
    assert result.tolist() == [True, True, False, False]
    assert kind.tolist() == [1, 3, 5, 2]
    assert index.tolist() == [0, 2, 0, -1]


def test_abs_of_float32_stays_exact() -> None:
    eta = np.array([-1.8, 1.8, -0.0, -2.4], dtype=np.float32)
    result = parse_expression("abs(tau_eta)", "regions.abseta").evaluate({"tau_eta": eta})
    assert result.tolist() == np.abs(eta).tolist()


@pytest.mark.parametrize(
    ("text", "branches"),
    [
        (
            "genLepton_index >= 0 && (genLepton_kind == 1 || genLepton_kind == 3)",
            {"genLepton_index", "genLepton_kind"},
        ),
        ("abs(tau_eta)", {"tau_eta"}),
        ("tau_pt", {"tau_pt"}),
        ("true && !false", set()),
        ("sqrt(tau_px*tau_px + tau_py*tau_py) > min(a, 2)", {"tau_px", "tau_py", "a"}),
        ("1 < x < y", {"x", "y"}),
    ],
)
def test_branches_lists_the_names_read(text: str, branches: set[str]) -> None:
    assert parse_expression(text, "w").branches == frozenset(branches)


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os')",
        "__import__('os').system('true')",
        "os.system('true')",
        "tau_pt.__class__",
        "abs.__self__",
        "tau_pt[0] > 1",
        "(lambda: 1)()",
        "lambda x: x",
        "open('/etc/passwd')",
        "eval('1')",
        "exec('1')",
        "getattr(tau_pt, 'size')",
        "unknown_function(tau_pt)",
        "[x for x in tau_pt]",
        "{tau_pt}",
        "[tau_pt]",
        "(tau_pt, tau_eta)",
        "tau_pt if tau_eta else 0",
        "abs(x=tau_pt)",
        "abs(*tau_pt)",
        "(x := 1)",
        "f'{tau_pt}'",
        "tau_pt ^ 1",
        "tau_pt << 1",
        "tau_pt in tau_eta",
        "tau_pt is None",
        "import os",
        "tau_pt = 1",
        "tau_pt >",
        "",
    ],
)
def test_anything_but_arithmetic_and_logic_is_rejected(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_expression(text, "types.evil")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("types.evil:")
    assert repr(text) in message or "cannot parse" in message


def test_rejected_call_lists_the_allowed_functions() -> None:
    with pytest.raises(ConfigError, match=r"abs.*sqrt"):
        parse_expression("system(1)", "regions.pt")
