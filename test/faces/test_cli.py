"""The `serena` CLI: in-process through `main(argv)`, and as a real process for the entry points and Ctrl-C."""

import datetime
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from face_helpers import free_port, single_thread_env
from PIL import Image, PngImagePlugin

from modules import images, sd_samplers
from serena_kit.cli import main

TODAY = datetime.date.today().isoformat()


def run(capsys, *argv) -> tuple[int, list[str], str]:
    """(exit code, stdout lines, stderr) of `serena argv...`."""
    code = main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def test_txt2img_prints_each_written_file_on_its_own_line(capsys, isolated_workdir):
    code, lines, err = run(capsys, "txt2img", "--prompt", "a red square", "--steps", 3, "--seed", 5, "--batch-size", 2)
    assert code == 0
    assert lines == [
        f"outputs/txt2img-images/{TODAY}/00000-5.png",
        f"outputs/txt2img-images/{TODAY}/00001-6.png",
        f"outputs/txt2img-grids/{TODAY}/00000-grid.png",
    ]
    for line in lines[:2]:
        assert "Seed: " + line.rsplit("-", 1)[1][:-4] in Image.open(isolated_workdir / line).info["parameters"]
    assert "3/3" in err  # the progress bar, on stderr


def test_txt2img_options_reach_the_infotext(capsys):
    argv = ["txt2img", "--prompt", "p", "--negative-prompt", "n", "--steps", 2, "--cfg-scale", 5.5, "--seed", 9]
    argv += ["--sampler", "DPM++ 2M", "--scheduler", "Karras", "--width", 40, "--height", 24, "--subseed", 3]
    argv += ["--subseed-strength", 0.5, "--clip-skip", 2, "--outdir", "elsewhere", "--quiet"]
    code, lines, err = run(capsys, *argv)
    assert code == 0 and err == "" and lines[0].startswith("elsewhere/txt2img-images/")
    text = Image.open(lines[0]).info["parameters"]
    assert text.startswith("p\nNegative prompt: n\nSteps: 2, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 5.5")
    assert all(part in text for part in ("Seed: 9", "Size: 40x24", "Variation seed: 3", "Clip skip: 2"))


def test_a_legacy_sampler_name_and_the_samples_format_option_on_the_cli(capsys):
    argv = ["txt2img", "--prompt", "p", "--steps", 2, "--seed", 4, "--sampler", "DPM++ 2M Karras", "--quiet"]
    code, lines, _ = run(capsys, *argv, "--samples-format", "webp")
    assert code == 0 and lines[0].endswith("-4.webp")
    assert "Sampler: DPM++ 2M, Schedule type: Karras," in images.read_infotext(lines[0])


def test_img2img_reads_init_images_from_files(capsys):
    Image.new("RGB", (40, 24), (30, 60, 200)).save("init.png")
    argv = ["img2img", "--init-image", "init.png", "--denoising-strength", 0.5, "--steps", 4, "--seed", 2]
    code, lines, _ = run(capsys, *argv, "--width", 32, "--height", 24, "--resize-mode", 1, "--quiet")
    assert code == 0 and lines == [f"outputs/img2img-images/{TODAY}/00000-2.png"]
    assert Image.open(lines[0]).size == (32, 24)
    assert "Denoising strength: 0.5" in Image.open(lines[0]).info["parameters"]


def test_png_info_prints_the_infotext_or_its_json(capsys):
    _, (path,), _ = run(capsys, "txt2img", "--prompt", "a blue circle", "--steps", 2, "--seed", 4, "--quiet")
    code, lines, _ = run(capsys, "png-info", path)
    assert code == 0 and "\n".join(lines) == Image.open(path).info["parameters"]
    code, lines, _ = run(capsys, "png-info", "--json", path)
    parsed = json.loads("\n".join(lines))
    assert (parsed["Prompt"], parsed["Seed"], parsed["Steps"]) == ("a blue circle", "4", "2")


def test_replay_verify_compares_without_writing_unless_asked_to_save(capsys):
    _, (original,), _ = run(capsys, "txt2img", "--prompt", "replay me", "--steps", 3, "--seed", -1, "--quiet")
    code, lines, err = run(capsys, "replay", "--verify", "--quiet", "--outdir", "again", original)
    assert code == 0 and "byte-identical" in err
    assert lines == [] and not Path("again").exists()
    code, (replayed,), err = run(capsys, "replay", "--verify", "--save", "--quiet", "--outdir", "again", original)
    assert code == 0 and "byte-identical" in err
    assert Path(replayed).read_bytes() == Path(original).read_bytes()


def test_replay_verify_fails_when_the_bytes_differ(capsys):
    _, (original,), _ = run(capsys, "txt2img", "--prompt", "replay me", "--steps", 3, "--seed", 8, "--quiet")
    image = Image.open(original)
    altered = PngImagePlugin.PngInfo()
    altered.add_text("parameters", image.info["parameters"])
    image.point(lambda value: 255 - value).save("altered.png", pnginfo=altered)  # same infotext, other pixels
    code, lines, err = run(capsys, "replay", "--verify", "--quiet", "altered.png")
    assert code == 1 and "differs from altered.png" in err and lines == []


def test_serve_without_the_api_extra_names_the_extra(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "fastapi", None)  # as if the api extra were not installed
    code, lines, err = run(capsys, "serve", "--port", free_port())
    assert code == 1 and lines == []
    assert "serena serve needs Serena's optional extra 'api': pip install -e '.[api]'" in err


def test_samplers_and_models_print_one_entry_per_line(capsys, isolated_workdir):
    code, lines, _ = run(capsys, "samplers")
    assert code == 0 and [line.split("\t")[0] for line in lines] == list(sd_samplers.SAMPLER_NAMES)
    assert "DPM++ 2M\tAutomatic, Karras, Exponential" in lines
    model = isolated_workdir / "models" / "mine"
    (model / "unet").mkdir(parents=True)
    (model / "model_index.json").write_text("{}")
    (model / "unet" / "weights.safetensors").write_bytes(b"weights")
    code, lines, _ = run(capsys, "models", "--models-dir", "models")
    assert code == 0 and [line.split(" [")[0] for line in lines] == [
        "serena-default",
        "serena-scenes",
        "serena-flow",
        "mine",
    ]
    assert lines[0].split("\t")[1] == lines[1].split("\t")[1] == "sd"  # the embedded models: SD, sizes of their own
    assert lines[2].split("\t")[1] == "sd3"  # and the flow model
    assert lines[3].endswith(f"]\tunknown\t{model.resolve()}")  # no text encoder config to tell


COMMANDS = [
    "txt2img",
    "img2img",
    "replay",
    "png-info",
    "upscale",
    "upscalers",
    "samplers",
    "models",
    "loras",
    "embeddings",
    "serve",
    "sweep",
    "bench",
]


def test_help_lists_every_command_and_each_command_has_its_own_help(capsys):
    code, lines, _ = run(capsys, "--help")
    listed = [line.split()[0] for line in lines if line.startswith("    ") and line[4] != " "]  # not wrapped help
    assert code == 0 and listed == COMMANDS
    for command in COMMANDS:
        code, lines, _ = run(capsys, command, "--help")
        assert code == 0 and lines[0].startswith(f"usage: serena {command} "), command


BAD_INPUT = [
    # (argv, text the one error line must contain)
    (["txt2img", "--steps", "0"], "--steps: 0 is out of range"),
    (["txt2img", "--steps", "many"], "argument --steps: invalid int value"),
    (["txt2img", "--cfg-scale", "-1"], "--cfg-scale: -1.0 is out of range"),
    (["txt2img", "--sampler", "Nope"], "--sampler: unknown sampler 'Nope'"),
    (["txt2img", "--scheduler", "Wavy"], "--scheduler: unknown schedule type"),
    (["txt2img", "--sampler", "Euler a", "--scheduler", "Karras"], "--scheduler: 'Karras' is not available"),
    (["txt2img", "--width", "33"], "--width: 33 is not allowed"),
    (["txt2img", "--seed", "-7"], "--seed: -7 is out of range"),
    (["txt2img", "--batch-size", "0"], "--batch-size: 0 is out of range"),
    (["txt2img", "--subseed-strength", "2"], "--subseed-strength: 2.0 is out of range"),
    (["txt2img", "--model", "no-such-model"], "--model: no model 'no-such-model'"),
    (["txt2img", "--style", "missing"], "--style: unknown style 'missing'"),
    (["txt2img", "--threads", "0"], "argument --threads: invalid positive integer value"),
    (["txt2img", "--bogus"], "unrecognized arguments: --bogus"),
    (["img2img", "--prompt", "x"], "the following arguments are required: --init-image"),
    (["img2img", "--init-image", "missing.png"], "--init-image: not a readable image ([Errno 2] No such file"),
    (["img2img", "--init-image", "notes.txt"], "--init-image: not a readable image (cannot identify image file"),
    (["img2img", "--init-image", "plain.png", "--denoising-strength", "2"], "--denoising-strength: 2.0 is out"),
    (["img2img", "--init-image", "plain.png", "--resize-mode", "7"], "--resize-mode: 7 is not allowed"),
    (["png-info", "missing.png"], "missing.png: not a readable image"),
    (["replay", "zero-steps.png", "--init-image", "notes.txt"], "--init-image: not a readable image"),
    (["replay", "zero-steps.png", "--mask", "plain.png"], "--mask: an inpainting mask needs the --init-image"),
    (["replay", "zero-steps.png", "--init-image", "plain.png", "--mask", "notes.txt"], "--mask: not a readable image"),
    (["png-info", "plain.png"], "plain.png: the image has no generation parameters"),
    (["replay", "plain.png"], "plain.png: the image has no generation parameters"),
    (["replay", "zero-steps.png"], "zero-steps.png: steps: 0 is out of range"),
    (["serve", "--api-auth", "nopassword"], "--api-auth: expected user:password"),
    (["serve", "--port", "http"], "argument --port: invalid int value"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    ([], "the following arguments are required: COMMAND"),
]


@pytest.mark.parametrize("argv, message", BAD_INPUT, ids=[" ".join(argv) or "nothing" for argv, _ in BAD_INPUT])
def test_bad_input_exits_2_with_one_line_naming_the_option(capsys, isolated_workdir, argv, message):
    Image.new("RGB", (16, 16)).save(isolated_workdir / "plain.png")
    infotext = PngImagePlugin.PngInfo()
    infotext.add_text("parameters", "x\nSteps: 0, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 32x32")
    Image.new("RGB", (16, 16)).save(isolated_workdir / "zero-steps.png", pnginfo=infotext)
    (isolated_workdir / "notes.txt").write_text("not an image")
    code, lines, err = run(capsys, *argv)
    assert code == 2 and lines == []
    assert err.endswith("\n") and err.count("\n") == 1 and err.startswith("serena: error: ")
    assert message in err


def test_a_runtime_failure_exits_1_with_one_line(capsys, isolated_workdir):
    (isolated_workdir / "broken.safetensors").write_bytes(b"this is not a checkpoint")
    code, lines, err = run(capsys, "txt2img", "--model", "broken.safetensors", "--steps", 2, "--quiet")
    assert code == 1 and lines == []
    assert err.startswith("serena: error: ") and err.count("\n") == 1


def serena_script() -> str:
    script = Path(sys.executable).with_name("serena")
    assert script.exists(), "the console script is missing: pip install -e ."
    return str(script)


def test_console_script_and_python_m_are_the_same_cli(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "plain.png")
    for command in ([serena_script()], [sys.executable, "-m", "serena_kit"]):
        result = subprocess.run(
            [*command, "png-info", "plain.png"], cwd=tmp_path, env=single_thread_env(), capture_output=True, timeout=120
        )
        assert result.returncode == 2 and b"no generation parameters" in result.stderr


def test_ctrl_c_interrupts_cleanly_and_keeps_the_finished_images(tmp_path):
    command = [serena_script(), "txt2img", "--prompt", "long", "--steps", 10, "--n-iter", 200, "--seed", 9]
    command += ["--outdir", "out", "--threads", 1, "--no-grid"]
    process = subprocess.Popen(
        [str(arg) for arg in command],
        cwd=tmp_path,
        env=single_thread_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    samples = tmp_path / "out" / "txt2img-images" / TODAY
    try:
        deadline = time.monotonic() + 120
        while len(list(samples.glob("0*.png"))) < 2 and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, err
    paths = out.split()
    assert 2 <= len(paths) < 200 and "interrupted" in err
    assert sorted(str(path.relative_to(tmp_path)) for path in samples.iterdir()) == sorted(paths)  # no partial files
    for index, path in enumerate(paths):
        with Image.open(tmp_path / path) as image:
            image.load()  # a complete PNG
            assert f"Seed: {9 + index}," in image.info["parameters"]
