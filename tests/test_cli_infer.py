"""`segzero infer` through its real entry point."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segzero_ros.cli import main

ANSWER = '<think>the mug</think><answer>{"bbox": [420,84,630,420], "points_1": [500,200], "points_2": [520,300]}</answer>'
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.jpg"
    Image.fromarray(np.full((300, 400, 3), 90, np.uint8)).save(path)
    return path


def scripted(tmp_path, text):
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({"*": text}))
    return ["--reasoner-backend", "scripted", "--reasoner", str(outputs), "--segmenter", "box"]


def test_infer_writes_mask_overlay_and_result(tmp_path, photo, capsys):
    out = tmp_path / "out"
    code = main(["infer", "--image", str(photo), "--command", "The mug.", "--out", str(out), *scripted(tmp_path, ANSWER)])
    assert code == 0
    printed = capsys.readouterr().out
    assert printed.startswith("Reasoning: the mug")
    result = json.loads(printed[printed.index("{"):])
    # 400×300 image: x factor 400/840, y factor 300/840.
    assert result["box"] == [200, 30, 300, 150]
    mask = np.asarray(Image.open(out / "photo_mask.png"))
    assert mask.shape == (300, 400) and set(np.unique(mask)) == {0, 255}
    assert (mask == 255).sum() == result["mask_pixels"] == 101 * 121
    assert np.asarray(Image.open(out / "photo_overlay.png")).shape == (300, 400, 3)
    assert json.loads((out / "photo_result.json").read_text())["ok"] is True


def test_portrait_phone_photo_is_segmented_upright(tmp_path, capsys):
    """Stored 400×300 with EXIF orientation 6 (rotate 90° clockwise): the person saw it 300 wide, 400 high."""
    stored = np.zeros((300, 400, 3), np.uint8)
    stored[:, :200] = (255, 0, 0)  # the stored left half is red: upright, it becomes the top half
    exif = Image.Exif()
    exif[0x0112] = 6
    photo = tmp_path / "portrait.png"
    Image.fromarray(stored).save(photo, exif=exif)
    out = tmp_path / "out"
    assert main(["infer", "--image", str(photo), "--command", "mug", "--out", str(out), *scripted(tmp_path, ANSWER)]) == 0
    printed = capsys.readouterr().out
    result = json.loads(printed[printed.index("{"):])
    assert result["image_size"] == [300, 400]
    # Scaled with the upright size: x factor 300/840, y factor 400/840.
    assert result["box"] == [150, 40, 225, 200]
    assert np.asarray(Image.open(out / "portrait_mask.png")).shape == (400, 300)
    overlay = np.asarray(Image.open(out / "portrait_overlay.png"))
    assert overlay.shape == (400, 300, 3)
    assert overlay[5, 5].tolist() == [255, 0, 0] and overlay[395, 295].tolist() == [0, 0, 0]  # outside the box


def test_unparseable_output_exits_1_with_explanation(tmp_path, photo, capsys):
    code = main(["infer", "--image", str(photo), "--command", "mug", "--out", str(tmp_path / "o"),
                 *scripted(tmp_path, "I refuse")])
    assert code == 1
    assert "no mask: unparseable model output" in capsys.readouterr().err
    assert not (tmp_path / "o" / "photo_mask.png").exists()


def test_unreadable_image_is_one_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    assert main(["infer", "--image", str(bad), "--command", "x", *scripted(tmp_path, ANSWER)]) == 2
    assert "cannot read image" in capsys.readouterr().err


def test_help_is_available_for_every_subcommand():
    from segzero_ros.cli import build_parser

    parser = build_parser()
    subcommands = parser._subparsers._group_actions[0].choices
    for name in subcommands:
        with pytest.raises(SystemExit) as exit_info:
            main([name, "--help"])
        assert exit_info.value.code == 0


def test_console_script_runs_as_a_process(tmp_path, photo):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    completed = subprocess.run(
        [sys.executable, "-m", "segzero_ros.cli", "infer", "--image", str(photo), "--command", "mug",
         "--out", str(tmp_path / "o"), *scripted(tmp_path, ANSWER)],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=120, check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert (tmp_path / "o" / "photo_mask.png").exists()


@pytest.mark.slow
def test_tiny_models_run_end_to_end_through_the_cli(tmp_path, tiny_qwen_dir, tiny_sam2, capsys):
    """The real transformers + sam2 code path with the tiny models, as `segzero infer --tiny` runs it."""
    image = REPO / "examples" / "kitchen.png"
    code = main(["infer", "--tiny", "--image", str(image), "--command", "the thing I can cut bread with",
                 "--out", str(tmp_path)])
    assert code == 0
    captured = capsys.readouterr()
    assert "meaningless" in captured.err
    result = json.loads(captured.out[captured.out.index("{"):])
    assert result["ok"] and result["completion_tokens"] > 0
    mask = np.asarray(Image.open(tmp_path / "kitchen_mask.png"))
    assert mask.shape == (480, 640)
    assert (mask == 255).sum() == result["mask_pixels"]


def test_default_real_models_offline_fail_with_one_clear_message(tmp_path, photo, monkeypatch):
    """No hub: exit code 2 and a single actionable line on stderr, never a traceback."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "empty-hf-home")}
    completed = subprocess.run(
        [sys.executable, "-m", "segzero_ros.cli", "infer", "--image", str(photo), "--command", "mug"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300, check=False,
    )
    assert completed.returncode == 2
    assert "Traceback" not in completed.stderr
    assert "Ricky06662/Seg-Zero-7B" in completed.stderr
    assert "--reasoner /path/to" in completed.stderr


@pytest.mark.parametrize("command", ["infer", "eval"])
def test_graph_backend_flags_reach_the_segmenter_config(command, tmp_path):
    from segzero_ros.cli import build_parser
    from segzero_ros.cli.models import pipeline_config_from_args

    required = ["--image", "x.png", "--command", "q"] if command == "infer" else ["--data", "d", "--out", "o"]
    args = build_parser().parse_args([command, *required, "--segmenter", "onnxruntime", "--onnx-dir", str(tmp_path),
                                      "--segmenter-precision", "int8", "--sam2", "cfg.yaml:ckpt.pt"])
    segmenter = pipeline_config_from_args(args, command).segmenter
    assert (segmenter.backend, segmenter.onnx_dir, segmenter.precision) == ("onnxruntime", str(tmp_path), "int8")
    assert (segmenter.config, segmenter.checkpoint) == ("cfg.yaml", "ckpt.pt")
    defaults = pipeline_config_from_args(build_parser().parse_args([command, *required]), command).segmenter
    assert defaults.backend == "sam2" and not hasattr(defaults, "onnx_dir")  # sam2 never sees graph options
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, *required, "--segmenter-precision", "int4"])


def _config(*flags, command="infer"):
    from segzero_ros.cli import build_parser
    from segzero_ros.cli.models import pipeline_config_from_args

    required = ["--image", "x.png", "--command", "q"] if command == "infer" else ["--data", "d", "--out", "o"]
    return pipeline_config_from_args(build_parser().parse_args([command, *required, *flags]), command)


def test_every_backend_option_is_a_flag_with_its_rule(capsys):
    config = _config("--segmenter", "onnxruntime", "--segmenter.cpu_threads", "3", "--reasoner.dtype", "float16",
                     "--segmenter.multimask_output", "false")
    assert (config.segmenter.cpu_threads, config.segmenter.multimask_output) == (3, False)
    assert config.reasoner.dtype == "float16"
    with pytest.raises(SystemExit) as exited:
        _config("--segmenter.cpu_threads", "-1")
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "segmenter.cpu_threads must be >= 0, got -1" in error  # one line, no usage


def test_flags_the_chosen_backend_does_not_read_are_warned_about(capsys):
    config = _config("--segmenter.providers", "CUDAExecutionProvider", "--reasoner.timeout_s", "3")
    assert config.segmenter.backend == "sam2" and not hasattr(config.segmenter, "providers")
    warnings = capsys.readouterr().err
    assert "--segmenter.providers is read by the onnxruntime backend only; the sam2 segmenter ignores it" in warnings
    assert "--reasoner.timeout_s is read by the openai backend only" in warnings


def test_reasoner_url_alone_selects_the_served_model_of_the_openai_backend():
    config = _config("--reasoner-url", "http://127.0.0.1:9/v1", command="eval")
    assert (config.reasoner.backend, config.reasoner.base_url) == ("openai", "http://127.0.0.1:9/v1")
    assert config.reasoner.model is None  # the openai backend asks the server what it serves


@pytest.mark.parametrize(("flags", "message"), [
    (["--tiny", "--reasoner", "/models/mine"], "--tiny runs the tiny offline models; it contradicts --reasoner.model"),
    (["--tiny", "--sam2", "x.pt"], "it contradicts --sam2"),
    (["--reasoner-backend", "scripted", "--reasoner-url", "http://127.0.0.1:9/v1"],
     "--reasoner-url is read by the openai backend only, not scripted"),
    (["--device", "gpu"], "--device: device must be auto, cpu, cuda or cuda:N; got 'gpu'"),
])
@pytest.mark.parametrize("command", ["infer", "eval"])
def test_contradicting_flags_are_one_line_and_exit_code_2(command, flags, message, tmp_path, capsys):
    required = ["--image", "x.png", "--command", "the knife"] if command == "infer" else \
        ["--data", str(tmp_path), "--out", str(tmp_path / "o")]
    assert main([command, *required, *flags]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"segzero {command}: error: ") and message in error and error.count("\n") == 1


def test_offline_without_hf_hub_offline_fails_fast_with_the_way_out(tmp_path, photo):
    """No HF_HUB_OFFLINE and a hub that cannot be reached (here: a closed loopback port): an answer in seconds
    naming the model asked for, the `hf download` command and HF_HUB_OFFLINE, not minutes of retries."""
    env = {key: value for key, value in os.environ.items() if key not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_ENDPOINT="http://127.0.0.1:9", HF_HOME=str(tmp_path / "empty-hf-home"))
    completed = subprocess.run(
        [sys.executable, "-m", "segzero_ros.cli", "infer", "--image", str(photo), "--command", "mug",
         "--reasoner", "someone/some-vl-model"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
        check=False)
    assert completed.returncode == 2, completed.stderr
    assert "Traceback" not in completed.stderr
    for expected in ("someone/some-vl-model", "127.0.0.1:9) cannot be reached", "HF_HUB_OFFLINE=1",
                     "`hf download someone/some-vl-model --local-dir DIR`"):
        assert expected in completed.stderr


@pytest.mark.slow
def test_tiny_qwen3_vl_through_the_cli(tmp_path, tiny_qwen3_dir, tiny_sam2, capsys):
    from segzero_ros.core.answer import parse_answer
    from segzero_ros.tiny.qwen_vl import QWEN3

    image = REPO / "examples" / "kitchen.png"
    assert main(["infer", "--tiny", "--reasoner.family", "qwen3_vl", "--image", str(image), "--command", "the knife",
                 "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    result = json.loads(printed[printed.index("{"):])
    assert result["raw_output"] == QWEN3.completion and result["reasoner"] == str(tiny_qwen3_dir)
    assert result["box"] == parse_answer(QWEN3.completion, (640, 480), 1000).box.as_list()
