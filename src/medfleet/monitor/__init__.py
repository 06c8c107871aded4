"""Site-aware drift monitoring of model outputs.

Modules:

* :mod:`~medfleet.monitor.two_sample` - two-sample tests (KS, Wasserstein, PSI,
  Jensen-Shannon, KL, chi-squared, MMD) and multiple-testing correction
  (``medfleet.monitor.tests``: its deprecated old name).
* :mod:`~medfleet.monitor.records` - the records an agent keeps: ``BatchReport`` (one
  batch's verdict) and ``Alert``.
* :mod:`~medfleet.monitor.references` - reference schemes (site, global,
  production-only, adaptive).
* :mod:`~medfleet.monitor.severity` - none / mild / moderate / severe grading
  with calibrated thresholds.
* :mod:`~medfleet.monitor.batches` - batches of outputs: reading and validation
  (value rules in :mod:`~medfleet.monitor.values`).
* :mod:`~medfleet.monitor.agent` - site agents and the coordinator.
* :mod:`~medfleet.monitor.store` - persistent state and history (SQLite, in memory);
  :mod:`~medfleet.monitor.pgstore` - on PostgreSQL; :mod:`~medfleet.monitor.store_target`
  - which one a path or URL names.
* :mod:`~medfleet.monitor.service`, :mod:`~medfleet.monitor.payloads` - the HTTP service
  and its request bodies.
* :mod:`~medfleet.monitor.config` - the YAML configuration.
* :mod:`~medfleet.monitor.simulate` - multi-site streams with known drift and
  the evaluation of every scheme.

See docs/monitoring.md.
"""
