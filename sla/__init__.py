"""SLA evaluation: the process catalog and policies (sla.yaml), and the scheduled evaluators
that turn stage events into latency rollups, stalled and reconciliation exceptions,
SLO burn rates and KPIs."""
