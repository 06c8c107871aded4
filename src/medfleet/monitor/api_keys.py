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
        for site, key in keys.items():
            try:
                check_site_name(site)
            except ApiKeyError as err:
                raise ApiKeyError(f"{source}: {err}") from None
            digest = self._digest_of(site, key, source)
            if digest in digests:
                raise ApiKeyError(
                    f"{source}: sites {digests[digest]!r} and {site!r} share one key; "
                    "give every site its own key"
                )
            digests[digest] = site
        self._site_by_digest = digests
        self._sites = tuple(sorted(digests.values()))
        self.source = source

    @staticmethod
    def _digest_of(site: str, key: object, source: str) -> str:
        if not isinstance(key, str) or not key:
            raise ApiKeyError(f"{source}: site {site!r} has no key (expected a text key)")
        if key.startswith(_HASH_PREFIX):
            digest = key[len(_HASH_PREFIX) :].lower()
            if not _HEX64.match(digest):
                raise ApiKeyError(
                    f"{source}: site {site!r}: 'sha256:' must be followed by 64 hex digits"
                )
            return digest
        if len(key) < MIN_KEY_LENGTH:
            raise ApiKeyError(
                f"{source}: the key of site {site!r} has {len(key)} characters; use at least "
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
            raise ApiKeyError(f"API key file {path} is not valid YAML/JSON: {err}") from None
        if data is None:
            data = {}
        return cls(data, source=f"API key file {path}")
