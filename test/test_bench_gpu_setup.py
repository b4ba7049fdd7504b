"""The GPU run installs only what the machine lacks, at this project's pins, from carried wheels when it has them."""

from bench import gpu_setup


def test_pins_come_from_the_constraints():
    pins = gpu_setup.pins()
    assert pins["diffusers"].startswith("diffusers==") and "torch" in pins
    assert set(gpu_setup.BENCH_PACKAGES) <= set(pins)


def test_only_missing_packages_are_installed_and_carried_wheels_need_no_index(tmp_path):
    pins = {"diffusers": "diffusers==0.42.1", "numpy": "numpy>=1.26"}
    needed = gpu_setup.missing(["diffusers", "numpy"], pins, version_of={"numpy": "2.5.2"}.get)
    assert needed == ["diffusers==0.42.1"]
    assert "--no-index" not in gpu_setup.pip_install_command(needed, tmp_path)
    (tmp_path / "diffusers-0.42.1-py3-none-any.whl").write_bytes(b"")
    command = gpu_setup.pip_install_command(needed, tmp_path)
    assert command[-1] == "diffusers==0.42.1" and "--no-index" in command and str(tmp_path) in command
