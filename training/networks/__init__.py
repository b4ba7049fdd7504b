"""Training of the default model's example networks (a LoRA and a textual-inversion embedding)."""
