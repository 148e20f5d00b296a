"""Tests of scripts/plot.py: every figure kind drawn from a small synthetic record, the file
names and kind recognition, the messages for malformed records and a missing matplotlib, and
(when the `tq` binary and the default model are there) `tq bench|niah --plot` end to end.

Run by CTest (tests/CMakeLists.txt) as `python3 -m pytest tests/scripts`; TQ_BINARY and TQ_MODEL
name the binary and the model for the end-to-end tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from matplotlib import image as mpimg

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
PLOT = SCRIPTS / "plot.py"
sys.path.insert(0, str(SCRIPTS))
import plot  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def write(path: Path, record: Any) -> Path:
    path.write_text(json.dumps(record), encoding="utf-8")
    return path


def assert_png(path: Path, min_width: int = 400, min_height: int = 250) -> None:
    assert path.is_file(), path
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    height, width = mpimg.imread(path).shape[:2]
    assert width >= min_width and height >= min_height, (width, height)


def run_plot(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(PLOT), *args], capture_output=True, text=True,
                          check=False)


def niah_record() -> dict[str, Any]:
    def run(kv: str, mode: str, table: list[list[float | None]]) -> dict[str, Any]:
        contexts = [1024, 2048, 4096][:len(table)]
        depths = [0.0, 0.5, 1.0]
        cells = [{"context": c, "depth": d, "correct": v == 1.0}
                 for c, row in zip(contexts, table) for d, v in zip(depths, row)
                 if v is not None]
        return {"kv": kv, "mode": mode, "needles": 2 if mode == "multi" else 1,
                "accuracy": sum(c["correct"] for c in cells) / len(cells),
                "contexts": contexts, "depths": depths, "seeds": 1, "table": table,
                "cells": cells}

    return {"model": "m.gguf", "haystack": "built-in filler", "runs": [
        run("fp16", "single", [[1.0, 1.0, 1.0], [1.0, 0.0, 1.0], [0.0, 1.0, 1.0]]),
        run("tq3.5:window=0", "multi", [[0.0, None, 1.0], [0.5, 1.0, 1.0]]),
    ]}


def quality_record() -> dict[str, Any]:
    rows = [{"kv": "fp16", "bits_per_value": 16.0, "kld_mean": 0.0, "kld_mean_stderr": 0.0}]
    for kv, bits, kld in [("q8", 8.5, 4e-4), ("q4r", 4.5, 0.05), ("tq4", 4.4, 0.03),
                          ("tq3", 3.4, 0.13), ("tq3:window=0", 3.3, 0.2),
                          ("tq4:kcodec=prod", 4.5, 0.2), ("tq3:protect=2/0", 3.9, 0.09),
                          ("k4v3", None, 0.05)]:
        rows.append({"kv": kv, "bits_per_value": bits, "kld_mean": kld,
                     "kld_mean_stderr": kld / 20})
    return {"meta": {"model": "models/m.gguf", "tokens_scored": 512, "context": 256},
            "rows": rows}


def bench_record(schemes: int) -> dict[str, Any]:
    rows = []
    for i in range(schemes):
        for context in (1024, 8192):
            tps = 50.0 / (1 + i / 10) * (1024 / context) ** 0.3
            rows.append({"kv": f"scheme{i}", "context": context, "tokens_per_second": tps,
                         "ms_per_token": 1e3 / tps, "attention_ms": context / 200 + i,
                         "method": "synthetic"})
    return {"model": "models/m.gguf", "threads": 2, "steps": 8, "rows": rows}


def sensitivity_record() -> dict[str, Any]:
    layers = [{"layer": i, "kld_keys": 0.003 * (1 + (i == 1) * 8), "kld_values": 0.0008,
               "top1_keys": 0.97, "top1_values": 0.99} for i in range(6)]
    return {"model": "models/m.gguf", "text": "t.raw", "kv": "tq3", "context": 256,
            "chunks": 1, "layers": layers}


def cuda_record() -> dict[str, Any]:
    rows = [{"kernel": "quantize_k4", "shape": "llama8b", "context": 1, "batch": 1, "us": 3.0}]
    for batch in (1, 8):
        for kernel, gain in (("tq4_tc", 1.5), ("fp16_ours", 1.0), ("sdpa_fp16", 1.0)):
            for context in (4096, 32768, 131072):
                rows.append({"kernel": kernel, "shape": "llama8b", "context": context,
                             "batch": batch, "us": 10.0 * context / 4096 / gain,
                             "speedup_vs_sdpa": gain * (1 + context / 1e6)})
    return {"device": "Some GPU", "sms": 100, "copy_gbs": 3000.0, "flush": "read",
            "rows": rows}


# ---------------------------------------------------------------------------------------------
# Every kind draws a PNG, named as documented.

def test_niah_draws_one_heatmap_per_run(tmp_path: Path) -> None:
    source = write(tmp_path / "grid.json", niah_record())
    written = plot.draw_file(source)
    assert written == [tmp_path / "niah_fp16_single.png",
                       tmp_path / "niah_tq3.5_window-0_multi.png"]
    for png in written:
        assert_png(png)


def test_niah_out_is_a_directory(tmp_path: Path) -> None:
    source = write(tmp_path / "grid.json", niah_record())
    written = plot.draw_file(source, tmp_path / "figures")
    assert all(p.parent == tmp_path / "figures" for p in written)
    with pytest.raises(plot.RecordError, match="directory"):
        plot.draw_file(source, tmp_path / "one.png")


def test_quality_draws_kld_vs_bits(tmp_path: Path) -> None:
    written = plot.draw_file(write(tmp_path / "quality.json", quality_record()))
    assert written == [tmp_path / "quality_kld_vs_bits.png"]
    assert_png(written[0])


@pytest.mark.parametrize("schemes", [3, 20])  # one line per scheme / one row per scheme
def test_bench_draws_decode_speed(tmp_path: Path, schemes: int) -> None:
    written = plot.draw_file(write(tmp_path / "decode.json", bench_record(schemes)))
    assert written == [tmp_path / "decode.png"]
    assert_png(written[0])


def test_gpu_bench_rows_per_batch_skip_prefill_and_skipped(tmp_path: Path) -> None:
    record = bench_record(2)
    for row in record["rows"]:
        row["batch"] = 8
    record["rows"].append({"kind": "prefill", "kv": "scheme0", "context": 8192,
                           "prefill_tokens_per_second": 5000.0})
    record["rows"].append({"kind": "decode", "kv": "scheme1", "batch": 32, "context": 131072,
                           "skipped": "needs 200 GiB"})
    written = plot.draw_file(write(tmp_path / "gpu.json", record))
    assert_png(written[0])
    del record["rows"][0]["tokens_per_second"]  # a decode row without its number is still refused
    with pytest.raises(plot.RecordError):
        plot.draw_file(write(tmp_path / "bad.json", record))


def test_sensitivity_draws_per_layer_kld(tmp_path: Path) -> None:
    out = tmp_path / "chosen name.png"
    assert plot.draw_file(write(tmp_path / "s.json", sensitivity_record()), out) == [out]
    assert_png(out)


def test_cuda_attention_draws_speedup_panels(tmp_path: Path) -> None:
    written = plot.draw_file(write(tmp_path / "cuda_attention.json", cuda_record()))
    assert written == [tmp_path / "cuda_attention.png"]
    assert_png(written[0])


def test_command_line_recognises_each_kind(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    records = {"n.json": niah_record(), "q.json": quality_record(),
               "b.json": bench_record(2), "s.json": sensitivity_record(),
               "c.json": cuda_record()}
    paths = [str(write(tmp_path / name, record)) for name, record in records.items()]
    assert plot.main(paths) == 0
    captured = capsys.readouterr()
    for name in ("niah_fp16_single.png", "q_kld_vs_bits.png", "b.png", "s.png", "c.png"):
        assert_png(tmp_path / name)
        assert f"wrote {tmp_path / name}" in captured.err
    assert captured.out == ""  # tq may print its JSON record on stdout


def test_check_succeeds_with_matplotlib() -> None:
    assert run_plot("--check").returncode == 0


# ---------------------------------------------------------------------------------------------
# Bad input: a message naming the file and the field, exit status 2, no traceback.

def assert_refused(capsys: pytest.CaptureFixture[str], args: list[str], *fragments: str
                   ) -> None:
    # In-process: main() turns every bad record into a message and a status (an unexpected
    # exception would fail the test); test_not_json_is_refused runs the real command line.
    assert plot.main(args) == plot.EXIT_BAD_INPUT
    stderr = capsys.readouterr().err
    for fragment in fragments:
        assert fragment in stderr, stderr


def test_not_json_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"rows": [1, 2', encoding="utf-8")
    result = run_plot(str(path))
    assert result.returncode == plot.EXIT_BAD_INPUT
    assert "Traceback" not in result.stderr
    assert "broken.json: not valid JSON (line 1" in result.stderr, result.stderr


def test_missing_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                 ) -> None:
    assert_refused(capsys, [str(tmp_path / "absent.json")], "absent.json", "cannot read")


def test_unknown_record_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                   ) -> None:
    path = write(tmp_path / "other.json", {"hello": 1})
    assert_refused(capsys, [str(path)], "other.json", "not a record plot.py can draw",
                   "hello")
    assert_refused(capsys, [str(write(tmp_path / "list.json", [1, 2]))], "JSON object")


def test_missing_and_mistyped_fields_are_named(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    record = bench_record(2)
    del record["rows"][1]["tokens_per_second"]
    path = write(tmp_path / "b.json", record)
    assert_refused(capsys, ["--kind", "bench", str(path)], "rows[1]",
                   "'tokens_per_second'")
    record = bench_record(2)
    record["rows"][0]["context"] = "long"
    assert_refused(capsys, [str(write(tmp_path / "c.json", record))], "rows[0].context",
                   "expected a number", '"long"')


def test_inconsistent_niah_table_is_refused(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    record = niah_record()
    record["runs"][0]["table"][1] = [1.0, 1.0]
    assert_refused(capsys, [str(write(tmp_path / "n.json", record))], "runs[0].table[1]",
                   "3 accuracies")
    record = niah_record()
    record["runs"][1]["table"][0][0] = 1.5
    assert_refused(capsys, [str(write(tmp_path / "m.json", record))], "table[0][0]",
                   "outside [0, 1]")


def test_nothing_to_plot_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                    ) -> None:
    record = quality_record()
    record["rows"] = record["rows"][:1]  # fp16 only
    assert_refused(capsys, [str(write(tmp_path / "q.json", record))], "nothing to plot")


def test_missing_matplotlib_names_the_install_command() -> None:
    # matplotlib made unimportable in a child interpreter: what a machine without it shows.
    code = ("import sys, runpy; sys.modules['matplotlib'] = None; "
            f"sys.argv = ['plot.py', '--check']; runpy.run_path({str(PLOT)!r}, "
            "run_name='__main__')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=False)
    assert result.returncode == plot.EXIT_MISSING_DEPENDENCY
    assert "pip install matplotlib" in result.stderr
    assert "Traceback" not in result.stderr


# ---------------------------------------------------------------------------------------------
# Helpers whose output other tools rely on.

def test_file_tag_matches_the_heatmap_names() -> None:
    assert plot.file_tag("tq3.5:window=0") == "tq3.5_window-0"
    assert plot.file_tag("tq4:kcodec=prod,protect=2/0") == "tq4_kcodec-prod_protect-2-0"
    assert plot.niah_png_name("q4r", "single") == "niah_q4r_single.png"


def test_tokens_label() -> None:
    assert [plot.tokens_label(n) for n in (1024, 131072, 1 << 20, 1000)] == \
        ["1k", "128k", "1M", "1000"]


def test_x_ranges_break_only_a_dominant_gap() -> None:
    assert plot.x_ranges([3.0, 3.5, 4.0, 4.5, 8.5]) == [(3.0, 4.5), (8.5, 8.5)]
    assert plot.x_ranges([3.0, 4.0, 5.0, 6.0]) == [(3.0, 6.0)]


def test_scheme_family() -> None:
    assert plot.scheme_family("tq3.5") == "TurboQuant MSE"
    assert plot.scheme_family("tq4:kcodec=prod,protect=2/0") == \
        "TurboQuant prod keys, protect=2/0"
    assert plot.scheme_family("q4r:window=128") == "int block + rotation, window=128"
    assert plot.scheme_family("iq4nlr") == "int block + rotation"
    assert plot.scheme_family("q5_0") == "int block"
    assert plot.scheme_family("q4_1r") == "int block + rotation"


# ---------------------------------------------------------------------------------------------
# `tq ... --plot` end to end on a tiny run (skipped without the binary or the model).

def tq_and_model() -> tuple[str, str]:
    tq = os.environ.get("TQ_BINARY", "")
    model = os.environ.get("TQ_MODEL") or str(
        SCRIPTS.parent / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf")
    if not (tq and os.access(tq, os.X_OK)):
        pytest.skip("TQ_BINARY does not name the tq binary")
    if not os.path.isfile(model):
        pytest.skip(f"model missing: {model}")
    return tq, model


def test_tq_bench_plot_writes_the_png(tmp_path: Path) -> None:
    tq, model = tq_and_model()
    prefix = tmp_path / "speed"
    result = subprocess.run([tq, "bench", "-m", model, "--kv", "fp16", "--kv", "tq3.5",
                             "--contexts", "64,128", "--steps", "1", "-t", "1", "-q",
                             "--out", str(prefix), "--plot"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "speed.json").read_text())["rows"]
    assert_png(tmp_path / "speed.png")


def test_tq_niah_plot_writes_the_heatmap(tmp_path: Path) -> None:
    tq, model = tq_and_model()
    result = subprocess.run([tq, "niah", "-m", model, "--kv", "tq3.5:window=0", "--lengths",
                             "256", "--depths", "50", "--seeds", "1", "-t", "1", "-q",
                             "--json", "--plot", "--out", str(tmp_path)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["runs"][0]["kv"] == "tq3.5:window=0"  # stdout stays JSON
    assert_png(tmp_path / "niah_tq3.5_window-0_single.png")


def test_tq_plot_without_matplotlib_fails_before_the_run(tmp_path: Path) -> None:
    tq, model = tq_and_model()
    fake = tmp_path / "python-without-matplotlib"
    fake.write_text(f"#!/bin/sh\nexec {sys.executable} -c \"import sys; "
                    "sys.modules['matplotlib'] = None; import runpy; sys.argv = sys.argv[1:]; "
                    "runpy.run_path(sys.argv[0], run_name='__main__')\" \"$@\"\n")
    fake.chmod(0o755)
    result = subprocess.run([tq, "bench", "-m", model, "--contexts", "64", "--steps", "1",
                             "--out", str(tmp_path / "b"), "--plot"],
                            capture_output=True, text=True, check=False,
                            env=dict(os.environ, TQ_PYTHON=str(fake)))
    assert result.returncode != 0
    assert "matplotlib" in result.stderr and "pip install matplotlib" in result.stderr
    assert not (tmp_path / "b.json").exists()  # refused before the measurement
