"""Prompt styles, the webui's styles.csv (columns: name, prompt, negative_prompt).

A style's prompt containing "{prompt}" wraps the user's prompt; otherwise it is appended after a comma.
The file is `SERENA_STYLES` or `styles.csv` in the working directory.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path

from modules import images


@dataclass(frozen=True)
class PromptStyle:
    name: str
    prompt: str
    negative_prompt: str


def styles_file() -> Path:
    return Path(os.environ.get("SERENA_STYLES", "styles.csv"))


def load_styles(path: Path | None = None) -> dict[str, PromptStyle]:
    path = path or styles_file()
    if not path.is_file():
        return {}
    with open(path, newline="", encoding="utf-8-sig") as handle:
        return {
            row["name"]: PromptStyle(row["name"], row.get("prompt") or "", row.get("negative_prompt") or "")
            for row in csv.DictReader(handle)
            if row.get("name")
        }


def merge_prompt(style_text: str, prompt: str) -> str:
    if "{prompt}" in style_text:
        return style_text.replace("{prompt}", prompt)
    return ", ".join(part for part in (prompt, style_text) if part)


def apply_styles(prompt: str, negative_prompt: str, names: list[str], styles: dict[str, PromptStyle]):
    for name in names:
        style = styles[name]
        prompt = merge_prompt(style.prompt, prompt)
        negative_prompt = merge_prompt(style.negative_prompt, negative_prompt)
    return prompt, negative_prompt


def save_style(style: PromptStyle, path: Path | None = None) -> None:
    """Add `style` to the styles file, or replace the style of that name; the file is replaced atomically."""
    path = path or styles_file()
    styles = load_styles(path) | {style.name: style}
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["name", "prompt", "negative_prompt"])
    writer.writerows([saved.name, saved.prompt, saved.negative_prompt] for saved in styles.values())
    path.parent.mkdir(parents=True, exist_ok=True)
    images.replace_file(path, buffer.getvalue().encode("utf-8"))
