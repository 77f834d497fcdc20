"""Baseline: the tables as ``create_all`` made them before schema versions existed (studies, instances, jobs,
results, outputs, deliveries, delivery_attempts, audit_events). Nothing to do: an unversioned database with
these tables is stamped with this revision and upgraded from here."""

revision = "0001_baseline"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
