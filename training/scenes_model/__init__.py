"""What made the scenes model: the procedural scene generator and its training command (not part of the package)."""
