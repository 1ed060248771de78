"""The `file` source: exports on disk, CSV with a header row or JSON lines, matched by a glob.

Where the time goes: parsing a million rows in Python costs several times what PostgreSQL
takes to COPY them, and a second pass over them inside PostgreSQL costs about as much as
the COPY. So a CSV file's bytes are streamed unparsed into `COPY … FROM STDIN` of the
staging table itself, each header column into its field's column (a column no field names
into one added for it, which the engine never reads) and `_at` counted by a sequence.
Only when one column gives two fields, and for JSON lines (one text value a line, then
read as JSON), is the file copied into a raw temporary table first and mapped by one
INSERT … SELECT. Each file is read once, in chunks, never whole. A file PostgreSQL cannot
parse fails the load naming the file and its line (the line PostgreSQL reports; a
record's line in `_at` is its row number plus the header's, exact unless quoted values
span lines).
"""

from __future__ import annotations

import csv
import glob
import io
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Literal

import psycopg
from psycopg import sql
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationInfo, model_validator

from q2c.errors import first_line
from reconcile.sources import LoadResult, SourceError, StagingTable

CHUNK_BYTES = 1 << 20  # read and sent to COPY this much at a time
_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
_LINE = re.compile(r"line (\d+)")
# One JSON line per value: delimiter and quote bytes that JSON text never holds unescaped.
_LINES_COPY = "COPY _file_raw (line) FROM STDIN (FORMAT csv, DELIMITER e'\\x01', QUOTE e'\\x02')"
_IS_JSON = """
CREATE FUNCTION pg_temp.q2c_is_json(value text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    PERFORM value::jsonb;
    RETURN true;
EXCEPTION WHEN others THEN
    RETURN false;
END $$
"""


class FileSource(BaseModel):
    """Records in the files `path` matches (a glob; relative to the directory of the
    reconcile.yaml that names it): `fields` maps each canonical field onto a CSV column, or
    a JSON key (`a.b` for a nested one). `format` is taken from the extension unless given."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["file"]
    path: Annotated[str, Field(min_length=1)]
    format: Literal["csv", "jsonl"] | None = None
    fields: Annotated[dict[str, Annotated[str, Field(min_length=1)]], Field(min_length=1)]
    _base: Path = PrivateAttr(default=Path("."))

    @model_validator(mode="after")
    def _relative_to(self, info: ValidationInfo) -> FileSource:
        if info.context and "base" in info.context:
            self._base = Path(info.context["base"])
        if self.format is None and Path(self.path).suffix.lower() not in _FORMATS:
            raise ValueError(f"say `format: csv` or `format: jsonl` for {self.path!r}")
        return self

    def provides(self) -> tuple[str, ...]:
        return tuple(self.fields)

    def pattern(self) -> Path:
        """The glob, absolute."""
        pattern = Path(self.path).expanduser()
        return pattern if pattern.is_absolute() else self._base / pattern

    def files(self) -> list[Path]:
        """The files the glob matches now, in name order."""
        return sorted(Path(name) for name in glob.glob(str(self.pattern())) if Path(name).is_file())

    def load(self, copy_into: StagingTable, environ: Mapping[str, str]) -> LoadResult:
        files = self.files()
        if not files:
            # As configured: a run's failure is shown to every console user, the server's
            # folders are the admin's business (`probe`, for `q2c reconcile check`, says them).
            raise SourceError(f"no file matches {self.path}")
        rows = 0
        for path in files:
            kind = self.format or _FORMATS[path.suffix.lower()]
            if kind == "csv":
                rows += self._load_csv(copy_into, path)
            else:
                rows += self._load_jsonl(copy_into, path)
        return LoadResult(rows, tuple(name for name in copy_into.columns if name in self.fields))

    def probe(self, environ: Mapping[str, str]) -> str:
        files = self.files()
        if not files:
            raise SourceError(f"no file matches {self.pattern()}")
        for path in files:
            if (self.format or _FORMATS[path.suffix.lower()]) == "csv":
                self._header(path)
        plural = "s" * (len(files) != 1)
        return f"{len(files)} file{plural} match {self.path}"

    def _label(self, path: Path) -> str:
        try:
            return str(path.relative_to(self._base))
        except ValueError:
            return str(path)

    def _header(self, path: Path) -> list[str]:
        """The CSV header's column names; SourceError when the file has none or lacks a
        column `fields` names."""
        try:
            with path.open(encoding="utf-8-sig", newline="") as file:
                header = next(csv.reader(io.StringIO(file.readline())), [])
        except (OSError, UnicodeDecodeError) as exc:
            raise SourceError(
                f"cannot read the header: {exc}", f"{self._label(path)} line 1"
            ) from None
        absent = [column for column in self.fields.values() if column not in header]
        if absent:
            raise SourceError(
                f"no column {', '.join(map(repr, absent))} (the header has {', '.join(header)})",
                f"{self._label(path)} line 1",
            )
        return header

    def _load_csv(self, copy_into: StagingTable, path: Path) -> int:
        header = self._header(path)
        wanted = [name for name in copy_into.columns if name in self.fields]
        columns = [self.fields[name] for name in wanted]
        if len(set(columns)) == len(columns):
            return self._copy_direct(copy_into, path, header, wanted)
        # A column given as two fields: copied raw, then mapped.
        raw = [sql.Identifier(f"c{index}") for index in range(len(header))]
        values = [
            sql.Identifier(f"c{header.index(self.fields[name])}")
            if name in self.fields
            else sql.NULL
            for name in copy_into.columns
        ]
        copy = sql.SQL("COPY _file_raw ({}) FROM STDIN (FORMAT csv, HEADER true, ENCODING 'UTF8')")
        self._copy(copy_into.cursor, path, copy.format(sql.SQL(", ").join(raw)), raw)
        # Row n of the data is line n + 1 of the file, after the header.
        return self._map(copy_into, path, values, sql.SQL("_file_raw"), first_line=1)

    def _copy_direct(
        self, copy_into: StagingTable, path: Path, header: list[str], wanted: list[str]
    ) -> int:
        """COPY the file straight into the staging table: each header column into its
        field's column, one the fields do not name into a column of its own added to the
        (temporary) table, which the engine never reads; `_at` from a line counter."""
        cur, table = copy_into.cursor, sql.Identifier(copy_into.name)
        by_column = {self.fields[name]: name for name in wanted}
        targets = []
        for index, column in enumerate(header):
            if column in by_column and header.index(column) == index:
                targets.append(sql.Identifier(by_column[column]))
                continue
            extra = sql.Identifier(f"_file_column_{index}")
            cur.execute(
                sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} text").format(table, extra)
            )
            targets.append(extra)
        # Values handed out a thousand at a time: a sequence's every nextval otherwise
        # writes it, which costs a third of the COPY itself.
        cur.execute("CREATE TEMP SEQUENCE IF NOT EXISTS _file_line CACHE 1000")
        cur.execute("SELECT setval('_file_line', 1)")  # the header is line 1
        line = sql.SQL("{} || nextval('_file_line')").format(
            sql.Literal(f"{self._label(path)} line ")
        )
        cur.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN _at SET DEFAULT {}").format(table, line))
        copy = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv, HEADER true, ENCODING 'UTF8')")
        rows = self._stream(cur, path, copy.format(table, sql.SQL(", ").join(targets)))
        cur.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN _at DROP DEFAULT").format(table))
        return rows

    def _load_jsonl(self, copy_into: StagingTable, path: Path) -> int:
        values = [
            sql.SQL("j #>> {}").format(sql.Literal(self.fields[name].split(".")))
            if name in self.fields
            else sql.NULL
            for name in copy_into.columns
        ]
        cur = copy_into.cursor
        self._copy(cur, path, sql.SQL(_LINES_COPY), [sql.Identifier("line")])
        lines = sql.SQL("(SELECT _n, line::jsonb AS j FROM _file_raw WHERE line <> '')")
        try:
            with cur.connection.transaction():  # a savepoint: the bad line is found after it
                return self._map(copy_into, path, values, lines, first_line=0)
        except psycopg.errors.InvalidTextRepresentation:
            pass
        cur.execute(_IS_JSON)
        line, text = cur.execute(
            "SELECT _n, line FROM _file_raw WHERE line <> '' AND NOT pg_temp.q2c_is_json(line) "
            "ORDER BY _n LIMIT 1"
        ).fetchone() or (0, "")
        raise SourceError(f"not valid JSON: {text[:80]!r}", f"{self._label(path)} line {line}")

    def _map(
        self,
        copy_into: StagingTable,
        path: Path,
        values: Sequence[sql.Composable],
        raw: sql.Composable,
        first_line: int,
    ) -> int:
        """Map the raw rows onto the staging table's columns (one INSERT … SELECT), each
        with where it came from; how many there were."""
        cur = copy_into.cursor
        statement = sql.SQL(
            "INSERT INTO {} ({}) SELECT {}, {} || (r._n + {}) FROM {} r ORDER BY r._n"
        ).format(
            sql.Identifier(copy_into.name),
            sql.SQL(", ").join(map(sql.Identifier, (*copy_into.columns, "_at"))),
            sql.SQL(", ").join(values),
            sql.Literal(f"{self._label(path)} line "),
            sql.Literal(first_line),
            raw,
        )
        rows = cur.execute(statement).rowcount
        cur.execute("DROP TABLE _file_raw")
        return rows

    def _copy(
        self,
        cur: psycopg.Cursor,
        path: Path,
        copy: sql.Composed | sql.SQL,
        raw: list[sql.Identifier],
    ) -> None:
        """Stream the file's bytes, unparsed, into a new temporary table _file_raw."""
        cur.execute(
            sql.SQL(
                "CREATE TEMP TABLE _file_raw (_n bigint GENERATED ALWAYS AS IDENTITY, {}) "
                "ON COMMIT DROP"
            ).format(sql.SQL(", ").join(sql.SQL("{} text").format(column) for column in raw))
        )
        self._stream(cur, path, copy)

    def _stream(self, cur: psycopg.Cursor, path: Path, copy: sql.Composed | sql.SQL) -> int:
        """Stream the file's bytes, unparsed, to `copy`; how many rows it copied."""
        try:
            with path.open("rb") as file, cur.copy(copy) as stream:
                while chunk := file.read(CHUNK_BYTES):
                    stream.write(chunk)
        except OSError as exc:
            raise SourceError(f"cannot read: {exc.strerror}", self._label(path)) from None
        except psycopg.errors.DataError as exc:  # bad quoting, too many columns, encoding
            found = _LINE.search(getattr(exc.diag, "context", None) or "")
            line = f" line {found.group(1)}" if found else ""
            raise SourceError(first_line(exc), f"{self._label(path)}{line}") from None
        return cur.rowcount
