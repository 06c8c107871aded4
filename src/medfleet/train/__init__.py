"""Training side of medfleet: data loading, the trainer, paradigms, transfer analysis, prediction.

Modules import torch; ``medfleet.train.config`` does not.

Example:
    >>> from medfleet.train.sampling import task_probabilities
    >>> task_probabilities({"a": 3, "b": 1}, "uniform")
    {'a': 0.5, 'b': 0.5}
"""
