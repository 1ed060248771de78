"""What `make demo` puts in place before starting: one login per role."""

from __future__ import annotations

from sqlalchemy import Engine, text

from queries.users import create_user

# username, role, password (demo only: printed by `make demo`)
DEMO_USERS = (
    ("admin", "admin", "q2c-demo-admin"),
    ("finance", "finance_ops", "q2c-demo-finance"),
    ("oncall", "oncall", "q2c-demo-oncall"),
    ("cio", "viewer", "q2c-demo-viewer"),
)


def seed_users(engine: Engine) -> tuple[tuple[str, str, str], ...]:
    """Create the demo users that do not exist yet; returns all of them."""
    with engine.connect() as conn:
        existing = {row[0] for row in conn.execute(text("SELECT username FROM users"))}
    for username, role, password in DEMO_USERS:
        if username not in existing:
            create_user(engine, username, role, password, display_name=username.title())
    return DEMO_USERS


def has_history(engine: Engine) -> bool:
    """Whether transactions were already recorded (a previous demo run)."""
    with engine.connect() as conn:
        return bool(conn.execute(text("SELECT EXISTS (SELECT 1 FROM transactions)")).scalar())
