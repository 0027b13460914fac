"""Click tokens name the issue, the reader's edition, the delivery and the link; nothing else reads as one."""

from __future__ import annotations

import pytest

from digest.links import ClickClaim, ClickTokens, TokenError, Tokens


def test_a_token_names_its_edition_and_tokens_from_before_editions_still_read() -> None:
    tokens = ClickTokens(Tokens("k" * 32))
    big = tokens.for_message(2**24 - 1, 2**40 - 1, 3, edition_id=2**32 - 1)
    assert [len(t) for t in big] == [26] * 3
    assert tokens.read(big[2]) == ClickClaim(2**24 - 1, 2**32 - 1, 2**40 - 1, 2)
    old = tokens.for_message(7, 42, 2)  # as made before editions: the links
    assert len(old[1]) == 22 and tokens.read(old[1]) == ClickClaim(7, None, 42, 1)
    one, other = tokens.for_message(7, 42, 1, edition_id=1), tokens.for_message(7, 42, 1, edition_id=2)
    assert one != other and tokens.read(one[0]).edition_id == 1
    # Another edition's bytes under this tag, or the tag of the same message without its edition: refused.
    for bad in (one[0][:2] + other[0][2:18] + one[0][18:], old[0][:14] + one[0][18:], one[0].upper()):
        with pytest.raises(TokenError):
            tokens.read(bad)
