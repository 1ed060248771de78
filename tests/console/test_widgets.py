"""How tables read: times in UTC, nothing where a value is missing, numbers as numbers."""

from datetime import UTC, datetime

from console._widgets import readable


def test_a_missing_number_is_blank_and_the_others_keep_their_spelling() -> None:
    rows = [
        {"response_code": 200, "amount": 1250000.5, "attempts": 1},
        {"response_code": None, "amount": None, "attempts": 2},
    ]

    shown = readable(rows)

    assert list(shown["response_code"]) == ["200", ""]  # never "None", nor "200.0"
    assert list(shown["amount"]) == ["1250000.5", ""]
    assert list(shown["attempts"]) == [1, 2]  # nothing missing: left a number


def test_a_missing_text_is_blank_in_a_column_of_texts() -> None:
    shown = readable([{"process": "invoice_posting"}, {"process": None}])

    assert list(shown["process"]) == ["invoice_posting", ""]  # pandas 3 types it str, not object


def test_times_are_utc_to_the_second_and_structures_read_as_pairs() -> None:
    rows = [
        {"at": datetime(2026, 12, 7, 9, 5, 3, tzinfo=UTC), "detail": {"owner": "ops"}},
        {"at": None, "detail": None},
    ]

    shown = readable(rows)

    assert list(shown["at"]) == ["2026-12-07 09:05:03 UTC", ""]
    assert list(shown["detail"]) == ["owner: ops", ""]
