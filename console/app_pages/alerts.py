"""Alerts: the channels (each with "send test"), routes and owners as alerts.yaml configures
them, silences (create, expire early) and the notification log — what was sent to whom,
when, delivered, failed or suppressed and why. Secrets never show: a channel names the
environment variable that holds its secret, nothing more."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import pandas as pd
import streamlit as st
from pydantic import ValidationError

from alerts.channels import open_channel
from alerts.config import AlertsConfig, EventMatch
from alerts.links import console_base
from alerts.load import InvalidAlertsConfig, load_alerts_config
from alerts.probe import test_notifications
from alerts.silences import (
    Silence,
    create_silence,
    expire_silence,
    list_silences,
    parse_matchers,
)
from console._auth import act, can, page_user
from console._links import address
from console._resources import engine, load, settings, show_flash
from q2c.durations import duration_text, parse_duration
from q2c.errors import Q2CError
from queries.alerting import (
    NOTIFICATION_STATUSES,
    LogFilter,
    active_groups,
    check_test_send,
    count_notifications,
    list_notifications,
    logged_channels,
    record_test_send,
)

user = page_user("alerts.view")
PAGE_ROWS = 100
ANY = "(any)"
MANAGES_SILENCES = can(user, "silences.manage")


@st.cache_data(ttl=30, show_spinner=False)
def _config() -> AlertsConfig | list[str]:
    """alerts.yaml as the setting names it (else the shipped example), or what is wrong
    with it, one line a mistake naming its key."""
    try:
        return load_alerts_config(settings().alerts_config)
    except InvalidAlertsConfig as exc:
        return [str(settings().alerts_config or "alerts.yaml"), *exc.problems]
    except Q2CError as exc:
        return [str(exc)]


def _why(outcome: object, suppressed_by: object) -> str:
    """Why a notification ended as it did, in one column: the receiver's answer or the
    failure, or what suppressed it; nothing yet for one still to be delivered."""
    if isinstance(outcome, str):
        return outcome
    return f"suppressed by {suppressed_by}" if isinstance(suppressed_by, str) else ""


@st.cache_data(ttl=5, show_spinner=False)
def _log(actor: str, filters: LogFilter, page: int) -> pd.DataFrame:
    rows = list_notifications(engine(), actor, filters, PAGE_ROWS, (page - 1) * PAGE_ROWS)
    frame = pd.DataFrame(rows)
    if not frame.empty:
        frame["outcome"] = [
            _why(outcome, by)
            for outcome, by in zip(frame["outcome"], frame["suppressed_by"], strict=True)
        ]
        frame["exception"] = [
            None if pd.isna(i) else address("exceptions", (), id=int(i))
            for i in frame["exception_id"]
        ]
    return frame


@st.cache_data(ttl=5, show_spinner=False)
def _silences(actor: str, include_ended: bool) -> list[Silence]:
    return list_silences(engine(), actor, include_ended)


def parse_matcher_lines(lines: str) -> dict[str, list[str]]:
    """`system=erp` a line (`impact=critical,high` for several values) as matchers;
    Q2CError naming the line that is not key=value."""
    matchers: dict[str, list[str]] = {}
    for number, line in enumerate(lines.splitlines(), 1):
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        values = [v.strip() for v in value.split(",") if v.strip()]
        if not sep or not key.strip() or not values:
            raise Q2CError(f"matchers line {number}: {line.strip()!r} is not key=value")
        matchers.setdefault(key.strip(), []).extend(values)
    return matchers


def silence_end(given: str, now: datetime) -> datetime:
    """When a silence given as a duration (`2h`) or an end (`2026-12-24 06:00`, in UTC
    unless it says otherwise) ends, after `now`; Q2CError saying what is accepted."""
    try:
        end = now + parse_duration(given.strip())
    except ValueError:
        try:
            end = datetime.fromisoformat(given.strip())
        except ValueError:
            raise Q2CError(
                f"{given.strip()!r} is neither a duration (30m, 2h, 1d) nor a time "
                "(2026-12-24 06:00)"
            ) from None
        end = end if end.tzinfo else end.replace(tzinfo=UTC)
    if end <= now:
        raise Q2CError(f"a silence must end after it starts (now); {given.strip()!r} does not")
    return end


def _matchers_text(matchers: Mapping[str, Sequence[str]]) -> str:
    """`system=erp impact=critical|high`."""
    return " ".join(f"{k}={'|'.join(v)}" for k, v in matchers.items())


def _silence_text(silence: Silence) -> str:
    """`3 · system=erp until 2026-12-02 22:57 UTC · ERP upgrade`, to choose it by."""
    until = f"{silence.ends_at:%Y-%m-%d %H:%M} UTC"
    return f"{silence.id} · {_matchers_text(silence.matchers)} until {until} · {silence.reason}"


def _route_text(route: str) -> str:
    """A group's route as people read it: `routes[0] event=exception.opened` for the
    `routes[0] {"event": ["exception.opened"]}` the router keys it by; an escalation's or a
    digest's (`escalation:1`) as it is."""
    place, _, match = route.partition(" ")
    try:
        return f"{place} {EventMatch.model_validate_json(match).describe()}"
    except ValidationError:
        return route


def _send_test(config: AlertsConfig, name: str) -> None:
    """on_click of the test-send confirmation: the role is read again from the database."""

    def send() -> str:
        check_test_send(engine(), user.username)
        base = console_base(config, settings())
        sender = open_channel(config, name, base)
        try:
            said = []
            for notification in test_notifications(name, config.channels[name], base):
                result = sender.send(notification)
                if not result.delivered:
                    later = " (sending again later may succeed)" if result.retryable else ""
                    failed = f"failed: {result.reason}{later}"
                    record_test_send(engine(), user.username, name, failed)
                    raise Q2CError(f"Test to {name} {failed}")
                said.append(result.reason)
            delivered = f"delivered: {'; '.join(said)}"
            record_test_send(engine(), user.username, name, delivered)
            return f"Test to {name} {delivered}"
        finally:
            sender.close()

    message = act(send)
    if message is not None:
        st.session_state["flash"] = ("ok", message)


@st.dialog("Send a test notification")
def confirm_test(config: AlertsConfig, name: str) -> None:
    st.write(f"Send a test notification through **{name}** now? It says it is a test.")
    if st.button(
        "Send test", type="primary", key="confirm_test", on_click=_send_test, args=(config, name)
    ):
        st.rerun()


def _create(matchers: dict[str, list[str]], ends_at: datetime, reason: str) -> None:
    """on_click of the silence confirmation (alerts.silences checks the role and audits)."""
    silence = act(create_silence, engine(), user.username, matchers, ends_at, reason)
    if silence is not None:
        st.session_state["flash"] = (
            "ok",
            f"Silence {silence.id} created, until {silence.ends_at:%Y-%m-%d %H:%M} UTC",
        )
        # An emptied form: the same silence is not created twice by a second click.
        st.session_state["silence_matchers"] = ""
        st.session_state["silence_reason"] = ""
    st.cache_data.clear()


@st.dialog("Confirm silence")
def confirm_create(matchers: dict[str, list[str]], ends_at: datetime, reason: str) -> None:
    shown = _matchers_text(matchers)
    st.write(f"**Silence `{shown}` until {ends_at:%Y-%m-%d %H:%M} UTC?**")
    st.caption(f"reason: {reason}. Exceptions are still opened; only notifications stop.")
    if st.button(
        "Create silence",
        type="primary",
        key="confirm_silence",
        on_click=_create,
        args=(matchers, ends_at, reason),
    ):
        st.rerun()


def _expire(silence_id: int) -> None:
    """on_click of the expiry confirmation."""
    if act(expire_silence, engine(), user.username, silence_id) is not None:
        st.session_state["flash"] = ("ok", f"Silence {silence_id} expired")
    st.cache_data.clear()


@st.dialog("Confirm expiry")
def confirm_expire(silence_id: int, shown: str) -> None:
    st.write(f"**End silence {silence_id} now?** {shown}: its notifications are sent again.")
    if st.button(
        "Expire", type="primary", key="confirm_expire", on_click=_expire, args=(silence_id,)
    ):
        st.rerun()


st.title("Alerts")
show_flash()
config = _config()

st.subheader("Channels")
if isinstance(config, list):
    st.error("The alerts config does not load:\n\n" + "\n".join(f"- {p}" for p in config))
else:
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "channel": name,
                    "type": channel.type,
                    "sends to": channel.describe(),  # env var names only, never values
                    "secrets from": ", ".join(
                        f"{what}: ${var}" for what, var in channel.secret_variables().items()
                    ),
                }
                for name, channel in config.channels.items()
            ],
            columns=["channel", "type", "sends to", "secrets from"],
        ),
        hide_index=True,
    )
    if config.channels and can(user, "alerts.test"):
        a, b = st.columns([3, 1], vertical_alignment="bottom")
        chosen = a.selectbox("Channel to test", list(config.channels), key="test_channel")
        if b.button("Send test…", key="send_test"):
            confirm_test(config, chosen)
    elif config.channels:
        st.caption("Sending a test notification needs the oncall role or higher.")

    st.subheader("Routes")
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "#": i,
                    "match": route.match.describe(),
                    "to": ", ".join(route.to),
                    "group by": ", ".join(route.group_by),
                    "group wait": duration_text(route.group_wait),
                    "group interval": duration_text(route.group_interval),
                    "repeat interval": duration_text(route.repeat_interval),
                    "continue": route.continue_,
                }
                for i, route in enumerate(config.routes)
            ]
        ),
        hide_index=True,
    )
    st.subheader("Owners")
    st.caption("The first rule matching a new exception assigns it.")
    st.dataframe(
        pd.DataFrame(
            [{"match": rule.match.describe(), "owner": rule.owner} for rule in config.owners],
            columns=["match", "owner"],
        ),
        hide_index=True,
    )

st.subheader("Silences")
include_ended = st.toggle("Show ended silences too", key="silences_ended")
silences = load(_silences, user.username, include_ended)
now = datetime.now(UTC)
if silences:
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "id": s.id,
                    "matchers": _matchers_text(s.matchers),
                    "starts": s.starts_at,
                    "ends": s.ended_at,
                    "in force": s.active(now),
                    "reason": s.reason,
                    "author": s.author,
                    "expired by": s.expired_by or "",
                }
                for s in silences
            ]
        ),
        hide_index=True,
        column_config={
            name: st.column_config.DatetimeColumn(f"{name} (UTC)", format="YYYY-MM-DD HH:mm")
            for name in ("starts", "ends")
        },
    )
else:
    st.caption("No silence in force or to come.")
if MANAGES_SILENCES:
    with st.expander("Create a silence", expanded=False):
        lines = st.text_area(
            "Matchers, one key=value a line (impact=critical,high for several values)",
            key="silence_matchers",
            placeholder="system=erp",
        )
        a, b = st.columns(2)
        length = a.text_input(
            "For (30m, 2h, 1d) or until (2026-12-24 06:00, UTC)", "2h", key="silence_for"
        )
        reason = b.text_input("Reason (goes into the audit trail)", key="silence_reason")
        if st.button("Create silence…", key="create_silence"):
            try:
                matchers = parse_matcher_lines(lines)
                if not matchers:
                    raise Q2CError("give at least one matcher (system=erp, say)")
                parse_matchers(matchers)  # a mistyped key or value is said before confirming
                ends_at = silence_end(length, datetime.now(UTC))
                if not reason.strip():
                    raise Q2CError("give a reason (it goes into the audit trail)")
            except Q2CError as exc:
                st.warning(str(exc))
            else:
                confirm_create(matchers, ends_at, reason)
    expirable = [s for s in silences if s.expired_at is None and s.ends_at > now]
    if expirable:
        a, b = st.columns([3, 1], vertical_alignment="bottom")
        by_id = {s.id: s for s in expirable}
        chosen_id = a.selectbox(
            "Silence to expire",
            list(by_id),
            key="expire_id",
            format_func=lambda i: _silence_text(by_id[i]),
        )
        if b.button("Expire…", key="expire_silence"):
            confirm_expire(chosen_id, _matchers_text(by_id[chosen_id].matchers))
else:
    st.caption("Creating and expiring silences needs the oncall role or higher.")

st.subheader("Notification log")
a, b = st.columns(2)
channels = load(logged_channels, engine(), user.username)
channel = a.selectbox("Channel", [ANY, *channels], key="log_channel")
status = b.selectbox("Status", [ANY, *NOTIFICATION_STATUSES], key="log_status")
filters = LogFilter(
    channel=None if channel == ANY else channel, status=None if status == ANY else status
)
matching = load(count_notifications, engine(), user.username, filters)
if not matching:
    st.info("No notification matches.")
else:
    pages = -(-matching // PAGE_ROWS)
    page = (
        int(st.number_input(f"Page (of {pages:,})", 1, pages, 1, key="log_page"))
        if pages > 1
        else 1
    )
    frame = load(_log, user.username, filters, page)
    start = (page - 1) * PAGE_ROWS + 1
    st.caption(f"Showing {start:,} to {start + len(frame) - 1:,} of {matching:,}, newest first")
    st.dataframe(
        # What was sent where and how it ended first: a failure's reason is seen unscrolled.
        frame[
            [
                "created_at",
                "channel",
                "status",
                "outcome",
                "title",
                "count",
                "state",
                "attempts",
                "finished_at",
                "exception",
                "correlation_id",
                "group_id",
                "id",
            ]
        ],
        hide_index=True,
        column_config={
            "created_at": st.column_config.DatetimeColumn("at (UTC)", format="YYYY-MM-DD HH:mm:ss"),
            "finished_at": st.column_config.DatetimeColumn("finished (UTC)"),
            "outcome": st.column_config.TextColumn("outcome (why)", width="large"),
            "title": st.column_config.TextColumn("title", width="medium"),
            "exception": st.column_config.LinkColumn("exception", display_text="open"),
        },
    )

st.subheader("Open notification groups")
groups = load(active_groups, engine(), user.username, 100)
if groups:
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "id": g["id"],
                    "state": g["state"],
                    "exceptions": g["members"],
                    "open": g["open_members"],
                    "acknowledged": g["acknowledged_members"],
                    "events": g["events"],
                    "grouped by": " ".join(f"{k}={v}" for k, v in g["group_key"].items()),
                    "route": _route_text(g["route"]),
                    "next due": g["next_flush_at"],
                    "last told": g["last_flushed_at"],
                    "told": g["flushes"],
                    "last event": g["last_event_at"],
                }
                for g in groups
            ]
        ),
        hide_index=True,
        column_config={
            name: st.column_config.DatetimeColumn(f"{name} (UTC)", format="YYYY-MM-DD HH:mm:ss")
            for name in ("last event", "last told", "next due")
        },
    )
else:
    st.caption("No notification group is open.")
