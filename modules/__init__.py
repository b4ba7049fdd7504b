"""Serena's engine. See modules/processing.py for the entry point, process_images(p)."""

import os

# transformers warns at import that torchvision is absent (Serena never needs it); keep the user's choice if set.
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
