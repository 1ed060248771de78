"""Slack, PagerDuty and webhooks, each against a loopback receiver shaped like the real one:
what each receives, and how each answer becomes a delivery or a failure."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any

from starlette.responses import JSONResponse, PlainTextResponse, Response

from alerts.channel import Channel
from alerts.channels import open_channel
from alerts.load import parse_alerts_config
from alerts.signing import parse_secret, signature
from replay.transport import retry_after_seconds
from tests.support.peers import free_port

CONSOLE = "http://console.example.com"
ENV = {
    "Q2C_SLACK_WEBHOOK_URL": "",
    "Q2C_PD_ROUTING_KEY": "R0123456789abcdef0123456789abcd",
    "Q2C_OPS_HOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
}


def channel(kind: str, environ: dict[str, str] | None = None, **keys: Any) -> Channel:
    secret = {
        "slack": {"url_env": "Q2C_SLACK_WEBHOOK_URL"},
        "pagerduty": {"routing_key_env": "Q2C_PD_ROUTING_KEY"},
        "webhook": {"secret_env": "Q2C_OPS_HOOK_SECRET"},
    }[kind]
    config = parse_alerts_config({"channels": {"it": {"type": kind, **secret, **keys}}})
    return open_channel(config, "it", CONSOLE, {**ENV, **(environ or {})})


# --- Slack -------------------------------------------------------------------------------


def test_slack_gets_block_kit_with_a_text_fallback_and_the_console_link(slack, alike) -> None:
    sent = alike(count=5000)

    result = channel("slack", {"Q2C_SLACK_WEBHOOK_URL": slack.url}).send(sent)

    assert result.delivered, result.reason
    assert result.reason == "Slack answered 200 ok"
    headers, _ = slack.requests[0]
    assert headers["content-type"].startswith("application/json")
    message = slack.bodies()[0]
    assert message["text"] == (
        "[critical] ERP rejected invoice INV-2026-0042: tax code &lt;T9&gt; unknown "
        "(5,000 occurrences) — http://console.example.com/exceptions?id=42"
    )
    assert "5,000 occurrences" in message["text"]
    kinds = [block["type"] for block in message["blocks"]]
    assert kinds == ["header", "section", "section", "actions", "context"]
    header, text, fields, actions, context = message["blocks"]
    assert header["text"] == {"type": "plain_text", "text": sent.headline()}  # literal text
    # mrkdwn reads <, > and & as markup (links, mentions): they arrive escaped.
    assert text["text"]["text"].startswith("invoice_recorded failed in erp for ACME GmbH &amp; Co")
    assert {"type": "mrkdwn", "text": "*system*\nerp"} in fields["fields"]
    assert actions["elements"][0]["url"] == "http://console.example.com/exceptions?id=42"
    assert "order-7781" in context["elements"][0]["text"]


def test_slack_rate_limiting_may_be_retried_after_the_time_it_names(slack, alike) -> None:
    slack.answer_next(PlainTextResponse("rate_limited", 429, headers={"Retry-After": "7"}))

    result = channel("slack", {"Q2C_SLACK_WEBHOOK_URL": slack.url}).send(alike())

    assert (result.delivered, result.retryable, result.retry_after) == (False, True, 7.0)
    assert result.reason == "Slack answered 429 rate_limited"


def test_a_slack_webhook_that_is_gone_is_not_retried_nor_shown(slack, alike) -> None:
    wrong = slack.url.replace("sEcReTtOkEn", "revoked")

    result = channel("slack", {"Q2C_SLACK_WEBHOOK_URL": wrong}).send(alike())

    assert (result.delivered, result.retryable) == (False, False)
    assert result.reason == "Slack answered 404 no_service"


def test_slack_failures_never_show_the_webhook_url(alike) -> None:
    url = f"http://127.0.0.1:{free_port()}/services/T0001/B0001/sEcReTtOkEn"

    refused = channel("slack", {"Q2C_SLACK_WEBHOOK_URL": url}).send(alike())
    unset = channel("slack", {"Q2C_SLACK_WEBHOOK_URL": ""}).send(alike())
    mangled = channel("slack", {"Q2C_SLACK_WEBHOOK_URL": "hooks.slack.com/sEcReTtOkEn"}).send(
        alike()
    )

    assert (refused.delivered, refused.retryable, refused.reason) == (
        False,
        True,
        "connection refused",
    )
    assert unset.reason == "$Q2C_SLACK_WEBHOOK_URL is not set"
    assert mangled.reason == "$Q2C_SLACK_WEBHOOK_URL is not an http:// or https:// URL"
    assert all("sEcReTtOkEn" not in r.reason for r in (refused, unset, mangled))


# --- PagerDuty ---------------------------------------------------------------------------


def test_pagerduty_trigger_acknowledge_resolve_follow_one_alert_by_its_dedup_key(
    pagerduty, alike
) -> None:
    pager = channel("pagerduty", url=pagerduty.url)
    firing = alike()

    trigger = pager.send(firing)
    assert trigger.delivered, trigger.reason
    assert pagerduty.alerts == {firing.group_key: "triggered"}
    acknowledge = pager.send(alike(status="acknowledged", group_key=firing.group_key))
    assert pagerduty.alerts == {firing.group_key: "acknowledged"}
    resolve = pager.send(alike(status="resolved", group_key=firing.group_key))
    assert pagerduty.alerts == {firing.group_key: "resolved"}

    assert [r.reason for r in (trigger, acknowledge, resolve)] == [
        f"PagerDuty accepted the {action} (dedup_key {firing.group_key})"
        for action in ("trigger", "acknowledge", "resolve")
    ]
    sent = pagerduty.bodies()
    assert [event["event_action"] for event in sent] == ["trigger", "acknowledge", "resolve"]
    assert sent[1] == {
        "routing_key": ENV["Q2C_PD_ROUTING_KEY"],
        "event_action": "acknowledge",
        "dedup_key": firing.group_key,
    }
    payload = sent[0]["payload"]
    assert payload["summary"] == firing.headline()
    assert (payload["source"], payload["component"], payload["group"]) == (
        "erp",
        "invoice_recorded",
        "invoice_posting",
    )
    assert (payload["severity"], payload["class"]) == ("critical", "exception.opened")
    assert payload["timestamp"] == "2026-12-02T09:14:05+00:00"
    assert payload["custom_details"]["amount"] == 12500.0
    assert payload["custom_details"]["correlation_id"] == "order-7781"
    assert sent[0]["links"] == [{"href": firing.link, "text": "Open in Q2C Console"}]


def test_pagerduty_severity_follows_impact(pagerduty, alike) -> None:
    pager = channel("pagerduty", url=pagerduty.url)

    for impact in ("critical", "high", "medium", "low", None):
        assert pager.send(alike(severity=impact)).delivered

    assert [event["payload"]["severity"] for event in pagerduty.bodies()] == [
        "critical",
        "error",
        "warning",
        "info",
        "info",
    ]


def test_a_group_key_past_pagerdutys_limit_is_hashed_the_same_for_the_whole_group(
    pagerduty, alike
) -> None:
    pager = channel("pagerduty", url=pagerduty.url)
    key = "route-0/" + "correlation_id=order-7781," * 20

    assert pager.send(alike(group_key=key)).delivered
    assert pager.send(alike(group_key=key, status="resolved")).delivered

    hashed = hashlib.sha256(key.encode()).hexdigest()
    assert [event["dedup_key"] for event in pagerduty.bodies()] == [hashed, hashed]
    assert pagerduty.alerts == {hashed: "resolved"}


def test_an_event_pagerduty_refuses_is_not_retried_and_says_why(pagerduty, alike) -> None:
    pager = channel("pagerduty", {"Q2C_PD_ROUTING_KEY": "Rwrong"}, url=pagerduty.url)

    result = pager.send(alike())

    assert (result.delivered, result.retryable) == (False, False)
    assert result.reason == "PagerDuty answered 400 to the trigger: 'routing_key' is invalid"
    assert pagerduty.alerts == {}


def test_pagerduty_throttling_and_outages_may_be_retried(pagerduty, alike) -> None:
    pagerduty.answer_next(
        JSONResponse(
            {
                "status": "throttle event",
                "message": "Requests for this service are arriving too quickly",
            },
            429,
        ),
        PlainTextResponse("upstream unavailable", 503, headers={"Retry-After": "30"}),
    )
    pager = channel("pagerduty", url=pagerduty.url)

    throttled, down, through = (pager.send(alike()) for _ in range(3))

    assert (throttled.delivered, throttled.retryable, throttled.retry_after) == (False, True, None)
    assert "arriving too quickly" in throttled.reason
    assert (down.delivered, down.retryable, down.retry_after) == (False, True, 30.0)
    assert through.delivered


def test_pagerduty_without_its_routing_key_sends_nothing(pagerduty, alike) -> None:
    result = channel("pagerduty", {"Q2C_PD_ROUTING_KEY": ""}, url=pagerduty.url).send(alike())

    assert (result.delivered, result.reason) == (False, "$Q2C_PD_ROUTING_KEY is not set")
    assert pagerduty.requests == []


# --- Signed webhooks ---------------------------------------------------------------------


def test_the_signature_matches_the_specifications_published_vector() -> None:
    # libraries/python/tests of the Standard Webhooks repository: test_sign_function.
    key = parse_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")

    signed = signature(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')

    assert signed == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_a_webhook_is_a_cloudevent_the_reference_library_verifies(consumer, alike) -> None:
    sent = alike()

    result = channel("webhook", url=consumer.url).send(sent)

    assert result.delivered, result.reason
    assert result.reason == f"{consumer.url} answered 204"
    [event] = consumer.events  # verified by standardwebhooks, parsed by the CloudEvents SDK
    assert event.get_specversion() == "1.0"
    assert event.get_id() == sent.id
    assert event.get_type() == "q2c.exception.opened"
    assert event.get_subject() == "order-7781"
    assert event.get_source() == CONSOLE
    assert event.get_time().isoformat() == "2026-12-02T09:14:05+00:00"
    assert event.get_datacontenttype() == "application/json"
    data = event.get_data()
    assert data["link"] == "http://console.example.com/exceptions?id=42"
    assert (data["status"], data["severity"], data["count"]) == ("firing", "critical", 1)
    assert data["details"]["system"] == "erp"
    headers, body = consumer.requests[0]
    assert headers["content-type"] == "application/cloudevents+json; charset=utf-8"
    assert headers["webhook-id"] == sent.id
    # The signature is over exactly the bytes sent: recomputed here by hand as well.
    signed = f"{sent.id}.{headers['webhook-timestamp']}.".encode() + body
    key = base64.b64decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    assert headers["webhook-signature"] == f"v1,{expected}"


def test_a_retried_webhook_keeps_its_id_so_the_consumer_can_deduplicate(consumer, alike) -> None:
    consumer.answer_next(Response(status_code=500))
    hook = channel("webhook", url=consumer.url)
    sent = alike()

    first, second = hook.send(sent), hook.send(sent)

    assert (first.delivered, first.retryable, second.delivered) == (False, True, True)
    assert [headers["webhook-id"] for headers, _ in consumer.requests] == [sent.id, sent.id]


def test_a_consumer_holding_another_secret_rejects_the_webhook(consumer, alike) -> None:
    consumer.secret = "whsec_" + base64.b64encode(b"another secret of 24 bytes").decode()

    result = channel("webhook", url=consumer.url).send(alike())

    assert (result.delivered, result.retryable) == (False, False)
    assert result.reason == f"{consumer.url} answered 401: No matching signature found"


def test_a_consumer_that_is_gone_or_redirects_is_not_retried(consumer, alike) -> None:
    consumer.answer_next(
        Response(status_code=410),
        Response(status_code=307, headers={"Location": "http://127.0.0.1:1/elsewhere"}),
    )
    hook = channel("webhook", url=consumer.url)

    gone, moved = hook.send(alike()), hook.send(alike())

    assert (gone.delivered, gone.retryable) == (False, False)
    assert gone.reason.endswith("answered 410 Gone: the consumer wants no more webhooks")
    assert (moved.delivered, moved.retryable) == (False, False)
    assert "a redirect, which alerts do not follow" in moved.reason
    assert len(consumer.requests) == 2  # the redirect was not followed


def test_a_webhook_secret_that_is_not_whsec_sends_nothing_and_is_not_shown(consumer, alike) -> None:
    hook = channel("webhook", {"Q2C_OPS_HOOK_SECRET": "hunter2-plain"}, url=consumer.url)

    result = hook.send(alike())

    assert result.reason == (
        "$Q2C_OPS_HOOK_SECRET does not start with whsec_ (expected whsec_<base64>)"
    )
    assert "hunter2" not in result.reason
    assert consumer.requests == []


def test_retry_after_is_read_as_seconds_or_as_an_http_date() -> None:
    now = datetime(2026, 12, 2, 9, 14, 5, tzinfo=UTC)

    assert retry_after_seconds("120", now) == 120.0
    assert retry_after_seconds("Wed, 02 Dec 2026 09:15:05 GMT", now) == 60.0
    assert retry_after_seconds("Wed, 02 Dec 2026 09:00:00 GMT", now) == 0.0  # already past
    assert retry_after_seconds("soon", now) is None
    assert retry_after_seconds(None, now) is None
