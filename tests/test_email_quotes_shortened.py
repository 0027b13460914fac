"""Quotes: shortened at a sentence end with an ellipsis, or at a word end; never mid-word; attributed."""

from __future__ import annotations

import re

from digest.render.issue_email import pull_quote
from tests.support_email import Texts, five_item_issue, squash
from tests.support_render import sample_data


def test_every_shortened_quote_in_the_issue_ends_with_an_ellipsis_and_keeps_its_reviewer() -> None:
    _, html, _ = five_item_issue()
    found = Texts.of(html, "q", "qt", "qa").found
    originals = [" ".join(q["text"].split()).strip("“”") for d in sample_data() for q in d["quotes"]]
    for quote in found["qt"]:
        body = squash(quote).strip("“”")
        complete = any(body == o for o in originals)
        assert complete or body.endswith("…"), body
    quote_boxes = [squash(b) for b in found["q"] if "“" in b]
    assert quote_boxes and all(re.search(r"— Reviewer \d+$", b) for b in quote_boxes)


def test_a_quote_is_never_cut_mid_word() -> None:
    text = "Supercalifragilistic " * 30
    for limit in range(30, 120, 7):
        out = pull_quote(text, limit)
        assert out.endswith("…") and len(out) <= limit
        assert out[:-1].rstrip().split(" ")[-1] == "Supercalifragilistic"
    sentence = "A short one. " + "Then a very long second sentence that runs " * 5
    assert pull_quote(sentence, 60) == "A short one.\u00a0…"


def test_a_quote_that_fits_is_left_alone() -> None:
    assert pull_quote("Fits. Whole.", 220) == "Fits. Whole."
