"""Leases: a running job's claim expires unless its worker renews it (``jobs.lease_expires_at``), so that another
node takes over the work of a host that died; a delivery being sent is claimed by one node
(``deliveries.claimed_by``, with ``next_attempt_at`` pushed to the end of the claim)."""

import sqlalchemy as sa
from alembic import op

revision = "0002_leases"
down_revision = "0001_baseline"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("lease_expires_at", sa.DateTime(timezone=False), nullable=True))
        batch.create_index("ix_jobs_lease", ["state", "lease_expires_at"])
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("claimed_by", sa.String(128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("claimed_by")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_lease")
        batch.drop_column("lease_expires_at")
