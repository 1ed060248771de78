"""The sandbox billing system's invoice export: one CSV file per day of invoices
(`invoices-YYYY-MM-DD.csv`, by the day each was issued, with a header row) in a folder,
rewritten on a schedule the way a nightly export job drops files for finance.

Each file is written beside its final name under a name the export's glob does not match
(`.invoices-….csv.tmp`), then renamed over it: a reader sees the old file or the new one,
never half of one. A day that has left the records' window loses its file.
"""

from __future__ import annotations

import csv
import os
from collections import defaultdict
from pathlib import Path

from demo.records import Record, SystemsOfRecord

COLUMNS = ("id", "account", "total", "tax", "currency", "state", "issued", "updated")
EXPORT_EVERY = 20  # seconds between two exports in the sandbox
PATTERN = "invoices-*.csv"


def export_billing_invoices(records: SystemsOfRecord, folder: Path) -> list[Path]:
    """Write every billing invoice into its day's file in `folder` (created if missing) and
    remove the files of days no invoice is left of; returns the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    days: defaultdict[str, list[Record]] = defaultdict(list)
    for invoice in records.snapshot("billing.invoices"):
        days[invoice["issued"][:10]].append(invoice)
    written = [
        _write_atomically(folder / f"invoices-{day}.csv", rows) for day, rows in days.items()
    ]
    for stale in set(folder.glob(PATTERN)) - set(written):
        stale.unlink(missing_ok=True)
    return sorted(written)


def _write_atomically(path: Path, rows: list[Record]) -> Path:
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)
    return path
