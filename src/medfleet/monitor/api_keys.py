"""Per-site API keys of the monitoring service: a key writes one site's stream and no other.

The key file is YAML or JSON mapping each site to its key::

    site_a: "5Zr0...long random text..."
    site_b: "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

A key is either the key itself or ``sha256:`` followed by the hex SHA-256 digest of the key
(:func:`hash_api_key` computes it), so the file on the server need not hold usable keys.
Keys are compared through their digests with :func:`hmac.compare_digest`. Every key must be
at least :data:`MIN_KEY_LENGTH` characters, and no two sites may share one.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path

import yaml

from medfleet.errors import MedfleetError

MIN_KEY_LENGTH = 16
"""Shortest key accepted (in characters)."""

_HASH_PREFIX = "sha256:"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_SITE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class ApiKeyError(MedfleetError, ValueError):
    """The API key file or mapping is malformed."""


def hash_api_key(key: str) -> str:
    """The stored form of a key: ``sha256:`` and the hex digest of its UTF-8 bytes.

    Example:
        >>> hash_api_key("correct horse battery staple")[:15]
        'sha256:c4bbcb1f'
    """
    return _HASH_PREFIX + hashlib.sha256(key.encode("utf-8")).hexdigest()


def generate_api_key() -> str:
    """A new random key (43 URL-safe characters, 256 bits).

    Example:
        >>> len(generate_api_key())
        43
    """
    return secrets.token_urlsafe(32)


def check_site_name(site: str) -> str:
    """Return ``site`` if it is a valid site name, else raise :class:`ApiKeyError`.

    A site name is 1-128 characters of letters, digits, ``_``, ``.`` and ``-``, starting
    with a letter or digit (it appears in URLs).

    Example:
        >>> check_site_name("site_a")
        'site_a'
    """
    if not isinstance(site, str) or not _SITE.match(site):
        raise ApiKeyError(
            f"invalid site name {site!r}: use 1-128 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return site


def _entry(number: int, site: object) -> str:
    """How an error names a key file entry: by number, and by site only when it is short.

    A name as long as a key is not shown: in a file with site and key swapped it is a key.

    Example:
        >>> _entry(2, "site_b"), _entry(3, "x" * 40)
        ("entry 2 (site 'site_b')", 'entry 3 (site name not shown: as long as a key)')
    """
    if isinstance(site, str) and len(site) < MIN_KEY_LENGTH:
        return f"entry {number} (site {site!r})"
    return f"entry {number} (site name not shown: as long as a key)"


_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"|`[^`]*`")
_PARSER_TOKEN = re.compile(r"^.?$|^<[a-z ]+>$")


def _masked(text: str) -> str:
    """``text`` with quoted fragments masked, except the parser's tokens (``','``, ``'<...>'``)."""
    return _QUOTED.sub(lambda m: m[0] if _PARSER_TOKEN.match(m[0][1:-1]) else "...", text)


def _at(mark: yaml.Mark) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}"


def syntax_error_summary(err: Exception) -> str:
    r"""Where and what a YAML/JSON syntax error is, without any text of the file.

    Parsers quote the offending text (a YAML error prints the whole line, key included);
    this keeps the position and the parser's words with every quoted fragment masked.

    Example:
        >>> try:
        ...     yaml.safe_load('site_a: "abcdefghijklmnopqrst\nsite_b: x')
        ... except yaml.YAMLError as err:
        ...     print(syntax_error_summary(err).replace("; ", "\n"))
        line 1, column 9: while scanning a quoted scalar
        line 2, column 10: found unexpected end of stream
    """
    if isinstance(err, json.JSONDecodeError):
        return f"line {err.lineno}, column {err.colno}: {_masked(err.msg)}"
    if isinstance(err, yaml.MarkedYAMLError):
        parts = []
        context, problem = err.context_mark, err.problem_mark
        if (
            err.context
            and context is not None
            and (problem is None or context.line != problem.line)
        ):
            parts.append(f"{_at(context)}: {_masked(err.context)}")
            if err.problem:
                parts.append(f"{_at(problem)}: {_masked(err.problem)}" if problem else err.problem)
        else:
            words = ": ".join(_masked(w) for w in (err.context, err.problem) if w)
            mark = problem or context
            parts.append(f"{_at(mark)}: {words}" if mark is not None else words)
        return "; ".join(parts) or type(err).__name__
    return type(err).__name__


class ApiKeys:
    """Which site each API key may write.

    Args:
        keys: Site -> key, or site -> ``sha256:<hex digest>`` of the key.
        source: Where the mapping came from (named in errors).

    Example:
        >>> keys = ApiKeys({"site_a": "a" * 20, "site_b": hash_api_key("b" * 20)})
        >>> keys.site_for("b" * 20), keys.site_for("wrong-key-wrong-key"), keys.sites
        ('site_b', None, ('site_a', 'site_b'))
    """

    def __init__(self, keys: Mapping[str, str], source: str = "API keys") -> None:
        if not isinstance(keys, Mapping):
            raise ApiKeyError(
                f"{source}: expected a mapping of site -> key, got {type(keys).__name__}"
            )
        digests: dict[str, str] = {}
        for number, (site, key) in enumerate(keys.items(), start=1):
            entry = _entry(number, site)
            try:
                check_site_name(site)
            except ApiKeyError:
                raise ApiKeyError(
                    f"{source}: {entry} has an invalid site name: use 1-128 letters, digits, "
                    "'_', '.' or '-', starting with a letter or digit, as 'site: key'"
                ) from None
            digest = self._digest_of(entry, key, source)
            if digest in digests:
                raise ApiKeyError(
                    f"{source}: {_entry(list(keys).index(digests[digest]) + 1, digests[digest])}"
                    f" and {entry} share one key; give every site its own key"
                )
            digests[digest] = site
        self._site_by_digest = digests
        self._sites = tuple(sorted(digests.values()))
        self.source = source

    @staticmethod
    def _digest_of(entry: str, key: object, source: str) -> str:
        if not isinstance(key, str) or not key:
            raise ApiKeyError(f"{source}: {entry} has no key (expected a text key)")
        if key.startswith(_HASH_PREFIX):
            digest = key[len(_HASH_PREFIX) :].lower()
            if not _HEX64.match(digest):
                raise ApiKeyError(f"{source}: {entry}: 'sha256:' must be followed by 64 hex digits")
            return digest
        if len(key) < MIN_KEY_LENGTH:
            raise ApiKeyError(
                f"{source}: the key of {entry} has {len(key)} characters; use at least "
                f"{MIN_KEY_LENGTH}, e.g. one from medfleet.monitor.api_keys.generate_api_key()"
            )
        return hash_api_key(key)[len(_HASH_PREFIX) :]

    @property
    def sites(self) -> tuple[str, ...]:
        """Sites that have a key, sorted."""
        return self._sites

    def site_for(self, key: str | None) -> str | None:
        """The site that ``key`` writes, or None when the key is missing or unknown."""
        if not key:
            return None
        presented = hash_api_key(key)[len(_HASH_PREFIX) :]
        found = None
        for digest, site in self._site_by_digest.items():
            if hmac.compare_digest(digest, presented):
                found = site
        return found

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ApiKeys:
        """Read a YAML or JSON key file (site -> key or ``sha256:`` digest).

        Raises:
            ApiKeyError: When the file is missing, unreadable or malformed; the message
                names the file.
        """
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            raise ApiKeyError(
                f"cannot read API key file {path}: {err.strerror or err} "
                "(fix: give --keys a YAML/JSON file of site: key lines)"
            ) from None
        try:
            data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
        except (ValueError, yaml.YAMLError) as err:
            raise ApiKeyError(
                f"API key file {path} is not valid YAML/JSON: {syntax_error_summary(err)} "
                "(the file's content is not shown, as it holds keys)"
            ) from None
        if data is None:
            data = {}
        return cls(data, source=f"API key file {path}")
