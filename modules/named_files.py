"""Names that cannot leave their folder: what a remote client may say for a file-naming field (checkpoint, VAE, LoRA,
embedding, upscaler, output folder, ...).

`safe_name(folder, name, field)` is the one resolver every such field uses where the caller is not trusted (the
API): the name is relative (no drive, no leading "/"), has no ".." part and no NUL, and its real path (symlinks
followed) is inside the folder's real path. The CLI and the kit take paths as they are: their user owns the machine.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath, PureWindowsPath


def safe_name(folder: str | os.PathLike, name: object, field: str) -> Path:
    """The real path `name` gives inside `folder`; ValueError naming `field` when it is not a name or leads out.

    The path need not exist (an output folder may be created later); when it exists through a symlink, the link's
    target must be inside the folder too.
    """
    if not isinstance(name, str):
        raise TypeError(f"{field}: expected a name (text), got {type(name).__name__}")
    if not name or "\x00" in name:
        raise ValueError(f"{field}: expected a non-empty name without NUL characters, got {name!r}")
    # Both separators count: a name written for Windows must not climb out either.
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if PureWindowsPath(name).drive or name.startswith(("/", "\\")) or ".." in parts:
        raise ValueError(f"{field}: {name!r} is a path; give a name inside the server's folder (no '/', '..')")
    root = Path(folder).resolve()
    resolved = (root / Path(*parts)).resolve()
    if not resolved.is_relative_to(root):
        raise ValueError(f"{field}: {name!r} leads out of the server's folder (through a symlink)")
    return resolved


def is_inside(folder: str | os.PathLike, path: str | os.PathLike) -> bool:
    """Whether `path`'s real location (symlinks followed) is inside `folder`'s."""
    return Path(path).resolve().is_relative_to(Path(folder).resolve())
