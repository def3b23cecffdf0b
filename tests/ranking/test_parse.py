import pytest

from recranker.ranking.parse import OK, REPAIRED, UNPARSABLE, parse_order

IDS = "ABCDEF"
FALLBACK = [5, 4, 3, 2, 1, 0]  # the backbone's order, as shown positions


@pytest.mark.parametrize(
    "text, order, status",
    [
        ("C\nA\nF", [2, 0, 5, 4, 3, 1], OK),
        ("C. The Matrix (1999)\nA. Heat (1995)\nF. Fargo", [2, 0, 5, 4, 3, 1], OK),  # titles ignored
        ("(c), a; f", [2, 0, 5, 4, 3, 1], OK),  # lower case and punctuation
        ("C\nC\nA\nF", [2, 0, 5, 4, 3, 1], REPAIRED),  # a repeat dropped
        ("C\nZ\nA\nF", [2, 0, 5, 4, 3, 1], REPAIRED),  # a letter beyond the candidates
        ("C\nA", [2, 0, 5, 4, 3, 1], REPAIRED),  # fewer than the top 3 asked
        ("I cannot rank these movies.", FALLBACK, UNPARSABLE),
        ("", FALLBACK, UNPARSABLE),
    ],
)
def test_answers_are_read_and_repaired(text, order, status) -> None:
    got, got_status = parse_order(text, IDS, 3, FALLBACK)
    assert got.tolist() == order and got_status == status
    assert sorted(got.tolist()) == list(range(len(IDS)))  # always a full permutation
