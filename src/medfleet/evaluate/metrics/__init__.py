"""Metrics with every convention explicit, no torch.

Overlap (:mod:`~medfleet.evaluate.metrics.overlap`), surface distances
(:mod:`~medfleet.evaluate.metrics.surface`, over ``_borders``, ``_nearest`` and
``_surfel_normals``, with :mod:`~medfleet.evaluate.metrics.conventions`), classification,
detection, regression, biometry and landmark metrics, and the per-case accumulators
(:mod:`~medfleet.evaluate.metrics.results`,
:mod:`~medfleet.evaluate.metrics.segmentation_metric`).
"""
