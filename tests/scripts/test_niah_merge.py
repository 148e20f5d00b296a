"""Tests of scripts/niah_merge.py: per-length records join into one run per (scheme, mode) with
the table in context order and the accuracy recomputed from the cells; duplicate contexts and
mismatched depths are refused; the report lists exactly the cells where a scheme and the
reference disagree.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
sys.path.insert(0, str(SCRIPTS))
import niah_merge  # noqa: E402

DEPTHS = [0.0, 0.5, 1.0]


def run(kv: str, context: int, correct: list[bool], mode: str = "single") -> dict[str, Any]:
    cells = [{"context": context, "depth": d, "seed": 7, "correct": ok, "answer": f"a{i}"}
             for i, (d, ok) in enumerate(zip(DEPTHS, correct))]
    return {"kv": kv, "mode": mode, "needles": 1, "seeds": 1, "depths": DEPTHS,
            "contexts": [context], "table": [[1.0 if ok else 0.0 for ok in correct]],
            "cells": cells, "accuracy": sum(correct) / len(correct)}


def write(tmp: Path, name: str, *runs: dict[str, Any]) -> Path:
    p = tmp / name
    p.write_text(json.dumps({"model": "m", "haystack": "h", "runs": list(runs)}), "utf-8")
    return p


def test_merges_lengths_in_context_order(tmp_path: Path) -> None:
    a = write(tmp_path, "a.json", run("fp16", 2048, [True, False, True]))
    b = write(tmp_path, "b.json", run("fp16", 1024, [True, True, True]))
    out = tmp_path / "m.json"
    assert niah_merge.main([str(a), str(b), "--out", str(out)]) == 0
    merged = json.loads(out.read_text("utf-8"))["runs"]
    assert len(merged) == 1
    r = merged[0]
    assert r["contexts"] == [1024, 2048]
    assert r["table"] == [[1.0, 1.0, 1.0], [1.0, 0.0, 1.0]]
    assert r["accuracy"] == pytest.approx(5 / 6)
    assert len(r["cells"]) == 6


def test_refuses_duplicate_context_and_other_depths(tmp_path: Path) -> None:
    runs = [run("tq4", 1024, [True] * 3), run("tq4", 1024, [False] * 3)]
    with pytest.raises(ValueError, match="context 1024 appears in two records"):
        niah_merge.merge(runs)
    other = run("tq4", 2048, [True] * 3)
    other["depths"] = [0.0, 1.0, 0.5]
    with pytest.raises(ValueError, match="depths differ"):
        niah_merge.merge([run("tq4", 1024, [True] * 3), other])
    bad = tmp_path / "bad.json"
    bad.write_text("[]", "utf-8")
    with pytest.raises(ValueError, match="not a tq niah record"):
        niah_merge.load_runs([bad])


def test_report_lists_exactly_the_disagreements() -> None:
    runs = niah_merge.merge([run("fp16", 1024, [True, False, True]),
                             run("tq4", 1024, [False, True, True])])
    text = niah_merge.report(runs, "fp16", "t")
    assert "retrieves 1 that `fp16` misses and misses 1 that `fp16` retrieves" in text
    assert "| 1024 | 0% | 7 | ok | miss | a0 |" in text
    assert "| 1024 | 50% | 7 | miss | ok | a1 |" in text
    assert "100%" not in text  # the cell both retrieve is not listed
