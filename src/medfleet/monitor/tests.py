"""Deprecated alias of :mod:`medfleet.monitor.two_sample` (the two-sample drift tests).

The module was renamed because it holds production code, not tests. Every public name of
:mod:`medfleet.monitor.two_sample` can still be imported from here, with a
:class:`DeprecationWarning`; ``TestResult`` is
:class:`~medfleet.monitor.two_sample.DriftTestResult`. Import from
:mod:`medfleet.monitor.two_sample` instead.

Example:
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     from medfleet.monitor.tests import ks_test
    >>> caught[0].category.__name__, ks_test.__module__
    ('DeprecationWarning', 'medfleet.monitor.two_sample')
"""

from __future__ import annotations

import warnings
from typing import Any

from medfleet.monitor import two_sample as _two_sample

_RENAMED = {"TestResult": "DriftTestResult"}

__all__ = [*_two_sample.__all__, *_RENAMED]


def __getattr__(name: str) -> Any:
    """The name from :mod:`medfleet.monitor.two_sample`, with a DeprecationWarning."""
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    target = _RENAMED.get(name, name)
    warnings.warn(
        f"medfleet.monitor.tests is deprecated: import {target} from medfleet.monitor.two_sample",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(_two_sample, target)
