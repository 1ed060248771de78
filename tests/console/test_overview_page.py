"""The overview page: an explained empty state, real figures once data arrives, no tracebacks."""

from __future__ import annotations

from collections.abc import Callable

from streamlit.testing.v1 import AppTest


def test_empty_database_shows_how_to_send_data(
    logins_only_db: str, console_app: Callable[..., AppTest]
) -> None:
    app = console_app(logins_only_db, "viewer")

    assert not app.exception
    assert "No data yet" in app.info[0].value
    assert "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318" in app.code[0].value


def test_kpi_tiles_and_slos_show_once_data_arrived(
    console_db: str, console_app: Callable[..., AppTest]
) -> None:
    app = console_app(console_db, "viewer")

    assert not app.exception
    tiles = {metric.label: metric.value for metric in app.metric}
    assert tiles["Open exceptions"] == "3"
    assert tiles["Invoice propagation p95"].endswith(" s")
    slo = app.dataframe[0].value
    assert set(slo["process"]) == {"order_to_activation", "invoice_posting", "payment_application",
                                   "subscription_amendment", "customer_merge"}  # fmt: skip


def test_unreachable_database_is_explained_not_thrown(
    console_app: Callable[..., AppTest],
) -> None:
    app = console_app("postgresql://postgres@127.0.0.1:9/q2c?connect_timeout=2", "viewer")

    assert not app.exception
    assert "database is not reachable" in app.error[0].value
