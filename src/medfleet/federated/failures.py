"""What a failing site tells the server: an error category and a short code, nothing else.

A site's exception text names its case ids, its absolute file paths and its code (the
traceback), none of which may leave the hospital. The ClientApp therefore catches every
exception, logs the full text at the site only (:func:`log_site_failure`: the site's Python
log and ``<state-dir>/logs/errors.log``) and answers with a Flower error ``Message`` whose
``Error.reason`` is one of the codes of :data:`SITE_FAILURES` (``<category>/<code>``) and
whose ``Error.code`` is Flower's ``CLIENT_APP_RAISED_EXCEPTION``. The server records only that
code (:func:`failure_code`); an error reply whose reason is not one of these codes (an older
client, a Flower runtime error) is recorded by its Flower error number, never by its text.

The codes are defined here once and mapped from medfleet's exception types
(:data:`_RULES`, first match over the exception and its causes).

Example:
    >>> from medfleet.errors import ImageReadError
    >>> from medfleet.train.datasets import DataError
    >>> try:
    ...     try:
    ...         raise ImageReadError("/site/PATIENT_7/scan.png", "truncated")
    ...     except ImageReadError as exc:
    ...         raise DataError("task 't', case 'PATIENT_7': cannot read ...") from exc
    ... except DataError as exc:
    ...     classify(exc)
    'data/unreadable-image'
    >>> classify(KeyError("x")), classify(SiteStateError("cannot read state/local.pt"))
    ('internal/error', 'state/corrupt')
"""

from __future__ import annotations

import datetime as _dt
import errno
import logging
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from medfleet.errors import ImageReadError, InputError, MedfleetError

LOGGER = logging.getLogger("medfleet.federated.site")

SITE_FAILURES: dict[str, str] = {
    "data/unreadable-image": "an image of the site's rows cannot be read (corrupt, truncated, "
    "wrong type)",
    "data/invalid": "a row or table of the site cannot be used (bad label, missing column, "
    "mixed channels, missing table)",
    "data/no-training-rows": "the site has no training row in any task",
    "state/corrupt": "the site's state file (state/local.pt) cannot be read or belongs to "
    "another run or task list",
    "state/unwritable": "the site cannot write its state file or its model",
    "config/unknown-site": "the SuperNode names no site of the manifest (node-config site / "
    "partition-id)",
    "config/invalid-job": "the run configuration or job file cannot be used at the site",
    "fault/injected": "a fault injected on purpose (FederatedConfig.faults)",
    "resource/out-of-memory": "the site ran out of memory",
    "resource/disk-full": "the site's disk is full",
    "internal/error": "any other error (a defect; the site's log holds the traceback)",
}
"""The codes a site may send, with what each means (docs/federated.md lists them)."""

SERVER_FAILURES: dict[str, str] = {
    "network/no-reply": "no reply within --round-timeout (site too slow, disconnected or lost)",
    "network/node-unavailable": "Flower reports the node unavailable",
    "network/reply-unavailable": "Flower reports the reply unavailable (expired or lost)",
    "flower/load-client-app": "the SuperNode could not load the ClientApp",
    "flower/client-app-crashed": "the ClientApp process crashed",
    "flower/mod-failed": "a Flower client mod refused the message",
    "flower/error": "another Flower error",
    "server/not-sampled": "the site was not sampled in the round",
}
"""Codes the server records itself (no site sent any text for them)."""

FAILURE_CODES: dict[str, str] = {**SITE_FAILURES, **SERVER_FAILURES}
"""Every code ``federated.json`` may hold in ``error`` / ``eval_error``."""

# Flower's ErrorCode numbers (flwr.common.constant.ErrorCode, 1.42); a test checks them.
_FLOWER_ERRORS: dict[int, str] = {
    0: "flower/error",
    1: "flower/load-client-app",
    2: "internal/error",
    3: "network/reply-unavailable",
    4: "network/reply-unavailable",
    5: "network/node-unavailable",
    6: "flower/mod-failed",
    7: "flower/error",
    8: "flower/client-app-crashed",
}
CLIENT_APP_RAISED_EXCEPTION = 2


class SiteError(MedfleetError):
    """Base of the errors a site raises about its own setup (mapped to a code)."""


class SiteStateError(SiteError):
    """The site's state file cannot be read or is not this run's (``state/corrupt``)."""


class SiteWriteError(SiteError):
    """The site cannot write its state or model (``state/unwritable``)."""


class SiteConfigError(SiteError):
    """The node names no site of the manifest (``config/unknown-site``)."""


class JobConfigError(SiteError):
    """The run configuration cannot be turned into a job (``config/invalid-job``)."""


class NoTrainingRowsError(SiteError):
    """The site has no training row (``data/no-training-rows``)."""


class InjectedFault(MedfleetError):
    """A fault injected by ``FederatedConfig.faults`` (drills and tests; ``fault/injected``)."""


_RULES: tuple[tuple[type[BaseException], str], ...] = (
    (SiteStateError, "state/corrupt"),
    (SiteWriteError, "state/unwritable"),
    (InjectedFault, "fault/injected"),
    (SiteConfigError, "config/unknown-site"),
    (JobConfigError, "config/invalid-job"),
    (ImageReadError, "data/unreadable-image"),
    (NoTrainingRowsError, "data/no-training-rows"),
    (InputError, "data/invalid"),
    (MemoryError, "resource/out-of-memory"),
)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def classify(exc: BaseException) -> str:
    """The code of :data:`SITE_FAILURES` for an exception (rules in order, over its causes).

    Example:
        >>> classify(OSError(errno.ENOSPC, "No space left on device"))
        'resource/disk-full'
    """
    chain = list(_chain(exc))
    for kind, code in _RULES:
        if any(isinstance(e, kind) for e in chain):
            return code
    for e in chain:
        if type(e).__name__ == "OutOfMemoryError":  # torch.OutOfMemoryError (CUDA)
            return "resource/out-of-memory"
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            return "resource/disk-full"
    return "internal/error"


def category(code: str) -> str:
    """The category of a code (the part before ``/``).

    Example:
        >>> category("state/corrupt")
        'state'
    """
    return code.split("/", 1)[0]


def failure_code(error: Any) -> str:
    """What the server records for a Flower ``Error``: a known code, never free text.

    Example:
        >>> from flwr.app import Error
        >>> failure_code(Error(code=2, reason="data/unreadable-image"))
        'data/unreadable-image'
        >>> failure_code(Error(code=2, reason="<class 'ValueError'>:<'/site/PATIENT_7.png'>"))
        'internal/error'
        >>> failure_code(Error(code=5, reason="node unavailable"))
        'network/node-unavailable'
    """
    reason = getattr(error, "reason", None)
    if isinstance(reason, str) and reason in SITE_FAILURES:
        return reason
    return _FLOWER_ERRORS.get(int(getattr(error, "code", 0) or 0), "flower/error")


def error_reply(message: Any, code: str) -> Any:
    """A Flower error reply to ``message`` carrying only ``code``.

    Example:
        >>> from flwr.app import Message, RecordDict
        >>> from flwr.supercore.task_identity import TaskIdentity
        >>> TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 0
        >>> msg = Message(RecordDict(), dst_node_id=2, message_type="train")
        >>> reply = error_reply(msg, "state/corrupt")
        >>> reply.has_error(), reply.error.code, reply.error.reason
        (True, 2, 'state/corrupt')
    """
    from flwr.app import Error, Message

    if code not in SITE_FAILURES:
        code = "internal/error"
    return Message(Error(code=CLIENT_APP_RAISED_EXCEPTION, reason=code), reply_to=message)


def log_site_failure(
    exc: BaseException,
    code: str,
    *,
    site: str | None,
    phase: str,
    server_round: int,
    state_dir: Path | None,
) -> Path | None:
    """Log a site's failure where only the site sees it; return the log file, if written.

    The full text with its traceback is appended to ``<state_dir>/logs/errors.log`` (when
    the state folder is known) and logged at DEBUG level; one line (code and message, no
    traceback) is logged at ERROR level on the ``medfleet.federated.site`` logger.

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp())
        >>> try:
        ...     raise SiteStateError("cannot read /site/state/local.pt: truncated")
        ... except SiteStateError as exc:
        ...     path = log_site_failure(exc, "state/corrupt", site="a", phase="train",
        ...                             server_round=1, state_dir=d)
        >>> text = path.read_text()
        >>> "local.pt" in text and "Traceback" in text
        True
    """
    where = f"site {site!r}" if site else "this site"
    full = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    path: Path | None = None
    if state_dir is not None:
        try:
            path = Path(state_dir) / "logs" / "errors.log"
            path.parent.mkdir(parents=True, exist_ok=True)
            stamp = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
            with path.open("a", encoding="utf-8") as fh:
                fh.write(f"--- {stamp} {where}, {phase} round {server_round}: {code}\n{full}\n")
        except OSError as write_error:
            LOGGER.warning("%s: cannot write its error log: %s", where, write_error)
            path = None
    line = " ".join(str(exc).split()) or type(exc).__name__
    LOGGER.error(
        "%s failed in %s round %s (%s): %s%s",
        where,
        phase,
        server_round,
        code,
        line,
        f" (full text: {path})" if path is not None else "",
    )
    LOGGER.debug("%s", full)
    return path
