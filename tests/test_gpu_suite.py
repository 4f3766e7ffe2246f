"""The GPU suite's dry run: the same code on the tiny models and the CPU, every row, so it cannot rot."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _suite():
    spec = importlib.util.spec_from_file_location("gpu_suite", ROOT / "benchmarks" / "gpu_suite.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_suite"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_the_dry_run_prints_every_row_and_writes_its_json(tmp_path, tiny_qwen_dir, tiny_qwen3_dir, capsys):
    out = tmp_path / "suite.json"
    assert _suite().main(["--dry-run", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    modes = {(row["model"], row["mode"]) for row in result["reasoners"]}
    assert {(model, mode) for model in ("tiny Qwen2.5-VL", "tiny Qwen3-VL") for mode in ("eager", "static", "int8")
            } <= modes
    assert all(row["decode_tokens_per_s"] > 0 and row["prefill_ms"] > 0 for row in result["reasoners"])
    assert [(row["model"], row["mode"]) for row in result["segmenters"]] == [
        (model, mode) for model in ("tiny SAM2", "tiny SAM3 tracker", "tiny EdgeTAM") for mode in ("eager", "compiled")]
    assert all(row["tracked_frame_ms"] > 0 and row["ready_s"] > 0 for row in result["segmenters"])
    assert {row["segmenter"] for row in result["pipelines"]} == {"tiny SAM2", "tiny EdgeTAM"}
    assert result["bandwidth_gbs"] > 0
    for heading in ("prefill ms", "encode ms", "command → mask ms"):
        assert heading in printed
