"""The node's persistent state: received instances, the job queue, results and deliveries (SQLAlchemy;
SQLite in WAL mode by default, PostgreSQL through the database URL)."""

from dicomnode.db.engine import Database, redact_url
from dicomnode.db.models import utcnow

__all__ = ["Database", "redact_url", "utcnow"]
