"""Helpers shared by the test suites: OTLP payload builders and running services."""
