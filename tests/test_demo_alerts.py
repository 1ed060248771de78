"""The demo's alerting works as shipped: its alerts.yaml loads with the environment the
demo gives it, and every channel delivers to the sandbox's notification sink, which answers
as the real services do and lists what it was sent."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import httpx
from starlette.applications import Starlette
from starlette.routing import Mount

from alerts import probe
from alerts.channels import open_channel
from alerts.check import environment_findings
from alerts.load import load_alerts_config
from demo.__main__ import alerting_environment
from demo.sink import create_sink
from tests.support.services import running_app


def test_every_demo_channel_delivers_to_the_sandbox_sink() -> None:
    app = Starlette(routes=[Mount("/sink", create_sink())])
    with running_app(app) as url:
        environ = alerting_environment(urlsplit(url).port or 0)
        config = load_alerts_config(Path(environ["Q2C_ALERTS_CONFIG"]))
        results = []
        for name, channel in config.channels.items():
            sender = open_channel(config, name, "http://console.test:8501", environ)
            try:
                for notification in probe.test_notifications(
                    name, channel, "http://console.test:8501"
                ):
                    results.append((name, sender.send(notification).delivered))
            finally:
                sender.close()
        received = httpx.get(f"{url}/sink/").json()
        malformed = httpx.post(f"{url}/sink/pagerduty", content=b"not json")

    assert environment_findings(config, environ) == []
    assert set(config.channels) == {"ops-hook", "pager", "finance-chat", "ops-slack"}
    assert all(delivered for _, delivered in results), results
    channels = sorted(entry["channel"] for entry in received)
    # PagerDuty's test is a trigger and its resolve.
    assert channels == ["pagerduty", "pagerduty", "slack", "slack", "webhook"]
    summaries = {entry["channel"]: [] for entry in received}
    for entry in received:
        summaries[entry["channel"]].append(entry["summary"])
    assert all("Test notification" in text for text in summaries["slack"]), summaries
    assert sorted(text.split(":")[0] for text in summaries["pagerduty"]) == ["resolve", "trigger"]
    assert any(entry["webhook_id"] for entry in received if entry["channel"] == "webhook")
    assert malformed.status_code == 400
