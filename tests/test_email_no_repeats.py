"""A tool in two comparisons of one issue: its second card never repeats the first card's quote."""

from __future__ import annotations

import copy

from tests.support_email import Texts, config, five_item_issue, squash
from tests.support_render import compile_sample, issue_from, sample_data


def test_no_quote_appears_twice_in_the_html_or_the_text() -> None:
    _, html, text = five_item_issue()
    quotes = [squash(q) for q in Texts.of(html, "qt").found["qt"]]
    assert len(quotes) >= 8
    assert len(quotes) == len(set(quotes)), [q for q in quotes if quotes.count(q) > 1]
    text_quotes = [squash(q) for q in text.split("“")[1:]]
    text_quotes = [q.split("”")[0] for q in text_quotes]
    assert len(text_quotes) == len(set(text_quotes))


def test_the_second_card_of_a_tool_quotes_a_different_reviewer() -> None:
    cursor_vs_mistral, cursor_vs_smol = sample_data()
    compiled = compile_sample(config(), issue_from([cursor_vs_mistral, cursor_vs_smol]))
    cards = compiled.text.split("Cursor Background Agents (Developer Tools)")[1:]
    reviewers = [card.split("— Reviewer ")[1][:1] for card in cards]
    assert len(cards) == 2 and reviewers[0] != reviewers[1]


def test_with_no_other_quote_left_the_second_card_points_to_the_first() -> None:
    first, second = sample_data()
    second = copy.deepcopy(second)
    # The second page has only the quotes of Cursor the first card already shows.
    cursor_quote = next(q for q in first["quotes"] if q["tool"] == "a" and q["reviewer"] == 2)
    second["quotes"] = [q for q in second["quotes"] if q["tool"] == "b"] + [cursor_quote]
    compiled = compile_sample(config(), issue_from([first, second]))
    assert compiled.html.count("Direct competitor is Devin") == 1
    assert "What our reviewers say about Cursor Background Agents: see No. 1 above." in compiled.html
    assert "What our reviewers say about Cursor Background Agents: see No. 1 above." in squash(compiled.text)
