"""Q2C Console's shared kernel: settings, database, embedded server, schema migrations,
vocabulary and masking rules. It imports nothing else of the product (docs/architecture.md)."""

__version__ = "0.1.0"
