"""Tests of bench/cuda/ncu_step.py: kernel rows of an ncu CSV log are read in launch order with
their times in microseconds whatever the unit; the last repeating run of kernels (or the run
closed by a --marker kernel) is the one summarised; a log without a repeat is refused.
"""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "cuda"
sys.path.insert(0, str(BENCH))
import ncu_step  # noqa: E402

HEADER = ('"ID","Process ID","Process Name","Host Name","Kernel Name","Context","Stream",'
          '"Block Size","Grid Size","Device","CC","Section Name","Metric Name","Metric Unit",'
          '"Metric Value"\n')


def row(i: int, name: str, grid: str, value: str, unit: str = "nsecond") -> str:
    return (f'"{i}","1","tq","h","{name}","1","7","(128, 1, 1)","{grid}","0","9.0","",'
            f'"gpu__time_duration.sum","{unit}","{value}"\n')


def write_log(tmp_path: Path, kernels: list[tuple[str, str, str]], unit: str = "nsecond",
              gz: bool = False) -> str:
    text = "==PROF== Connected to process 1\n" + HEADER
    text += "".join(row(i, n, g, v, unit) for i, (n, g, v) in enumerate(kernels))
    path = tmp_path / ("log.csv.gz" if gz else "log.csv")
    if gz:
        with gzip.open(path, "wt") as f:
            f.write(text)
    else:
        path.write_text(text)
    return str(path)


LAYER = [("void gemv<1>(Args)", "(132, 1, 1)", "2,000"), ("rms_norm(float*)", "(1, 1, 1)", "500"),
         ("attn(Params)", "(13, 8, 1)", "1000")]


def test_reads_rows_in_order_in_microseconds(tmp_path: Path) -> None:
    path = write_log(tmp_path, LAYER, unit="usecond")
    kernels = ncu_step.read_kernels(path)
    assert [k.name for k in kernels] == [n for n, _, _ in LAYER]
    assert [k.us for k in kernels] == [2000.0, 500.0, 1000.0]
    path = write_log(tmp_path, LAYER, unit="nsecond", gz=True)
    assert [k.us for k in ncu_step.read_kernels(path)] == [2.0, 0.5, 1.0]


def test_last_repeating_run_is_one_layer(tmp_path: Path) -> None:
    prologue = [("fill(float*)", "(64, 1, 1)", "9000")]
    log = prologue + LAYER * 3
    kernels = ncu_step.read_kernels(write_log(tmp_path, log))
    step = ncu_step.last_step(kernels, None, min_period=2)
    assert [k.name for k in step] == [n for n, _, _ in LAYER]
    # With the default minimum of 8 kernels, three 3-kernel layers hold no repeat of 8 or more
    # that ends the log twice; twelve layers do (a run of 9 = three layers).
    with pytest.raises(SystemExit):
        ncu_step.last_step(kernels, None)
    step = ncu_step.last_step(ncu_step.read_kernels(write_log(tmp_path, prologue + LAYER * 12)),
                              None)
    assert [k.name for k in step] == [n for n, _, _ in LAYER * 3]


def test_marker_closes_the_step(tmp_path: Path) -> None:
    log = LAYER * 2 + [("lm_head(Args)", "(132, 1, 1)", "7000")]
    log = log * 3
    kernels = ncu_step.read_kernels(write_log(tmp_path, log))
    step = ncu_step.last_step(kernels, r"lm_head")
    assert [k.name for k in step] == [n for n, _, _ in LAYER * 2] + ["lm_head(Args)"]


def test_no_repeat_is_refused(tmp_path: Path) -> None:
    log = [(f"k{i}(int)", "(1, 1, 1)", "100") for i in range(20)]
    with pytest.raises(SystemExit):
        ncu_step.last_step(ncu_step.read_kernels(write_log(tmp_path, log)), None)


def test_short_name_drops_parameters_and_anonymous_namespaces() -> None:
    name = "void tq::(anonymous namespace)::gemv_kernel<Unit<3, 0>, 1>(tq::Args, int (*)[4])"
    assert ncu_step.short_name(name) == "void tq::gemv_kernel<Unit<3, 0>, 1>"
