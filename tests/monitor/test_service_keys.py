"""Per-site API keys: plain and hashed keys, file loading, and the errors a bad file gives."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from medfleet.monitor.api_keys import (
    MIN_KEY_LENGTH,
    ApiKeyError,
    ApiKeys,
    generate_api_key,
    hash_api_key,
)

KEY_A = "alpha-key-0123456789"
KEY_B = "bravo-key-0123456789"


def test_hash_is_sha256_of_utf8_bytes() -> None:
    expected = hashlib.sha256("clé-secrète-0123".encode()).hexdigest()
    assert hash_api_key("clé-secrète-0123") == f"sha256:{expected}"


def test_plain_and_hashed_keys_map_to_their_site_only() -> None:
    keys = ApiKeys({"site_a": KEY_A, "site_b": hash_api_key(KEY_B)})
    assert keys.sites == ("site_a", "site_b")
    assert keys.site_for(KEY_A) == "site_a"
    assert keys.site_for(KEY_B) == "site_b"
    # The stored digest itself is not a key, nor is a near miss or nothing.
    assert keys.site_for(hash_api_key(KEY_B)) is None
    assert keys.site_for(KEY_A[:-1]) is None
    assert keys.site_for(KEY_A + " ") is None
    assert keys.site_for("") is None
    assert keys.site_for(None) is None


def test_uppercase_hex_digest_is_accepted() -> None:
    keys = ApiKeys({"site_a": "sha256:" + hashlib.sha256(KEY_A.encode()).hexdigest().upper()})
    assert keys.site_for(KEY_A) == "site_a"


def test_generated_keys_are_long_and_distinct() -> None:
    made = {generate_api_key() for _ in range(20)}
    assert len(made) == 20
    assert all(len(k) >= MIN_KEY_LENGTH for k in made)


@pytest.mark.parametrize(
    ("mapping", "fragment"),
    [
        ({"site_a": "short"}, "at least 16"),
        ({"site_a": ""}, "has no key"),
        ({"site_a": 12345678901234567}, "has no key"),
        ({"site_a": "sha256:abc"}, "64 hex digits"),
        ({"site a": KEY_A}, "invalid site name"),
        ({"../etc": KEY_A}, "invalid site name"),
        ({"site_a": KEY_A, "site_b": KEY_A}, "share one key"),
        ({"site_a": KEY_A, "site_b": hash_api_key(KEY_A)}, "share one key"),
    ],
)
def test_bad_mappings_are_refused_with_the_reason(mapping: dict, fragment: str) -> None:
    with pytest.raises(ApiKeyError, match=fragment):
        ApiKeys(mapping)


@pytest.mark.parametrize(
    "mapping",
    [
        {KEY_A: "site_a"},  # site and key swapped: the "site name" is a key
        {KEY_A: "site_a", KEY_B: "site_b"},
        {"site_a": KEY_B, KEY_A: KEY_B},
        {"site a" + KEY_A: "x" * 20},
    ],
    ids=["swapped", "swapped-two", "duplicate-key-named-by-key", "invalid-name-holding-a-key"],
)
def test_errors_never_show_a_key_written_where_a_site_name_belongs(mapping: dict) -> None:
    with pytest.raises(ApiKeyError) as info:
        ApiKeys(mapping)
    for secret in (KEY_A, KEY_B):
        assert secret not in str(info.value)
    assert "entry" in str(info.value)


def test_not_a_mapping_is_refused() -> None:
    with pytest.raises(ApiKeyError, match="mapping of site -> key"):
        ApiKeys(["site_a", KEY_A])  # type: ignore[arg-type]


def test_yaml_and_json_files_load(tmp_path: Path) -> None:
    yml = tmp_path / "keys.yaml"
    yml.write_text(f"site_a: {KEY_A}\nsite_b: '{hash_api_key(KEY_B)}'\n")
    js = tmp_path / "keys.json"
    js.write_text(json.dumps({"site_a": KEY_A, "site_b": KEY_B}))
    for path in (yml, js):
        keys = ApiKeys.load(path)
        assert keys.site_for(KEY_B) == "site_b"
        assert str(path) in keys.source


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ApiKeyError, match=r"nope\.yaml"):
        ApiKeys.load(missing)
    broken = tmp_path / "broken.yaml"
    broken.write_text("site_a: [unclosed\n")
    with pytest.raises(ApiKeyError, match=r"broken\.yaml is not valid"):
        ApiKeys.load(broken)
    short = tmp_path / "short.yaml"
    short.write_text("site_a: tiny\n")
    with pytest.raises(ApiKeyError, match=r"short\.yaml.*site_a"):
        ApiKeys.load(short)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert ApiKeys.load(empty).sites == ()


SECRET = "Vx3m0cQy5b7l2Qd0p8Yb1nY4uZ6rW9tKc2hJ5sE8aF0"


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (f'site_a: "{SECRET}\nsite_b: "{KEY_B}"\n', None),
        (f"site_b: {KEY_B}\nsite_a: {SECRET}: {SECRET}\n", 2),
        (f"site_a: {SECRET}\n- {KEY_B}\n", 2),
        (f"site_a: [{SECRET}\n", None),
        (f"site_a: !secret {SECRET}\n", 1),
        (f"site_a: *{SECRET}\n", 1),
    ],
    ids=["unclosed-quote", "colon-in-key", "stray-list", "unclosed-list", "unknown-tag", "alias"],
)
def test_a_yaml_error_names_file_and_line_but_never_the_content(
    tmp_path: Path, text: str, line: int | None
) -> None:
    path = tmp_path / "keys.yaml"
    path.write_text(text)
    with pytest.raises(ApiKeyError) as info:
        ApiKeys.load(path)
    message = str(info.value)
    assert str(path) in message
    assert "line " in message and "column " in message
    if line is not None:
        assert f"line {line}," in message
    for secret in (SECRET, KEY_B, SECRET[:8], KEY_B[:8]):
        assert secret not in message


def test_a_json_error_names_file_and_line_but_never_the_content(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text('{"site_a": "' + SECRET + '",\n "site_b": ' + KEY_B + "}\n")
    with pytest.raises(ApiKeyError) as info:
        ApiKeys.load(path)
    message = str(info.value)
    assert str(path) in message and "line 2" in message
    assert SECRET not in message and KEY_B not in message
