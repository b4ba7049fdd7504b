"""How the default model (weights in `modules/default_model/weights`) was made: the procedural shapes dataset, its
tokenizer, architecture, training, and the automatic prompt-adherence evaluation.

    python -m training.default_model.build --random    # untrained weights with the final architecture
    python -m training.default_model.train             # the shipped weights (about an hour on 2 CPU threads)
    python -m training.default_model.evaluate          # adherence tables of docs/default_model.md
"""
