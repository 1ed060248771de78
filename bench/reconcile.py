"""Reconciliation benchmark: a run over two file exports, from the files to the recorded
breaks, against COPYing the same two files into PostgreSQL alone.

    python -m bench.reconcile [--invoices 1000000] [--pairs 3]

Two CSV exports of `--invoices` invoices each (a billing export and an ERP export, with
their own column names and order) are written to a temporary folder, with 1 % of the
invoices seeded as breaks: a quarter missing in the ERP, a quarter missing in billing
(invoices only the ERP has), a quarter with amounts apart beyond the tolerance, a quarter
with another currency. Then, `--pairs` times, side by side in a fresh database each: the
baseline (each file's bytes streamed into `COPY … FROM STDIN (FORMAT csv, HEADER)` of a
temporary table with the header's columns, one transaction) and the run
(`reconcile.engine.run_reconciliation`: staging, comparison, breaks, exceptions). Printed:
the medians, the median of the pairs' ratios (target ≤ 2) and this process's peak RSS
(target ≤ 300 MB). Exits non-zero if a run found other breaks than those seeded.
"""

from __future__ import annotations

import argparse
import csv
import random
import resource
import statistics
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory

import psycopg
from psycopg import sql

from bench._harness import bench_database
from reconcile.engine import RunReport, run_reconciliation
from reconcile.load import parse_reconcile_config

BILLING_HEADER = ["id", "account", "total", "tax", "currency", "state", "updated"]
ERP_HEADER = [
    "externalId",
    "status",
    "currencyCode",
    "amount",
    "taxTotal",
    "customerRef",
    "lastModified",
]
CHUNK_BYTES = 1 << 20


def _config(folder: Path) -> dict:
    return {
        "reconciliations": {
            "invoices": {
                "object": "invoice",
                "key": "invoice_id",
                "schedule": "15m",
                "grace": "30m",
                "scope": {"updated_within": "35d"},
                "sources": {
                    "billing": {
                        "type": "file",
                        "path": str(folder / "billing.csv"),
                        "fields": dict(
                            zip(
                                [
                                    "invoice_id",
                                    "customer_id",
                                    "amount",
                                    "tax_amount",
                                    "currency",
                                    "status",
                                    "updated_at",
                                ],
                                BILLING_HEADER,
                                strict=True,
                            )
                        ),
                    },
                    "erp": {
                        "type": "file",
                        "path": str(folder / "erp.csv"),
                        "fields": dict(
                            zip(
                                [
                                    "invoice_id",
                                    "status",
                                    "currency",
                                    "amount",
                                    "tax_amount",
                                    "customer_id",
                                    "updated_at",
                                ],
                                ERP_HEADER,
                                strict=True,
                            )
                        ),
                    },
                },
                "compare": {
                    "amount": {"tolerance": 0.005},
                    "tax_amount": {"tolerance": 0.005},
                    "currency": "exact",
                    "customer_id": "exact",
                    "status": {
                        "map": {"billing": {"paid": "settled"}, "erp": {"closed": "settled"}}
                    },
                },
            }
        }
    }


def write_exports(folder: Path, invoices: int) -> dict[str, int]:
    """Write billing.csv and erp.csv, streamed; the seeded breaks by type."""
    rng = random.Random(18)
    seeded = {
        "missing_in:erp": 0,
        "missing_in:billing": 0,
        "mismatch:amount": 0,
        "mismatch:currency": 0,
    }
    updated = "2026-11-30T10:00:00+00:00"
    with (
        (folder / "billing.csv").open("w", newline="") as b,
        (folder / "erp.csv").open("w", newline="") as e,
    ):
        billing, erp = csv.writer(b), csv.writer(e)
        billing.writerow(BILLING_HEADER)
        erp.writerow(ERP_HEADER)
        for i in range(invoices):
            key, customer = f"INV-{i:08d}", f"C-{i % 5000:05d}"
            cents = rng.randrange(1000, 5_000_000)
            total, tax = f"{cents / 100:.2f}", f"{cents * 0.2 / 100:.2f}"
            state, status = ("paid", "closed") if i % 3 else ("open", "open")
            seed = i % 400  # 4 in 400: 1 %
            erp_total, erp_currency = total, "EUR"
            if seed == 1:
                seeded["mismatch:amount"] += 1
                erp_total = f"{cents / 100 + 1:.2f}"
            elif seed == 2:
                seeded["mismatch:currency"] += 1
                erp_currency = "USD"
            if seed != 3:
                billing.writerow([key, customer, total, tax, "EUR", state, updated])
            else:
                seeded["missing_in:billing"] += 1
            if seed != 0:
                erp.writerow([key, status, erp_currency, erp_total, tax, customer, updated])
            else:
                seeded["missing_in:erp"] += 1
    return seeded


def copy_alone(url: str, files: list[Path]) -> float:
    """Seconds to stream each file into a temporary table of its header's columns."""
    started = time.perf_counter()
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        for n, path in enumerate(files):
            header = path.open().readline().strip().split(",")
            table = sql.Identifier(f"_copy_{n}")
            columns = sql.SQL(", ").join(
                sql.SQL("{} text").format(sql.Identifier(c)) for c in header
            )
            cur.execute(sql.SQL("CREATE TEMP TABLE {} ({})").format(table, columns))
            copy = sql.SQL("COPY {} FROM STDIN (FORMAT csv, HEADER true)").format(table)
            with path.open("rb") as file, cur.copy(copy) as stream:
                while chunk := file.read(CHUNK_BYTES):
                    stream.write(chunk)
        conn.commit()
    return time.perf_counter() - started


def reconcile_once(url: str, folder: Path) -> tuple[float, RunReport]:
    config = parse_reconcile_config(_config(folder))
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        report = run_reconciliation(conn, "invoices", config.reconciliations["invoices"], {})
    return time.perf_counter() - started, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invoices", type=int, default=1_000_000)
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args()
    with TemporaryDirectory(prefix="q2c-bench-reconcile-") as name:
        folder = Path(name)
        started = time.perf_counter()
        seeded = write_exports(folder, args.invoices)
        sizes = sum(p.stat().st_size for p in folder.iterdir()) / 1e6
        print(
            f"wrote 2 exports of {args.invoices:,} invoices ({sizes:.0f} MB) in "
            f"{time.perf_counter() - started:.0f} s; seeded {seeded}"
        )
        copies, runs, ratios, wrong = [], [], [], []
        for pair in range(args.pairs):
            with bench_database() as url:
                copy_s = copy_alone(url, [folder / "billing.csv", folder / "erp.csv"])
                run_s, report = reconcile_once(url, folder)
            copies.append(copy_s)
            runs.append(run_s)
            ratios.append(run_s / copy_s)
            if report.breaks != seeded:
                wrong.append(report.document())
            print(
                f"pair {pair + 1}: COPY alone {copy_s:.2f} s, run {run_s:.2f} s "
                f"(ratio {run_s / copy_s:.2f}); checked {report.checked:,}, "
                f"matched {report.matched:,}"
            )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"median: COPY alone {statistics.median(copies):.2f} s, run "
        f"{statistics.median(runs):.2f} s, ratio {statistics.median(ratios):.2f} (target ≤ 2)"
    )
    print(f"peak RSS of this process: {peak_mb:.0f} MB (target ≤ 300 MB)")
    if wrong:
        print(f"FAIL: breaks other than those seeded: {wrong}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
