"""Tools that made what Serena ships, kept out of the installed packages: the default model's dataset, training and
evaluation (`training.default_model`), and the builders of the shipped tokenizer files. Run from a source checkout,
e.g. `python -m training.default_model.train`."""
