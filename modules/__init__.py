"""Serena's engine. See modules/processing.py for the entry point, process_images(p)."""

import os

from modules import determinism

# Before any CPU tensor operation: kernel paths that give the same bytes on every x86-64 CPU.
determinism.apply_caps()

# transformers warns at import that torchvision is absent (Serena never needs it); keep the user's choice if set.
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
