"""Tests of scripts/mutation_sweep.py: GGUF layout parser, mutation list and verdicts."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def load(name: str, path: Path):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


sweep = load("mutation_sweep", ROOT / "scripts" / "mutation_sweep.py")
seeds = load("make_seeds", ROOT / "tests" / "fuzz" / "make_seeds.py")


def seed_file() -> bytes:
    return seeds.gguf([seeds.kv_str("general.name", "t"), seeds.kv_u32("llama.block_count", 2)],
                      [("a", [4, 2], "f32"), ("b", [64], "q4_0")])


def test_layout_finds_every_field() -> None:
    data = seed_file()
    layout = sweep.parse_layout(data)
    assert layout.version.value == 3
    assert [kv.key for kv in layout.kvs] == ["general.name", "llama.block_count"]
    assert [t.name for t in layout.tensors] == ["a", "b"]
    assert [int(d.value) for d in layout.tensors[0].dims] == [4, 2]
    assert layout.data_start % 32 == 0 and layout.data_start < len(data)


def test_mutations_patch_their_field_and_truncations_must_fail() -> None:
    data = seed_file()
    cases = sweep.mutations(data, sweep.parse_layout(data), seed=1, flips=3)
    assert len(cases) > 100
    assert all(m.must_fail for m in cases if m.category == "truncation")
    count = next(m for m in cases if m.name == "tensor count 3")
    at, raw = count.patches[0]
    assert at == 8 and raw == (3).to_bytes(8, "little")
    block = next(m for m in cases if m.name == "llama.block_count = 0")
    assert block.must_fail


def test_negative_values_wrap_in_unsigned_fields() -> None:
    field = sweep.Field(0, "<Q", 5)
    assert sweep.put(field, -1)[1] == b"\xff" * 8


def test_verdicts(tmp_path: Path) -> None:
    data = seed_file()
    must = sweep.Mutation("t", "must", True, truncate=10)
    may = sweep.Mutation("t", "may", False, truncate=10)
    scripts = {
        "ok": "exit 0",
        "error": "echo 'tq: error: bad file' >&2; exit 1",
        "crash": "kill -SEGV $$",
        "unclear": "echo 'tq: error: std::bad_alloc' >&2; exit 1",
        "hang": "sleep 5",
    }
    for want, body in scripts.items():
        tq = tmp_path / f"tq_{want}"
        tq.write_text(f"#!/bin/sh\n{body}\n")
        tq.chmod(0o755)
        got = sweep.run_one(tq, data, may, tmp_path, timeout=1.0).verdict
        assert got == want, (want, got)
    assert sweep.run_one(tmp_path / "tq_ok", data, must, tmp_path, 1.0).verdict == "accepted"
