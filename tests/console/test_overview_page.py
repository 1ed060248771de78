"""The overview page: an explained empty state, real figures once data arrives, no tracebacks."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
from streamlit.testing.v1 import AppTest

from console._widgets import delta_text, duration_delta, moment_text
from tests.support.reconciling import billing, erp


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
    assert {"compliance, last 24 hours", "compliance, period", "bad in period"} <= set(slo.columns)
    assert all(" slow · " in bad and bad.endswith(" stalled") for bad in slo["bad in period"])
    assert any("for the window (last 24 hours)" in caption.value for caption in app.caption)
    assert set(slo["process"]) == {
        f"/stages?process={name}"
        for name in (
            "order_to_activation",
            "invoice_posting",
            "payment_application",
            "subscription_amendment",
            "customer_merge",
        )
    }


def _links(app: AppTest) -> list[tuple[str, str, str]]:
    """The page links the page shows: (label, page, query)."""
    return [
        (link.proto.label, link.proto.page, link.proto.query_string)
        for link in app.get("page_link")
    ]


def test_each_tile_links_to_the_list_behind_it_that_the_role_may_open(
    console_db: str, console_app: Callable[..., AppTest]
) -> None:
    viewer = _links(console_app(console_db, "viewer"))
    finance = _links(console_app(console_db, "finance_ops"))

    assert {page for _, page, _ in viewer} == {"stages"}  # a viewer opens no exceptions
    assert ("latency per hop", "stages", "process=invoice_posting&hours=24") in viewer
    impacts = [(label, query) for label, page, query in finance if query.startswith("impact=")]
    assert impacts and all(label.split()[1] == query[len("impact=") :] for label, query in impacts)
    assert ("open breaks", "exceptions", "reconciled_in=telemetry") in finance
    # The auto-resolved share's list is of the auto-resolved ones, not those a person resolved.
    assert ("auto-resolved exceptions", "exceptions", "status=auto_resolved") in finance
    blocking = [query for _, page, query in finance if "close=blocking" in query]
    assert blocking == ["close=blocking&currency=USD"]


def test_the_window_is_in_the_address(console_db: str, console_app: Callable[..., AppTest]) -> None:
    app = console_app(console_db, "viewer", None, {"window": "Last 7 days"})

    assert not app.exception
    assert app.get("button_group")[0].value == "Last 7 days"  # the pasted link's window
    assert any("last 7 days" in caption.value for caption in app.caption)
    assert app.query_params["window"] == "Last 7 days"
    default = console_app(console_db, "viewer", None, {"window": "no such window"})
    assert default.get("button_group")[0].value == "Last 24 hours"
    assert "window" not in default.query_params  # the default says nothing


def test_unreachable_database_is_explained_not_thrown(
    console_app: Callable[..., AppTest],
) -> None:
    app = console_app("postgresql://postgres@127.0.0.1:9/q2c?connect_timeout=2", "viewer")

    assert not app.exception
    assert "database is not reachable" in app.error[0].value


def test_a_tile_s_change_is_in_the_unit_of_its_value_and_never_minus_zero() -> None:
    assert duration_delta(150_000, 120_000) == "+0.5 min"  # the tile says "2.5 min"
    assert duration_delta(2_500, 4_000) == "-1.5 s"  # the tile says "2.5 s"
    assert duration_delta(150_000, 149_990) is None  # -0.0 min: no change worth showing
    assert delta_text(None, 3.0) is None
    assert delta_text(97.0, 96.96, " pts") is None
    assert delta_text(97.0, 95.0, " pts") == "+2.0 pts"


def test_records_reconciliation_shows_apart_from_the_telemetrys(
    console_db: str, db: psycopg.Connection, exports, reconcile, console_app: Callable[..., AppTest]
) -> None:
    exports([billing("INV-1"), billing("INV-2")], [erp("INV-1")])
    reconcile()
    # It ran a few minutes ago: the overview's window ends at the last whole minute.
    db.execute(
        "UPDATE reconciliation_runs SET started_at = started_at - interval '5 minutes', "
        "finished_at = finished_at - interval '5 minutes'"
    )

    viewer = console_app(console_db, "viewer")
    finance = console_app(console_db, "finance_ops")

    assert not viewer.exception
    tiles = {metric.label: metric.value for metric in viewer.metric}
    assert tiles["Records matched: invoices"] == "50.0%"
    assert "Telemetry reconciliation" in tiles and "Reconciliation accuracy" not in tiles
    assert any(c.value == "window 50.0% over 1 run" for c in viewer.caption)
    exports([billing("INV-1", total="lots")], [erp("INV-1")])
    assert reconcile().status == "failed"
    db.execute(
        "UPDATE reconciliation_runs SET started_at = started_at - interval '2 minutes', "
        "finished_at = finished_at - interval '2 minutes' WHERE status = 'failed'"
    )
    (succeeded_at,) = db.execute(
        "SELECT started_at FROM reconciliation_runs WHERE status = 'succeeded'"
    ).fetchone()
    after = console_app(console_db, "viewer")
    assert (
        "window 50.0% over 1 run that succeeded, :red[1 more failed]; the figure above is of "
        f"{moment_text(succeeded_at)}"
    ) in [c.value for c in after.caption]
    assert "reconciliation" not in {page for _, page, _ in _links(viewer)}
    assert ("runs and breaks", "reconciliation", "reconciliation=invoices") in _links(finance)
