"""The demo sandbox: fake CRM, billing and ERP services with injectable faults, and a
traffic generator instrumented with the OpenTelemetry SDK."""
