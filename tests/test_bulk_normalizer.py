"""The import's address normaliser gives exactly `normalize_email`'s answer (or its refusal, word for word)."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from subscribers.addresses import AddressError, BulkNormalizer, normalize_email

CASES = [
    "Ann@Example.com",
    "  ann@example.com ",
    "a.b+tag@sub.example.co.uk",
    "Postmaster@Example.org",
    "a..b@example.com",
    ".a@example.com",
    "a.@example.com",
    "a@example..com",
    "a@-example.com",
    "a@example",
    "a@localhost",
    "a@example.invalid",
    "a@xn--bcher-kva.example",
    "a@bücher.example",
    "zoë@example.com",
    '"quoted"@example.com',
    "Ann <ann@example.com>",
    "a@[192.0.2.1]",
    "a@@example.com",
    "@example.com",
    "a@",
    "",
    "   ",
    "a\r\n@example.com",
    "a@example.com\0",
    "x" * 64 + "@example.com",
    "x" * 65 + "@example.com",
    "x" * 240 + "@example.com",
    "x" * 60 + "@" + ".".join(["y" * 63] * 3) + ".com",
    "a@" + "xn--" + "5" * 50 + ".example",
    "a@example.c",
    "a@example.123",
    "a@1.2.3.4",
    "a@EXAMPLE.COM.",
    "a!#$%&'*+-/=?^_`{|}~@example.com",
    "a@ex_ample.com",
    "a@exa mple.com",
    "a@example.com.",
    "A@GMAIL.COM",
    "ａ@example.com",
    "a＠example.com",
    "a@example.ｃｏｍ",
    "a@bücher.example",
    "a@BÜCHER.example",
    "a@\u0338example.com",
    "a@ex\u00a0ample.com",
    "a@例え.テスト",
    "a@xn--r8jz45g.xn--zckzah",
    "a@ドメイン。テスト",
    "a@ǆ.example",
    "a@ﬁ.example",
    "a@\u0628\u0627.example",
    "a@ex\u200dample.com",
    "a@ⓐ.example",
    "x" * 200 + "@" + "ü" * 40 + ".example",
    "x" * 60 + "@" + "例" * 60 + ".com",
]


def _answer(normalize, raw: str) -> str:
    try:
        return "ok " + normalize(raw)
    except AddressError as exc:
        return "refused " + str(exc)


@pytest.mark.parametrize("raw", CASES)
def test_same_answer_as_normalize_email(raw: str) -> None:
    assert _answer(BulkNormalizer(), raw) == _answer(normalize_email, raw)


def test_a_domain_seen_again_gives_the_same_answer() -> None:
    bulk = BulkNormalizer(max_domains=2)
    for raw in CASES * 3:
        assert _answer(bulk, raw) == _answer(normalize_email, raw)


_PIECES = st.sampled_from(
    [
        "a",
        "Z",
        "0",
        ".",
        "-",
        "+",
        "_",
        "@",
        "xn--",
        "ü",
        "ß",
        "é",
        " ",
        '"',
        "[",
        "]",
        "com",
        "example",
        "localhost",
        "invalid",
        "1",
        "\u0301",
        "\u0338",
        "！",
        "ｃ",
        "＠",
        "﹫",
        "\u00a0",
        "\u3000",
        "。",
        "<",
        ">",
        "ǆ",
        "ﬁ",
        "\u200d",
        "\ufeff",
        "xn--bcher-kva",
        "\U0001f600",
        "\u0628",
        "ⓐ",
    ]
)


@given(st.lists(_PIECES, max_size=20).map("".join), st.lists(_PIECES, max_size=20).map("".join))
@example("ab", "example.com")
@example("a" * 70, ".".join(["b" * 63] * 3) + ".com")
def test_same_answer_on_generated_addresses(local: str, domain: str) -> None:
    raw = f"{local}@{domain}"
    assert _answer(BulkNormalizer(), raw) == _answer(normalize_email, raw)
