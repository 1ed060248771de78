"""The overview page: an explained empty state, real figures once data arrives, no tracebacks."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
from streamlit.testing.v1 import AppTest


def test_empty_database_shows_how_to_send_data(
    db_url: str, console_app: Callable[[str], AppTest]
) -> None:
    app = console_app(db_url)

    assert not app.exception
    assert "No data yet" in app.info[0].value
    assert "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318" in app.code[0].value


def test_arrived_transactions_replace_the_empty_state(
    db: psycopg.Connection, db_url: str, console_app: Callable[[str], AppTest]
) -> None:
    db.execute("SELECT q2c_ensure_partition('spans', current_date)")
    db.execute(
        "INSERT INTO spans (correlation_id, trace_id, span_id, start_time, end_time, name) "
        "VALUES ('opp-1', %s, %s, now(), now(), 'close won')",
        (b"\x03" * 16, b"\x04" * 8),
    )
    db.execute("INSERT INTO transactions (correlation_id, process) VALUES ('opp-1', 'o2a')")

    app = console_app(db_url)

    assert not app.exception
    assert not app.info
    assert app.metric[0].label == "Transactions seen" and app.metric[0].value == "1"


def test_unreachable_database_is_explained_not_thrown(
    console_app: Callable[[str], AppTest],
) -> None:
    app = console_app("postgresql://postgres@127.0.0.1:9/q2c?connect_timeout=2")

    assert not app.exception
    assert "database is not reachable" in app.error[0].value
