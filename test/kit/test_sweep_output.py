"""A sweep's output directory, without Ray: each image written as it arrives with a manifest line, reruns resume,
and nothing that is not known to be complete is taken as done. Then sweep specs (YAML), which run into one."""

import json

import pytest
from helpers import png_files, sha
from PIL import Image

import serena_kit as sk
from modules.processing import StableDiffusionProcessingTxt2Img
from modules.sweeps.executors import run_batched
from modules.sweeps.output import MANIFEST, RANDOM_SEEDS, SweepOutput, cell_id, file_sha256, read_manifest
from serena_kit import cli
from serena_kit.sweep_spec import load_spec, run_spec

BASE = dict(prompt="a red circle on a blue background", steps=4, seed=21, subseed=5, exact=True)
AXES = dict(x=("cfg_scale", [3.0, 7.0, 12.0]), y=("steps", [3, 4]))  # 6 cells in 2 batches (steps split them)


def manifest_lines(outdir):
    return [json.loads(line) for line in (outdir / MANIFEST).read_text().splitlines()]


def counting(calls):
    """The default executor, counting the cells it is asked to generate."""

    def execute(processings, on_result=None):
        calls.append(len(processings))
        return run_batched(processings, on_result=on_result)

    return execute


def stop_after(monkeypatch, count):
    """Ctrl-C right after the `count`-th image is written (and its manifest line)."""
    real_write, written = SweepOutput.write, []

    def write(self, *args):
        path = real_write(self, *args)
        written.append(path)
        if len(written) == count:
            raise KeyboardInterrupt
        return path

    monkeypatch.setattr(SweepOutput, "write", write)
    return written


def test_each_image_is_written_with_a_manifest_line_naming_its_cell_seed_file_and_hash(tmp_path):
    result = sk.sweep(BASE, **AXES, outdir=tmp_path / "out")
    lines = manifest_lines(tmp_path / "out")
    assert len(lines) == 6 and len({line["cell"] for line in lines}) == 6
    files = png_files(tmp_path / "out")
    for cell, line in zip(result.cells, lines):  # written in cell order by the local executor
        assert line["file"] in files and line["sha256"] == sha(files[line["file"]])
        assert line["axes"] == {"cfg_scale": cell.x, "steps": cell.y} and line["seed"] == 21
        assert line["parameters"]["cfg_scale"] == cell.x and line["cell"] == cell_id(cell.processing)
        assert cell.png_sha256() == line["sha256"] and cell.processed.paths == [str(tmp_path / "out" / line["file"])]
    assert result.resumed_count == 0


def test_images_match_a_sweep_without_an_output_directory(tmp_path):
    written = sk.sweep(BASE, **AXES, outdir=tmp_path / "out")
    plain = sk.sweep(BASE, **AXES)
    assert [cell.png_sha256() for cell in written.cells] == [cell.png_sha256() for cell in plain.cells]


def test_a_rerun_reads_every_done_cell_back_and_generates_nothing(tmp_path):
    first = sk.sweep(BASE, **AXES, outdir=tmp_path / "out")
    calls = []
    again = sk.sweep(BASE, **AXES, outdir=tmp_path / "out", execute=counting(calls))
    assert calls == [] and again.resumed_count == 6 and all(cell.resumed for cell in again.cells)
    assert [cell.png_sha256() for cell in again.cells] == [cell.png_sha256() for cell in first.cells]
    assert [record["seed"] for record in again.to_records()] == [21] * 6
    assert again.cell(7.0, 4).processed.info == first.cell(7.0, 4).processed.info
    assert again.grid().tobytes() == first.grid().tobytes()
    assert len(manifest_lines(tmp_path / "out")) == 6


def test_an_interrupted_sweep_reruns_only_its_missing_cells(tmp_path, monkeypatch):
    outdir = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        stop_after(monkeypatch, 4)
        sk.sweep(BASE, **AXES, outdir=outdir)
    monkeypatch.undo()
    before = {path.name: path.stat().st_ino for path in outdir.glob("*.png")}
    assert len(before) == 4 and len(manifest_lines(outdir)) == 4

    calls = []
    result = sk.sweep(BASE, **AXES, outdir=outdir, execute=counting(calls))
    assert calls == [2] and result.resumed_count == 4
    assert {path.name: path.stat().st_ino for path in outdir.glob("*.png") if path.name in before} == before
    lines = manifest_lines(outdir)
    assert len(lines) == 6 and len({line["cell"] for line in lines}) == 6
    assert png_files(outdir) == png_files(sk_sweep_into(tmp_path / "reference"))


def sk_sweep_into(outdir):
    sk.sweep(BASE, **AXES, outdir=outdir)
    return outdir


def test_files_not_known_to_be_complete_are_generated_again(tmp_path):
    """A file with wrong bytes, a file without its manifest line (killed between the two writes), a manifest line cut
    short (killed mid-append), a temp file of a write that never finished: each cell concerned is redone."""
    outdir = sk_sweep_into(tmp_path / "out")
    reference = png_files(outdir)
    lines = (outdir / MANIFEST).read_text().splitlines(keepends=True)
    corrupted, unlisted, cut = (json.loads(lines[i])["file"] for i in (0, 1, 5))
    (outdir / corrupted).write_bytes(reference[corrupted][:-10])  # the bytes its line does not record
    (outdir / MANIFEST).write_text("".join(lines[:1] + lines[2:5]) + lines[5][:40])
    (outdir / ".tmp-abc.png").write_bytes(b"half a png")

    calls = []
    result = sk.sweep(BASE, **AXES, outdir=outdir, execute=counting(calls))
    assert calls == [3] and result.resumed_count == 3
    assert png_files(outdir) == reference and not (outdir / ".tmp-abc.png").exists()
    entries = read_manifest(outdir / MANIFEST)  # the cut line is skipped; the redone cells' new lines win
    assert len(entries) == 6
    assert all(entry["sha256"] == file_sha256(outdir / entry["file"]) for entry in entries.values())
    assert (outdir / MANIFEST).read_text().count("\n") == 8  # 4 kept, the cut one ended, 3 new


def test_random_seeds_are_drawn_once_per_output_directory(tmp_path):
    base = BASE | {"seed": -1, "subseed": -1}
    first = sk.sweep(base, x=("seed", [-1, 8]), y=("cfg_scale", [3, 6]), outdir=tmp_path / "out")
    again = sk.sweep(base, x=("seed", [-1, 8]), y=("cfg_scale", [3, 6]), outdir=tmp_path / "out")
    assert again.resumed_count == 4 and again.x.values == first.x.values and first.x.values[1] == 8
    seeds = json.loads((tmp_path / "out" / RANDOM_SEEDS).read_text())
    assert set(seeds) == {"x[0]", "subseed"} and seeds["x[0]"] == first.x.values[0]
    other = sk.sweep(base, x=("seed", [-1, 8]), y=("cfg_scale", [3, 6]), outdir=tmp_path / "other")
    assert other.x.values[0] != first.x.values[0]  # a new directory draws anew (equal once in 2**32)


def test_a_cell_id_covers_what_is_generated_and_not_where_it_is_saved():
    p = StableDiffusionProcessingTxt2Img(**BASE)
    saved_elsewhere = StableDiffusionProcessingTxt2Img(**BASE, outpath_samples="x", do_not_save_samples=True)
    assert cell_id(p) == cell_id(saved_elsewhere) == cell_id(StableDiffusionProcessingTxt2Img(**BASE))
    assert cell_id(p) != cell_id(StableDiffusionProcessingTxt2Img(**(BASE | {"cfg_scale": 8.0})))
    assert cell_id(p) != cell_id(sk.StableDiffusionProcessingImg2Img(**BASE, init_images=[Image.new("RGB", (8, 8))]))


def test_one_sweep_at_a_time_writes_to_an_output_directory(tmp_path):
    with SweepOutput(tmp_path / "out"):
        with pytest.raises(RuntimeError, match="is in use by another running sweep"):
            SweepOutput(tmp_path / "out")
    SweepOutput(tmp_path / "out").close()  # released on close


def test_ray_options_need_the_ray_executor():
    with pytest.raises(ValueError, match="^workers: only with executor='ray'"):
        sk.sweep(BASE, x=("cfg_scale", [3]), workers=2)
    with pytest.raises(ValueError, match="^executor: expected 'local' or 'ray', got 'dask'"):
        sk.sweep(BASE, x=("cfg_scale", [3]), executor="dask")


def test_the_ray_executor_without_ray_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(ImportError, match=r"^executor='ray' needs Serena's optional extra 'ray': pip install -e '\.\["):
        sk.sweep(BASE, x=("cfg_scale", [3]), executor="ray")


# Sweep specs (serena_kit.sweep_spec) ---------------------------------------------------------------------------------

SPEC = """
base: {prompt: a red circle on a blue background, steps: 4, seed: 21, subseed: 5, exact: true}
x: {name: cfg_scale, values: [3.0, 7.0, 12.0]}
y: [steps, [3, 4]]
outdir: runs/first
"""


def test_a_spec_runs_like_sweep_and_resumes_with_its_grid_in_outdir(tmp_path):
    (tmp_path / "spec.yaml").write_text(SPEC)
    result = run_spec(tmp_path / "spec.yaml", progress=False)
    outdir = tmp_path / "runs" / "first"  # relative to the spec's folder
    assert png_files(outdir).keys() >= {"grid.png"} and len(manifest_lines(outdir)) == 6
    reference = sk.sweep(BASE, **AXES)
    assert [cell.png_sha256() for cell in result.cells] == [cell.png_sha256() for cell in reference.cells]
    assert run_spec(tmp_path / "spec.yaml", progress=False).resumed_count == 6


def test_a_spec_names_its_ray_options_and_the_key_at_fault(tmp_path):
    spec = tmp_path / "spec.yaml"
    ray = "{address: auto, workers: 8, gpus_per_worker: 1, batch_timeout_s: 900, resource_wait_s: 120}"
    spec.write_text(SPEC + f"executor: ray\nray: {ray}\n")
    loaded = load_spec(spec)
    assert loaded.executor == "ray"
    assert loaded.ray == {
        "address": "auto",
        "workers": 8,
        "gpus_per_worker": 1,
        "batch_timeout_s": 900,
        "resource_wait_s": 120,
    }
    assert loaded.axes == {"x": ("cfg_scale", [3.0, 7.0, 12.0]), "y": ("steps", [3, 4])}
    spec.write_text(SPEC + "colour: red\n")
    with pytest.raises(ValueError, match="^colour: unknown key"):
        load_spec(spec)
    spec.write_text(SPEC.replace("outdir: runs/first", ""))
    with pytest.raises(ValueError, match="^outdir: required"):
        load_spec(spec)


def test_the_sweep_command_prints_each_file_then_the_grid_and_resumes(tmp_path, capsys):
    (tmp_path / "spec.yaml").write_text(SPEC)
    argv = ["sweep", str(tmp_path / "spec.yaml"), "--outdir", str(tmp_path / "out"), "--quiet"]
    assert cli.main(argv) == 0
    printed = capsys.readouterr()
    files = [line["file"] for line in manifest_lines(tmp_path / "out")] + ["grid.png"]
    assert printed.out.splitlines() == [str(tmp_path / "out" / name) for name in files]
    assert "serena: 6 cells, 6 generated, 0 already in" in printed.err
    assert cli.main(argv) == 0 and "6 cells, 0 generated, 6 already in" in capsys.readouterr().err
