"""The file source reads CSV with a header row and JSON lines, every file its glob matches,
into the staging table with where each record came from; a file it cannot parse fails the
load naming the file and line."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from reconcile.sources import SourceError, StagingTable
from reconcile.sources.file import FileSource

COLUMNS = ("invoice_id", "amount", "currency", "updated_at")


def _source(tmp_path: Path, path: str, fields: dict[str, str], **extra) -> FileSource:
    data = {"type": "file", "path": path, "fields": fields, **extra}
    return FileSource.model_validate(data, context={"base": tmp_path})


def _load(db: psycopg.Connection, source: FileSource) -> tuple[int, tuple, list[tuple]]:
    with db.transaction():
        cur = db.cursor()
        cur.execute(
            "CREATE TEMP TABLE staged (invoice_id text, amount text, currency text, "
            "updated_at text, _at text) ON COMMIT DROP"
        )
        result = source.load(StagingTable(cur, "staged", COLUMNS), {})
        # Columns the fields do not name may be added to the table: the engine reads its own.
        rows = cur.execute(
            "SELECT invoice_id, amount, currency, updated_at, _at FROM staged ORDER BY _at"
        ).fetchall()
    return result.rows, result.provided, rows


def test_csv_files_of_a_glob_are_read_by_header_in_name_order(db, tmp_path: Path) -> None:
    (tmp_path / "exports").mkdir()
    (tmp_path / "exports/inv-1.csv").write_text('\ufeffid,total,note\nA,"1,5",x\nB,,"two\nlines"\n')
    (tmp_path / "exports/inv-2.csv").write_text("note,id,total\n,C,3\n")
    source = _source(tmp_path, "exports/inv-*.csv", {"invoice_id": "id", "amount": "total"})

    rows, provided, staged = _load(db, source)

    assert (rows, provided) == (3, ("invoice_id", "amount"))
    assert staged == [
        ("A", "1,5", None, None, "exports/inv-1.csv line 2"),
        ("B", None, None, None, "exports/inv-1.csv line 3"),
        ("C", "3", None, None, "exports/inv-2.csv line 2"),
    ]


def test_json_lines_are_read_with_nested_keys_and_blank_lines_skipped(db, tmp_path: Path) -> None:
    (tmp_path / "erp.jsonl").write_text(
        '{"id": "A", "money": {"value": 12.5, "code": "EUR"}}\n\n{"id": "B\\\\1", "money": null}\n'
    )
    fields = {"invoice_id": "id", "amount": "money.value", "currency": "money.code"}

    rows, _, staged = _load(db, _source(tmp_path, "erp.jsonl", fields))

    assert rows == 2
    assert staged == [
        ("A", "12.5", "EUR", None, "erp.jsonl line 1"),
        ("B\\1", None, None, None, "erp.jsonl line 3"),
    ]


@pytest.mark.parametrize(
    ("name", "content", "reason", "at"),
    [
        # PostgreSQL names the line where it gave up: the end of the file.
        ("bad.csv", 'id,total\nA,1\nB,"2\n', "unterminated CSV quoted field", "bad.csv line 4"),
        (
            "bad.csv",
            "id,total\nA,1\nB,2,3\n",
            "extra data after last expected column",
            "bad.csv line 3",
        ),
        (
            "bad.csv",
            "ident,total\nA,1\n",
            "no column 'id' (the header has ident, total)",
            "bad.csv line 1",
        ),
        ("bad.jsonl", '{"id": "A"}\n{"id": \n', "not valid JSON: '{\"id\": '", "bad.jsonl line 2"),
    ],
)
def test_a_file_that_cannot_be_parsed_names_its_line(
    db, tmp_path: Path, name: str, content: str, reason: str, at: str
) -> None:
    (tmp_path / name).write_text(content)

    with pytest.raises(SourceError) as raised:
        _load(db, _source(tmp_path, name, {"invoice_id": "id"}))

    assert reason in raised.value.reason
    assert raised.value.at == at


def test_no_file_matching_is_a_failure_not_an_empty_source(db, tmp_path: Path) -> None:
    source = _source(tmp_path, "missing-*.csv", {"invoice_id": "id"})

    with pytest.raises(SourceError, match=r"^no file matches missing-\*\.csv$"):
        _load(db, source)  # as configured: the server's folders are not shown to users
    with pytest.raises(SourceError, match=f"no file matches {tmp_path}/missing-"):
        source.probe({})


def test_probe_counts_the_files_and_checks_their_headers(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("id\n1\n")
    (tmp_path / "b.csv").write_text("id\n2\n")

    assert _source(tmp_path, "*.csv", {"invoice_id": "id"}).probe({}) == "2 files match *.csv"
    with pytest.raises(SourceError, match="no column 'nr'"):
        _source(tmp_path, "*.csv", {"invoice_id": "nr"}).probe({})


def test_a_file_of_another_extension_needs_its_format(tmp_path: Path) -> None:
    (tmp_path / "export.txt").write_text("id\nA\n")

    with pytest.raises(ValueError, match="format"):
        _source(tmp_path, "export.txt", {"invoice_id": "id"})
    assert _source(tmp_path, "export.txt", {"invoice_id": "id"}, format="csv").probe({})
