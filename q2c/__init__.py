"""Q2C Console's shared kernel: settings, database, schema migrations and the `q2c` CLI."""

__version__ = "0.1.0"
