import torch

from modules import rng


def test_minus_one_picks_a_recordable_random_seed():
    seeds = {rng.resolve_seed(-1) for _ in range(5)}
    assert len(seeds) > 1
    assert all(0 <= seed <= rng.MAX_SEED for seed in seeds)
    assert rng.resolve_seed(42) == 42


def test_image_i_gets_seed_plus_i_wrapping_at_the_seed_range():
    assert rng.image_seeds(10, 3) == [10, 11, 12]
    assert rng.image_seeds(rng.MAX_SEED, 2) == [rng.MAX_SEED, 0]


def test_noise_depends_only_on_the_seed():
    assert torch.equal(rng.image_noise((4, 8, 8), 5), rng.image_noise((4, 8, 8), 5))
    assert not torch.equal(rng.image_noise((4, 8, 8), 5), rng.image_noise((4, 8, 8), 6))


def test_slerp_ends_are_its_inputs():
    low, high = rng.randn(1, (4, 8, 8)), rng.randn(2, (4, 8, 8))
    assert torch.allclose(rng.slerp(0.0, low, high), low, atol=1e-5)
    assert torch.allclose(rng.slerp(1.0, low, high), high, atol=1e-5)
    middle = rng.slerp(0.5, low, high)
    assert not torch.allclose(middle, low) and not torch.allclose(middle, high)


def test_slerp_of_parallel_inputs_is_linear():
    low = rng.randn(1, (4, 8, 8))
    assert torch.allclose(rng.slerp(0.25, low, low * 1.0), low, atol=1e-6)


def test_variation_strength_zero_is_the_plain_seed():
    assert torch.equal(rng.image_noise((4, 8, 8), 3, subseed=9, subseed_strength=0.0), rng.randn(3, (4, 8, 8)))
    assert not torch.equal(rng.image_noise((4, 8, 8), 3, subseed=9, subseed_strength=0.3), rng.randn(3, (4, 8, 8)))


def test_seed_resize_keeps_the_old_noise_in_the_centre():
    small = rng.randn(3, (4, 8, 8))
    resized = rng.image_noise((4, 12, 16), 3, seed_resize_from=(8, 8))
    assert resized.shape == (4, 12, 16)
    assert torch.equal(resized[:, 2:10, 4:12], small)


def test_seed_resize_to_a_smaller_size_crops_the_centre():
    large = rng.randn(3, (4, 16, 16))
    cropped = rng.image_noise((4, 8, 8), 3, seed_resize_from=(16, 16))
    assert torch.equal(cropped, large[:, 4:12, 4:12])


def test_step_generators_are_seeded_per_image_and_differ_from_the_initial_noise():
    generators = rng.step_generators([1, 2])
    first = torch.randn((4,), generator=generators[0])
    assert torch.equal(first, torch.randn((4,), generator=rng.step_generators([1])[0]))
    assert not torch.equal(first, torch.randn((4,), generator=generators[1]))
    assert not torch.equal(first, rng.randn(1, (4,)))
