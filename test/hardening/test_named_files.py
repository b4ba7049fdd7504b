"""A name a remote client gives for a file stays inside its folder: `modules.named_files.safe_name`."""

import pytest

from modules.named_files import is_inside, safe_name


@pytest.fixture
def folder(tmp_path):
    models = tmp_path / "models"
    (models / "sub").mkdir(parents=True)
    (models / "tiny.safetensors").write_bytes(b"x")
    (tmp_path / "secret.safetensors").write_bytes(b"x")
    (models / "out-link.safetensors").symlink_to(tmp_path / "secret.safetensors")
    (models / "out-dir").symlink_to(tmp_path, target_is_directory=True)
    (models / "in-link.safetensors").symlink_to(models / "tiny.safetensors")
    return models


def test_names_inside_the_folder_resolve_to_their_real_path(folder):
    assert safe_name(folder, "tiny.safetensors", "lora") == (folder / "tiny.safetensors").resolve()
    assert safe_name(folder, "sub/new-folder", "outdir") == (folder / "sub" / "new-folder").resolve()  # need not exist
    assert safe_name(folder, "in-link.safetensors", "vae") == (folder / "tiny.safetensors").resolve()


@pytest.mark.parametrize(
    "name, says",
    [
        ("../secret.safetensors", "is a path"),
        ("sub/../../secret.safetensors", "is a path"),
        ("..\\secret.safetensors", "is a path"),
        ("/etc/passwd", "is a path"),
        ("\\\\server\\share\\x", "is a path"),
        ("C:\\models\\x.safetensors", "is a path"),
        ("out-link.safetensors", "leads out"),
        ("out-dir/secret.safetensors", "leads out"),
        ("", "non-empty"),
        ("tiny\x00.safetensors", "NUL"),
    ],
)
def test_names_that_lead_out_are_refused_naming_the_field(folder, name, says):
    with pytest.raises(ValueError, match=f"^embedding: .*{says}"):
        safe_name(folder, name, "embedding")


def test_a_name_must_be_text(folder):
    with pytest.raises(TypeError, match="^upscaler: expected a name"):
        safe_name(folder, 5, "upscaler")


def test_is_inside_follows_symlinks(folder):
    assert is_inside(folder, folder / "in-link.safetensors")
    assert not is_inside(folder, folder / "out-link.safetensors")
