"""Words the default model's tokenizer knows as whole tokens.

Kept separate from the dataset so the tokenizer (and therefore the text encoder's embedding table) does not
change when caption templates are tuned. Every caption word must be listed here; other words still tokenize
through the byte-level fallback.
"""

COLOUR_WORDS = ("red", "green", "blue", "yellow", "white", "black", "orange", "purple")
SHAPE_WORDS = ("circle", "square", "triangle")
SIZE_WORDS = ("small", "large")
POSITION_WORDS = ("left", "right", "top", "bottom", "center")
FUNCTION_WORDS = ("a", "an", "the", "on", "of", "in", "at", "with", "and", "shape", "background")

WORDS = COLOUR_WORDS + SHAPE_WORDS + SIZE_WORDS + POSITION_WORDS + FUNCTION_WORDS
