"""The webui's emphasis modes: how the weights of `(word:1.3)` change the text encoder's output.

Each mode takes one chunk's encoder output `z` (1, 77, dim) and its per-token weights (77,) and returns the
weighted output. No torch import: the field declarations read the mode names without loading the engine.
"""

from __future__ import annotations

DEFAULT = "Original"


def original(z, weights):
    """Multiply each token's vector by its weight, then scale the whole chunk back to its mean before weighting."""
    original_mean = z.mean()
    z = z * weights.reshape(1, -1, 1)
    return z * (original_mean / z.mean())


def no_norm(z, weights):
    """Multiply each token's vector by its weight."""
    return z * weights.reshape(1, -1, 1)


def unweighted(z, weights):
    return z


# Mode name (the webui's, its `emphasis` option and `Emphasis` infotext value) -> what it does.
MODES = {
    "Original": original,
    "No norm": no_norm,
    "Ignore": unweighted,  # brackets are parsed away, their weights not applied
    "None": unweighted,  # brackets are not parsed: they stay in the text (see `parses_brackets`)
}


def parses_brackets(mode: str) -> bool:
    return mode != "None"
