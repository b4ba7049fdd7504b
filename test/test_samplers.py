import pytest

from modules import sd_samplers

REQUIRED = [
    "Euler",
    "Euler a",
    "Heun",
    "LMS",
    "DPM2",
    "DPM2 a",
    "DPM++ 2M",
    "DPM++ 2M SDE",
    "DPM++ SDE",
    "DDIM",
    "PLMS",
    "UniPC",
    "LCM",
]
BASE_CONFIG = {
    "_class_name": "PNDMScheduler",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "steps_offset": 1,
    "skip_prk_steps": True,
}


@pytest.mark.parametrize("name", REQUIRED)
def test_every_webui_sampler_builds_its_scheduler_with_the_models_betas(name):
    scheduler = sd_samplers.create_scheduler(name, "Automatic", BASE_CONFIG)
    assert type(scheduler).__name__ == sd_samplers.find_sampler(name).scheduler_class
    assert scheduler.config.beta_end == 0.012 and scheduler.config.beta_schedule == "scaled_linear"


def test_unknown_sampler_lists_the_valid_names():
    with pytest.raises(ValueError, match="sampler_name: unknown sampler 'Eulerr'.*DPM\\+\\+ 2M SDE"):
        sd_samplers.find_sampler("Eulerr")


def test_aliases_and_case_are_accepted():
    assert sd_samplers.find_sampler("k_dpmpp_2m").name == "DPM++ 2M"
    assert sd_samplers.find_sampler("euler A").name == "Euler a"


def test_karras_schedule_sets_the_scheduler_flag():
    scheduler = sd_samplers.create_scheduler("DPM++ 2M", "Karras", BASE_CONFIG)
    assert scheduler.config.use_karras_sigmas is True
    assert scheduler.config.algorithm_type == "dpmsolver++"
    exponential = sd_samplers.create_scheduler("Euler", "Exponential", BASE_CONFIG)
    assert exponential.config.use_exponential_sigmas is True


def test_schedule_type_not_supported_by_the_sampler_is_refused_with_the_valid_ones():
    assert sd_samplers.supported_schedule_types("DDIM") == ["Automatic"]
    with pytest.raises(
        ValueError, match="scheduler: 'Karras' is not available with sampler 'DDIM'; valid for it: Automatic"
    ):
        sd_samplers.create_scheduler("DDIM", "Karras", BASE_CONFIG)
    with pytest.raises(ValueError, match="scheduler: unknown schedule type 'Linear'; valid: Automatic, Karras"):
        sd_samplers.check_schedule_type("Euler", "Linear")


def test_legacy_sampler_names_split_into_sampler_and_schedule():
    assert sd_samplers.canonical_names("DPM++ 2M Karras", "Automatic") == ("DPM++ 2M", "Karras")
    assert sd_samplers.canonical_names("k_dpmpp_2m Karras", "karras") == ("DPM++ 2M", "Karras")
    assert sd_samplers.canonical_names("Euler a", "Automatic") == ("Euler a", "Automatic")


def test_names_it_does_not_know_are_left_for_validation_to_refuse():
    assert sd_samplers.canonical_names("Euler b", "Wavy") == ("Euler b", "Wavy")
    assert sd_samplers.canonical_names("DPM++ 2M Karras", "Exponential") == ("DPM++ 2M Karras", "Exponential")
    assert sd_samplers.canonical_names(3, None) == (3, None)


def test_declared_schedule_types_are_what_each_diffusers_class_takes():
    """The table says which schedule types a sampler offers (so listing needs no diffusers); diffusers decides."""
    import inspect

    for spec in sd_samplers.SAMPLERS:
        parameters = inspect.signature(sd_samplers.scheduler_class(spec).__init__).parameters
        offered = [
            schedule for schedule, flag in sd_samplers.SCHEDULE_TYPES.items() if flag is None or flag in parameters
        ]
        assert list(spec.schedule_types) == offered, spec.name


def test_listing_samplers_and_the_cli_help_load_neither_torch_nor_diffusers():
    import subprocess
    import sys

    code = (
        "import sys, serena_kit.cli as cli\n"
        "assert cli.main(['samplers']) == 0 and cli.main(['txt2img', '--help']) == 0\n"
    )
    code += "print(sorted(name for name in ('torch', 'diffusers') if name in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stderr
