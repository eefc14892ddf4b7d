"""Tests of the shared header grammar (RFC 9110 §5, RFC 6455 §4.1 and §9.1)."""

from __future__ import annotations

from typing import Any

import pytest

from wspool.exceptions import WebSocketConfigurationException, WebSocketHandshakeException
from wspool.protocol.headers import (
    CREDENTIAL_HEADERS,
    check_header,
    check_subprotocols,
    host_for_header,
    is_field_value,
    is_token,
    normalize_headers,
    parse_extensions,
    split_list,
    without_credentials,
)

# ------------------------------------------------------------------- grammar


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Sec-WebSocket-Key", True),
        ("!#$%&'*+-.^_`|~09az", True),
        ("", False),
        ("a b", False),
        ("a:b", False),
        ("é", False),
        ("(x)", False),
        ("a\r", False),
    ],
)
def test_is_token_rfc9110_5_6_2(text: str, expected: bool) -> None:
    assert is_token(text) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain", True),
        ("tab\tok", True),
        ("caf\xe9", True),
        ("", True),
        ("cr\r", False),
        ("lf\n", False),
        ("nul\x00", False),
        ("del\x7f", False),
    ],
)
def test_is_field_value_rfc9110_5_5(text: str, expected: bool) -> None:
    assert is_field_value(text) is expected


def test_check_header_strips_outer_whitespace_only() -> None:
    assert check_header("X-A", " \t two  words \t") == ("X-A", "two  words")


# ------------------------------------------------------------ header option


def test_normalize_headers_three_forms() -> None:
    expected = [("X-A", "1"), ("X-B", "two words")]
    assert normalize_headers({"X-A": "1", "X-B": "two words"}) == expected
    assert normalize_headers(["X-A: 1", "X-B:two words"]) == expected
    assert normalize_headers([("X-A", "1"), ("X-B", "two words")]) == expected
    assert normalize_headers(None) == []
    assert normalize_headers({"X-A": None, "X-B": "b"}) == [("X-B", "b")]


@pytest.mark.parametrize(
    ("header", "match"),
    [
        ("X-A: 1", "not a single str"),
        (b"X-A: 1", "not a single bytes"),
        (["no colon"], "expected 'Name: value'"),
        ([("a", "b", "c")], "expected a 'Name: value' string or a"),
        ([42], "expected a 'Name: value' string or a"),
        ([("X A", "v")], "header name"),
        ({"X-A": "1\r\nX-Injected: 1"}, "header injection"),
        ({"X-A": "snow \u2603"}, "latin-1"),
    ],
)
def test_normalize_headers_errors(header: Any, match: str) -> None:
    with pytest.raises(WebSocketConfigurationException, match=match):
        normalize_headers(header)


def test_without_credentials_is_case_insensitive() -> None:
    assert frozenset({"authorization", "cookie", "proxy-authorization"}) == CREDENTIAL_HEADERS
    pairs = [
        ("AUTHORIZATION", "Basic x"),
        ("X-A", "1"),
        ("cookie", "a=1"),
        ("Proxy-Authorization", "Basic y"),
        ("X-Cookie-Note", "kept"),
    ]
    assert without_credentials(pairs) == [("X-A", "1"), ("X-Cookie-Note", "kept")]


# ---------------------------------------------------------- lists and hosts


def test_check_subprotocols_rfc6455_4_1_item_10() -> None:
    assert check_subprotocols(["chat", "v2.json"]) == ("chat", "v2.json")
    assert check_subprotocols([]) == ()
    with pytest.raises(WebSocketConfigurationException, match="twice"):
        check_subprotocols(["a", "a"])
    with pytest.raises(WebSocketConfigurationException, match="list of names"):
        check_subprotocols("chat")


def test_split_list_drops_empty_elements_rfc9110_5_6_1() -> None:
    assert split_list(["a, b", " ,c,, ", ""]) == ["a", "b", "c"]
    assert split_list([]) == []


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("example.com", "example.com"),
        ("::1", "[::1]"),
        ("[::1]", "[::1]"),
        ("fe80::1%eth0", "[fe80::1%25eth0]"),
        ("10.0.0.1", "10.0.0.1"),
    ],
)
def test_host_for_header_rfc6874_2(host: str, expected: str) -> None:
    assert host_for_header(host) == expected


# ----------------------------------------------------------------- extensions


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], []),
        ([""], []),
        ([" , ,"], []),
        (["permessage-deflate"], [("permessage-deflate", [])]),
        (
            ["permessage-deflate; client_max_window_bits; server_max_window_bits=10"],
            [
                (
                    "permessage-deflate",
                    [("client_max_window_bits", None), ("server_max_window_bits", "10")],
                )
            ],
        ),
        (['a; b="10"'], [("a", [("b", "10")])]),
        (['a; b="1\\0"'], [("a", [("b", "10")])]),
        (["a ;b = 1 ; c\t,\tb"], [("a", [("b", "1"), ("c", None)]), ("b", [])]),
        (["a, b", "c;d=e"], [("a", []), ("b", []), ("c", [("d", "e")])]),
        (["a,,b,"], [("a", []), ("b", [])]),
        (["Foo; Bar=Baz"], [("Foo", [("Bar", "Baz")])]),
    ],
)
def test_parse_extensions_grammar_rfc6455_9_1(
    values: list[str], expected: list[tuple[str, list[tuple[str, str | None]]]]
) -> None:
    assert parse_extensions(values) == expected


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("; a", "expected an extension name"),
        ("a;", "expected a parameter name"),
        ("a; ;b", "expected a parameter name"),
        ("a; b=", "expected a value for parameter 'b'"),
        ("a; =1", "expected a parameter name"),
        ("a b", "unexpected 'b'"),
        ('a; b="10', "unterminated quoted-string"),
        ('a; b="10\\', "unterminated quoted-string"),
        ('a; b=""', "quoted value '' of parameter 'b' is not a token"),
        ('a; b="1 0"', "not a token"),
        ('a; b="x"y', "unexpected 'y'"),
        ("a; b=1=2", "unexpected '='"),
        ('"a"', "expected an extension name"),
        ("a/b", "unexpected '/'"),
    ],
)
def test_parse_extensions_syntax_errors(value: str, match: str) -> None:
    with pytest.raises(WebSocketHandshakeException, match=match) as info:
        parse_extensions(["ok", value])
    assert repr(value) in str(info.value)
