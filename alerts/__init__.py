"""Alerting: who is told what about exceptions, SLOs, dead letters and replays, and through
which channel (alerts.yaml), and the channels themselves (Slack, email, PagerDuty, signed
webhooks), each speaking its receiver's protocol."""
