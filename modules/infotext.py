"""The webui's generation-parameters text ("infotext"): create and parse. Pure functions.

Format: the prompt, an optional "Negative prompt: ..." line, and one line of "Key: value" pairs separated by ", ";
values containing commas, colons or quotes are JSON-quoted.
"""

from __future__ import annotations

import json
import re

NEGATIVE_PREFIX = "Negative prompt:"
_PAIR = re.compile(r'\s*(\w[\w \-/+.()]*?):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')
_SIZE = re.compile(r"^(\d+)x(\d+)$")


def quote(value) -> str:
    text = str(value)
    if "," not in text and "\n" not in text and ":" not in text and '"' not in text:
        return text
    return json.dumps(text, ensure_ascii=False)


def unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text
    return text


def format_number(value: float) -> str:
    """7.0 -> "7", 7.5 -> "7.5", as the webui writes CFG scale and strengths."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def create_infotext(prompt: str, negative_prompt: str, parameters: dict) -> str:
    """`parameters` keeps its order; None values are left out."""
    pairs = ", ".join(f"{key}: {quote(format_number(value))}" for key, value in parameters.items() if value is not None)
    negative = f"\n{NEGATIVE_PREFIX} {negative_prompt}" if negative_prompt else ""
    return f"{prompt}{negative}\n{pairs}"


def parse_infotext(text: str) -> dict:
    """Parse an infotext (ours or the webui's) into a dict.

    Keys as written ("Steps", "CFG scale", ...), plus "Prompt" and "Negative prompt"; "Size" (and "Seed
    resize from", "Hires resize") also gives "Size-1"/"Size-2" (width/height) like the webui's parser. Unknown keys
    are kept as strings.
    """
    lines = text.strip().split("\n")
    parameter_line = ""
    if len(_PAIR.findall(lines[-1])) >= 3:  # as the webui: the parameter line may be the only line
        parameter_line = lines.pop()
    prompt_lines: list[str] = []
    negative_lines: list[str] = []
    for line in lines:
        if line.startswith(NEGATIVE_PREFIX) or negative_lines:
            negative_lines.append(line[len(NEGATIVE_PREFIX) :].strip() if not negative_lines else line)
        else:
            prompt_lines.append(line)
    result: dict = {"Prompt": "\n".join(prompt_lines), "Negative prompt": "\n".join(negative_lines)}
    for key, value in _PAIR.findall(parameter_line):
        key, value = key.strip(), unquote(value.strip())
        result[key] = value
        size = _SIZE.match(value) if key in ("Size", "Seed resize from", "Hires resize") else None
        if size:
            result[f"{key}-1"], result[f"{key}-2"] = size.group(1), size.group(2)
    return result
