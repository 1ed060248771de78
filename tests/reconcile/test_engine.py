"""A run finds every break type as the issue defines them (tolerances after the status
map, grace, scope), counts checked, matched and pending keys, records itself, turns breaks
into exceptions and resolves them when the records agree again; a failing source leaves
nothing behind; the same snapshot twice changes nothing; two runs at once, one skips."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from reconcile.engine import LOCK_CLASS
from tests.support.reconciling import (
    BILLING_FIELDS,
    COMPARE,
    ERP_FIELDS,
    NOW,
    billing,
    erp,
    write_csv,
)


def _breaks(db: psycopg.Connection, run_id: int | None) -> set[tuple[str, str]]:
    rows = db.execute(
        "SELECT key, break_type FROM reconciliation_breaks WHERE run_id = %s", (run_id,)
    )
    return set(rows.fetchall())


def _open(db: psycopg.Connection) -> set[tuple[str, str]]:
    rows = db.execute(
        "SELECT correlation_id, error_type FROM exceptions "
        "WHERE kind = 'reconciliation' AND q2c_is_open(status)"
    )
    return set(rows.fetchall())


def test_aligned_records_match_and_nothing_breaks(db, exports, reconcile) -> None:
    exports([billing("INV-1"), billing("INV-2")], [erp("INV-1"), erp("INV-2")])

    report = reconcile()

    assert report.document() == {
        "run_id": report.run_id,
        "reconciliation": "invoices",
        "status": "succeeded",
        "checked": 2,
        "matched": 2,
        "pending": 0,
        "accuracy": 1.0,
        "breaks": {},
    }
    run = db.execute(
        "SELECT status, source_rows, checked, matched, finished_at IS NOT NULL "
        "FROM reconciliation_runs WHERE id = %s",
        (report.run_id,),
    ).fetchone()
    assert run == ("succeeded", {"billing": 2, "erp": 2}, 2, 2, True)
    assert _open(db) == set()


def test_every_break_type_is_found_once_per_key_and_type(db, exports, reconcile) -> None:
    exports(
        [
            billing("INV-OK"),
            billing("INV-NOERP"),
            billing("INV-TWICE"),
            billing("INV-TWICE"),
            billing("INV-AMT", total="100.00"),
            billing("INV-CUR", currency="EUR"),
        ],
        [
            erp("INV-OK"),
            erp("INV-NOBILL"),
            erp("INV-TWICE"),
            erp("INV-AMT", amount=100.5),
            erp("INV-CUR", currencyCode="USD"),
        ],
    )

    report = reconcile()

    assert _breaks(db, report.run_id) == {
        ("INV-NOERP", "missing_in:erp"),
        ("INV-NOBILL", "missing_in:billing"),
        ("INV-TWICE", "duplicate_in:billing"),
        ("INV-AMT", "mismatch:amount"),
        ("INV-CUR", "mismatch:currency"),
    }
    assert report.breaks == {
        "duplicate_in:billing": 1,
        "mismatch:amount": 1,
        "mismatch:currency": 1,
        "missing_in:billing": 1,
        "missing_in:erp": 1,
    }
    assert (report.checked, report.matched, report.pending) == (6, 1, 0)
    assert report.accuracy == pytest.approx(1 / 6)


def test_tolerance_is_absolute_in_the_fields_unit(db, exports, reconcile) -> None:
    exports(
        [billing("INV-IN", tax="20.00"), billing("INV-OUT", tax="20.00")],
        [erp("INV-IN", taxTotal=20.005), erp("INV-OUT", taxTotal=20.0051)],
    )

    report = reconcile()

    assert _breaks(db, report.run_id) == {("INV-OUT", "mismatch:tax_amount")}


def test_status_map_aligns_each_sources_words_and_others_are_compared_as_given(
    db, exports, reconcile
) -> None:
    exports(
        [billing("INV-PAID", state="paid"), billing("INV-OPEN", state="open")],
        [erp("INV-PAID", status="closed"), erp("INV-OPEN", status="closed")],
    )

    report = reconcile()

    assert _breaks(db, report.run_id) == {("INV-OPEN", "mismatch:status")}


def test_a_record_younger_than_the_grace_is_pending_not_missing(db, exports, reconcile) -> None:
    young = (NOW - timedelta(minutes=10)).isoformat()
    older = (NOW - timedelta(minutes=40)).isoformat()
    exports(
        [
            billing("INV-OK"),
            billing("INV-YOUNG", updated=young),
            billing("INV-LATE", updated=older),
        ],
        [erp("INV-OK")],
    )

    report = reconcile()

    assert _breaks(db, report.run_id) == {("INV-LATE", "missing_in:erp")}
    assert (report.checked, report.matched, report.pending) == (2, 1, 1)
    assert report.accuracy == 0.5


def test_only_keys_changed_within_the_scope_are_checked(db, exports, reconcile) -> None:
    stale = (NOW - timedelta(days=40)).isoformat()
    exports(
        [billing("INV-STALE", updated=stale, total="1.00"), billing("INV-NEW")],
        [erp("INV-STALE", lastModified=stale), erp("INV-NEW")],
    )

    report = reconcile()

    assert (report.checked, report.matched, report.breaks) == (1, 1, {})


def test_a_source_without_updated_at_is_all_in_scope_and_never_too_young(
    db, tmp_path: Path, exports, reconcile
) -> None:
    young = (NOW - timedelta(minutes=1)).isoformat()
    exports([billing("INV-1", updated=young)], [])
    fields = {"invoice_id": "id", "amount": "total"}
    write_csv(
        tmp_path / "ledger.csv",
        [{"id": "INV-1", "total": "120"}, {"id": "INV-2", "total": "5"}],
        header=["id", "total"],
    )
    sources = {
        "billing": {
            "type": "file",
            "path": "billing.csv",
            "fields": {"invoice_id": "id", "amount": "total", "updated_at": "updated"},
        },
        "ledger": {"type": "file", "path": "ledger.csv", "fields": fields},
    }

    report = reconcile(sources=sources, compare={"amount": {"tolerance": 0.005}})

    # INV-2, absent from billing, is old enough (the ledger gives no updated_at); INV-1
    # is young in billing but present in both, so it is compared and matches.
    assert _breaks(db, report.run_id) == {("INV-2", "missing_in:billing")}
    assert (report.checked, report.matched, report.pending) == (2, 1, 0)


def test_a_field_a_source_does_not_give_is_not_compared_for_it(
    db, tmp_path: Path, exports, reconcile
) -> None:
    exports([billing("INV-1", currency="EUR")], [erp("INV-1", currencyCode="EUR")])
    write_csv(
        tmp_path / "warehouse.csv", [{"no": "INV-1", "total": "120.001"}], header=["no", "total"]
    )
    sources = {
        "billing": {
            "type": "file",
            "path": "billing.csv",
            "fields": {
                "invoice_id": "id",
                "amount": "total",
                "currency": "currency",
                "updated_at": "updated",
            },
        },
        "erp": {
            "type": "file",
            "path": "erp.jsonl",
            "fields": {
                "invoice_id": "externalId",
                "amount": "amount",
                "currency": "currencyCode",
                "updated_at": "lastModified",
            },
        },
        "warehouse": {
            "type": "file",
            "path": "warehouse.csv",
            "fields": {"invoice_id": "no", "amount": "total"},
        },
    }

    report = reconcile(
        sources=sources, compare={"amount": {"tolerance": 0.005}, "currency": "exact"}
    )

    assert (report.checked, report.matched, report.breaks) == (1, 1, {})
    pairs = _pairs(db, report.run_id)
    assert pairs == [
        ("billing", "erp", 1, 1),
        ("billing", "warehouse", 1, 1),
        ("erp", "warehouse", 1, 1),
    ]


def test_a_compared_field_one_source_gives_alone_is_never_a_mismatch(
    db, exports, reconcile
) -> None:
    exports([billing("INV-1"), billing("INV-2")], [erp("INV-1")])
    erp_without_tax = {k: v for k, v in ERP_FIELDS.items() if k != "tax_amount"}
    sources = {
        "billing": {"type": "file", "path": "billing*.csv", "fields": BILLING_FIELDS},
        "erp": {"type": "file", "path": "erp.jsonl", "fields": erp_without_tax},
    }

    report = reconcile(sources=sources)

    assert (report.status, report.checked, report.matched) == ("succeeded", 2, 1)
    assert report.breaks == {"missing_in:erp": 1}


# Three file sources that give the key and the amount alone.
AMOUNT_SOURCES = {
    "billing": {
        "type": "file",
        "path": "billing.csv",
        "fields": {"invoice_id": "id", "amount": "total"},
    },
    "erp": {
        "type": "file",
        "path": "erp.jsonl",
        "fields": {"invoice_id": "externalId", "amount": "amount"},
    },
    "warehouse": {
        "type": "file",
        "path": "warehouse.csv",
        "fields": {"invoice_id": "no", "amount": "total"},
    },
}


def _pairs(db, run_id: int | None) -> list[tuple]:
    """A run's figures per pair of sources: (source_a, source_b, checked, matched)."""
    return db.execute(
        "SELECT source_a, source_b, checked, matched FROM reconciliation_accuracy "
        "WHERE run_id = %s ORDER BY 1, 2",
        (run_id,),
    ).fetchall()


def test_accuracy_per_source_pair_counts_what_each_pair_agrees_on(
    db, tmp_path: Path, exports, reconcile
) -> None:
    exports([billing("INV-1"), billing("INV-2")], [erp("INV-1"), erp("INV-2", amount=1.0)])
    write_csv(
        tmp_path / "warehouse.csv",
        [{"no": "INV-1", "total": "120"}, {"no": "INV-2", "total": "1"}],
        header=["no", "total"],
    )
    sources = {name: AMOUNT_SOURCES[name] for name in ("billing", "erp", "warehouse")}

    report = reconcile(sources=sources, compare={"amount": {"tolerance": 0}})

    pairs = _pairs(db, report.run_id)
    assert pairs == [
        ("billing", "erp", 2, 1),
        ("billing", "warehouse", 2, 1),
        ("erp", "warehouse", 2, 2),
    ]
    assert (report.checked, report.matched) == (2, 1)


def test_a_pair_counts_its_mismatches_whatever_order_the_sources_are_configured_in(
    db, exports, reconcile
) -> None:
    exports([billing("INV-1"), billing("INV-2")], [erp("INV-1"), erp("INV-2", amount=1.0)])
    # Not in the order of their names, by which pairs are named.
    sources = {name: AMOUNT_SOURCES[name] for name in ("erp", "billing")}

    report = reconcile(sources=sources, compare={"amount": {"tolerance": 0}})

    pairs = _pairs(db, report.run_id)
    assert (report.checked, report.matched) == (2, 1)
    assert pairs == [("billing", "erp", 2, 1)]  # as the whole: two sources are one pair


def test_breaks_become_exceptions_with_their_context_and_alike_ones_share_a_fingerprint(
    db, exports, reconcile
) -> None:
    exports(
        [billing("INV-A", total="15000.00", account="C-9", currency="USD"), billing("INV-B")],
        [],
    )

    reconcile()

    rows = db.execute(
        "SELECT correlation_id, kind, stage, system, error_type, customer_id, amount, currency, "
        "invoice_id, due_at, fingerprint, message FROM exceptions ORDER BY correlation_id"
    ).fetchall()
    assert [row[:10] for row in rows] == [
        (
            "reconcile:invoices:INV-A",
            "reconciliation",
            "reconcile:invoices",
            "erp",
            "missing_in:erp",
            "C-9",
            15000,
            "USD",
            "INV-A",
            None,
        ),
        (
            "reconcile:invoices:INV-B",
            "reconciliation",
            "reconcile:invoices",
            "erp",
            "missing_in:erp",
            "C-1",
            120,
            "EUR",
            "INV-B",
            None,
        ),
    ]
    assert rows[0][10] == rows[1][10]
    assert rows[0][11] == "invoice INV-A is missing in erp (billing: billing.csv line 2)"
    linked = db.execute(
        "SELECT b.key, e.correlation_id FROM reconciliation_breaks b "
        "JOIN exceptions e ON e.id = b.exception_id ORDER BY 1"
    ).fetchall()
    assert linked == [("INV-A", "reconcile:invoices:INV-A"), ("INV-B", "reconcile:invoices:INV-B")]


def test_records_of_each_source_are_kept_side_by_side(db, exports, reconcile) -> None:
    exports([billing("INV-1", total="100.00")], [erp("INV-1", amount=100.5)])

    report = reconcile()

    (records,) = db.execute(
        "SELECT records FROM reconciliation_breaks WHERE run_id = %s", (report.run_id,)
    ).fetchone()
    assert records["billing"] == [
        {**_canonical(billing("INV-1", total="100.00")), "_at": "billing.csv line 2"}
    ]
    assert records["erp"][0]["amount"] == "100.5"
    assert records["erp"][0]["_at"] == "erp.jsonl line 1"


def _canonical(row: dict) -> dict:
    return {name: row[column] for name, column in BILLING_FIELDS.items()}


def test_the_same_snapshot_twice_changes_nothing_but_the_run_list(db, exports, reconcile) -> None:
    exports([billing("INV-1"), billing("INV-2", total="1")], [erp("INV-2"), erp("INV-3")])
    first = reconcile()
    before = db.execute(
        "SELECT id, status, last_seen, occurrences, updated_at FROM exceptions ORDER BY id"
    ).fetchall()
    events = db.execute("SELECT count(*) FROM exception_events").fetchone()

    second = reconcile(now=NOW + timedelta(minutes=15))

    assert second.document() | {"run_id": None} == first.document() | {"run_id": None}
    assert (
        db.execute(
            "SELECT id, status, last_seen, occurrences, updated_at FROM exceptions ORDER BY id"
        ).fetchall()
        == before
    )
    assert db.execute("SELECT count(*) FROM exception_events").fetchone() == events
    kept = db.execute(
        "SELECT run_id, exception_id FROM reconciliation_breaks ORDER BY key, break_type, run_id"
    ).fetchall()
    assert {exception for _, exception in kept} == {row[0] for row in before}
    assert len(kept) == 2 * len(before)


def test_aligned_records_resolve_the_exception_with_the_reason_and_an_audit_row(
    db, exports, reconcile
) -> None:
    exports([billing("INV-1", total="100.00"), billing("INV-2")], [erp("INV-1"), erp("INV-2")])
    reconcile()
    exports([billing("INV-1"), billing("INV-2")], [erp("INV-1"), erp("INV-2")])

    report = reconcile()

    assert report.breaks == {}
    row = db.execute(
        "SELECT id, status, resolution FROM exceptions WHERE error_type = 'mismatch:amount'"
    ).fetchone()
    assert row[1:] == (
        "auto_resolved",
        f"no longer found by reconciliation run {report.run_id}: the records agree",
    )
    audit = db.execute(
        "SELECT actor, action, before, after, comment FROM exception_events "
        "WHERE exception_id = %s",
        (row[0],),
    ).fetchall()
    assert audit == [
        ("system", "auto_resolved", {"status": "open"}, {"status": "auto_resolved"}, row[2])
    ]


def test_a_break_that_comes_back_after_resolution_opens_a_new_exception(
    db, exports, reconcile
) -> None:
    exports([billing("INV-1")], [])
    reconcile()
    exports([billing("INV-1")], [erp("INV-1")])
    reconcile()
    exports([billing("INV-1")], [])

    reconcile()

    statuses = db.execute("SELECT status FROM exceptions ORDER BY id").fetchall()
    assert statuses == [("auto_resolved",), ("open",)]


def test_an_ignored_break_stays_ignored(db, exports, reconcile) -> None:
    exports([billing("INV-1")], [])
    reconcile()
    db.execute("UPDATE exceptions SET status = 'ignored'")

    report = reconcile()

    assert db.execute("SELECT status FROM exceptions").fetchall() == [("ignored",)]
    assert _breaks(db, report.run_id) == {("INV-1", "missing_in:erp")}


def test_an_accepted_difference_is_not_raised_while_the_records_are_unchanged(
    db, users, exports, reconcile
) -> None:
    exports([billing("INV-1", tax="20.01")], [erp("INV-1")])
    first = reconcile()
    (records_hash,) = db.execute(
        "SELECT records_hash FROM reconciliation_breaks WHERE run_id = %s", (first.run_id,)
    ).fetchone()
    db.execute("UPDATE exceptions SET status = 'resolved'")
    db.execute(
        "INSERT INTO reconciliation_acceptances (reconciliation, key, break_type, records_hash, "
        "reason, accepted_by) VALUES ('invoices', 'INV-1', 'mismatch:tax_amount', %s, "
        "'ERP rounds tax per line', 'fin')",
        (records_hash,),
    )

    accepted = reconcile()
    exports([billing("INV-1", tax="20.02")], [erp("INV-1")])
    changed = reconcile()

    assert db.execute(
        "SELECT accepted_id IS NOT NULL, exception_id FROM reconciliation_breaks WHERE run_id = %s",
        (accepted.run_id,),
    ).fetchone() == (True, None)
    assert db.execute(
        "SELECT accepted_id, exception_id IS NOT NULL FROM reconciliation_breaks WHERE run_id = %s",
        (changed.run_id,),
    ).fetchone() == (None, True)
    assert _open(db) == {("reconcile:invoices:INV-1", "mismatch:tax_amount")}


def test_a_source_failing_mid_run_records_no_break_and_closes_nothing(
    db, tmp_path: Path, exports, reconcile
) -> None:
    exports([billing("INV-1", total="1")], [erp("INV-1")])
    reconcile()
    exports([billing("INV-1")], [erp("INV-1")])  # aligned now, but the run will fail
    (tmp_path / "billing2.csv").write_text('id,total\nINV-9,"12\n')  # unterminated quote

    report = reconcile()

    assert report.status == "failed"
    assert report.error_at is not None and report.error_at.startswith("billing2.csv line")
    run = db.execute(
        "SELECT status, error, error_at, checked FROM reconciliation_runs WHERE id = %s",
        (report.run_id,),
    ).fetchone()
    assert run[0] == "failed" and run[1].startswith("source billing: ") and run[3] is None
    assert _breaks(db, report.run_id) == set()
    assert _open(db) == {("reconcile:invoices:INV-1", "mismatch:amount")}


def test_a_value_that_does_not_cast_fails_the_run_naming_source_field_and_line(
    db, exports, reconcile
) -> None:
    exports([billing("INV-1"), billing("INV-2", total="12,50")], [erp("INV-1")])

    report = reconcile()

    assert (report.status, report.error, report.error_at) == (
        "failed",
        "source billing: amount '12,50' is not a number",
        "billing.csv line 3",
    )
    assert db.execute("SELECT count(*) FROM exceptions").fetchone() == (0,)


def test_a_value_that_does_not_cast_fails_the_run_even_where_every_source_gives_it_alike(
    db, exports, reconcile
) -> None:
    exports([billing("INV-1", total="12,50")], [erp("INV-1", amount="12,50")])

    report = reconcile()

    assert (report.status, report.error, report.error_at) == (
        "failed",
        "source billing: amount '12,50' is not a number",
        "billing.csv line 2",
    )


def test_an_updated_at_that_does_not_cast_fails_the_run_without_a_scope_too(
    db, exports, reconcile
) -> None:
    exports([billing("INV-1", updated="yesterday at noon")], [erp("INV-1")])

    report = reconcile(scope={})

    assert (report.status, report.error, report.error_at) == (
        "failed",
        "source billing: updated_at 'yesterday at noon' is not a timestamp",
        "billing.csv line 2",
    )


def test_a_bad_number_fails_the_run_where_the_field_is_not_compared_too(
    db, exports, reconcile
) -> None:
    exports([billing("INV-1", total="12,50")], [erp("INV-1", amount="12,50")])
    given = ("invoice_id", "amount", "currency", "updated_at")  # amount: the context only
    sources = {
        "billing": {
            "type": "file",
            "path": "billing*.csv",
            "fields": {k: v for k, v in BILLING_FIELDS.items() if k in given},
        },
        "erp": {
            "type": "file",
            "path": "erp.jsonl",
            "fields": {k: v for k, v in ERP_FIELDS.items() if k in given},
        },
    }

    report = reconcile(sources=sources, compare={"currency": "exact"})

    assert (report.status, report.error) == (
        "failed",
        "source billing: amount '12,50' is not a number",
    )


@pytest.mark.parametrize(
    ("billing_values", "erp_values"),
    [
        # Missing in one, zero in the other, in two fields at once.
        ({"total": "", "tax": ""}, {"amount": 0, "taxTotal": 0}),
        ({"total": "", "tax": "0"}, {"amount": 0, "taxTotal": None}),
        # Numbers that are no number, each only equal to itself.
        ({"total": "NaN", "tax": "Infinity"}, {"amount": "Infinity", "taxTotal": "-Infinity"}),
    ],
)
def test_values_a_digest_could_confuse_are_mismatches(
    db, exports, reconcile, billing_values: dict, erp_values: dict
) -> None:
    exports([billing("INV-1", **billing_values)], [erp("INV-1", **erp_values)])

    report = reconcile(compare={k: v for k, v in COMPARE.items() if k != "customer_id"})

    assert report.breaks == {"mismatch:amount": 1, "mismatch:tax_amount": 1}, report.error


@pytest.mark.parametrize("total", ["Infinity", "NaN", "12345678901234567.00"])
def test_an_amount_no_exception_can_hold_breaks_without_failing_the_run(
    db, exports, reconcile, total: str
) -> None:
    exports([billing("INV-1", total=total)], [erp("INV-1")])

    report = reconcile()

    assert (report.status, report.breaks) == ("succeeded", {"mismatch:amount": 1}), report.error
    # The exception's amount is the context it gives, in the books' range or none.
    assert db.execute("SELECT amount FROM exceptions").fetchall() == [(None,)]


def test_values_swapped_between_two_fields_are_two_mismatches(db, exports, reconcile) -> None:
    # Equal values, in other fields: a digest of the record's values must tell them apart.
    exports(
        [billing("INV-1", total="20.00", tax="120.00"), billing("INV-2")],
        [erp("INV-1"), erp("INV-2")],
    )

    report = reconcile()

    assert _breaks(db, report.run_id) == {
        ("INV-1", "mismatch:amount"),
        ("INV-1", "mismatch:tax_amount"),
    }
    assert (report.checked, report.matched) == (2, 1)


def test_a_record_without_a_key_fails_the_run(db, exports, reconcile) -> None:
    exports([billing("INV-1")], [erp("INV-1"), erp("")])

    report = reconcile()

    assert (report.status, report.error, report.error_at) == (
        "failed",
        "source erp: a record without invoice_id",
        "erp.jsonl line 2",
    )


def test_a_second_run_while_one_holds_the_lock_skips(db_url: str, db, exports, reconcile) -> None:
    exports([billing("INV-1")], [])
    with psycopg.connect(db_url, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s, hashtext('invoices'))", (LOCK_CLASS,))
        skipped = reconcile()
        other.execute("SELECT pg_advisory_unlock(%s, hashtext('invoices'))", (LOCK_CLASS,))
    ran = reconcile()

    assert (skipped.status, skipped.run_id) == ("skipped", None)
    assert ran.status == "succeeded"
    assert db.execute("SELECT count(*) FROM reconciliation_runs").fetchone() == (1,)


def test_a_run_left_running_by_a_dead_process_is_failed_by_the_next(db, exports, reconcile) -> None:
    db.execute(
        "INSERT INTO reconciliation_runs (reconciliation, object) VALUES ('invoices', 'invoice')"
    )
    exports([billing("INV-1")], [erp("INV-1")])

    reconcile()

    assert db.execute("SELECT status, error FROM reconciliation_runs ORDER BY id").fetchall() == [
        ("failed", "interrupted: the process running it stopped"),
        ("succeeded", None),
    ]
