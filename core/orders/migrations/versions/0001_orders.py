"""Orders, their findings and the append-only audit log.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

AUDIT_REFUSED = "order_audit is append-only: audit entries cannot be changed or deleted"


def upgrade() -> None:
    ts = sa.DateTime()
    op.create_table(
        "orders",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("pattern", sa.String(300), nullable=False, index=True),
        sa.Column("open_pattern", sa.String(300), unique=True),
        sa.Column("site", sa.String(100), nullable=False),
        sa.Column("line", sa.String(100), nullable=False),
        sa.Column("machine", sa.String(300), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("severity", sa.Float),
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("team", sa.String(64), index=True),
        sa.Column("rule", sa.Integer),
        sa.Column("auto_dispatched", sa.Boolean, nullable=False),
        sa.Column("opened_at", ts, nullable=False),
        sa.Column("due_at", ts, nullable=False),
        sa.Column("dispatched_at", ts),
        sa.Column("acknowledged_at", ts),
        sa.Column("resolved_at", ts),
        sa.Column("closed_at", ts),
        sa.Column("verified_at", ts),
        sa.Column("updated_at", ts, nullable=False),
        sa.Column("window_start", ts, nullable=False),
        sa.Column("window_end", ts, nullable=False),
        sa.Column("observed_start", ts, nullable=False),
        sa.Column("observed_end", ts, nullable=False),
        sa.Column("excess_kwh", sa.Float, nullable=False),
        sa.Column("cost", sa.Float),
        sa.Column("currency", sa.String(8)),
        sa.Column("co2_kg", sa.Float),
        sa.Column("explanation", sa.Text, nullable=False),
        sa.Column("expected_savings_kwh", sa.Float, nullable=False),
        sa.Column("expected_savings_cost", sa.Float),
        sa.Column("findings_count", sa.Integer, nullable=False),
        sa.Column("reassignments", sa.Integer, nullable=False, server_default="0"),
        sa.Column("reopen_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("reject_reason", sa.Text),
        sa.Column("verified_kwh", sa.Float),
        sa.Column("verified_cost", sa.Float),
        sa.Column("verified_co2_kg", sa.Float),
        sa.Column("verified_uncertainty_kwh", sa.Float),
        sa.Column("verification_method", sa.String(32)),
        sa.Column("version", sa.Integer, nullable=False),
    )
    op.create_table(
        "order_findings",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("order_id", sa.Integer, sa.ForeignKey("orders.id"), nullable=False, index=True),
        sa.Column("pattern", sa.String(300), nullable=False),
        sa.Column("start_at", ts, nullable=False),
        sa.Column("end_at", ts, nullable=False),
        sa.Column("excess_kwh", sa.Float, nullable=False),
        sa.Column("cost", sa.Float),
        sa.Column("co2_kg", sa.Float),
        sa.Column("severity", sa.Float),
        sa.Column("explanation", sa.Text),
        sa.Column("run", sa.String(128)),
        sa.Column("added_at", ts, nullable=False),
        sa.UniqueConstraint("pattern", "start_at", name="uq_order_findings_pattern_start"),
    )
    op.create_table(
        "order_audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("order_id", sa.Integer, sa.ForeignKey("orders.id"), nullable=False, index=True),
        sa.Column("at", ts, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("from_status", sa.String(16)),
        sa.Column("to_status", sa.String(16)),
        sa.Column("team", sa.String(64)),
        sa.Column("comment", sa.Text, nullable=False),
        sa.Column("data", sa.Text),
    )
    # The audit log cannot be edited: the database itself refuses UPDATE and DELETE (and TRUNCATE on PostgreSQL).
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"""
            CREATE FUNCTION wattline_order_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION '{AUDIT_REFUSED}'; END $$""")
        op.execute("CREATE TRIGGER order_audit_no_change BEFORE UPDATE OR DELETE ON order_audit FOR EACH ROW "
                   "EXECUTE FUNCTION wattline_order_audit_append_only()")
        op.execute("CREATE TRIGGER order_audit_no_truncate BEFORE TRUNCATE ON order_audit FOR EACH STATEMENT "
                   "EXECUTE FUNCTION wattline_order_audit_append_only()")
    else:
        for what in ("UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER order_audit_no_{what.lower()} BEFORE {what} ON order_audit "
                       f"BEGIN SELECT RAISE(ABORT, '{AUDIT_REFUSED}'); END")


def downgrade() -> None:
    raise RuntimeError("downgrading the work-order database is refused: the audit log would be lost")
