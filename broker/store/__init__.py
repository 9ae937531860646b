"""The result store: the record of every job, request, result and charge (SQLAlchemy 2.x)."""

from broker.store.db import Database
from broker.store.models import Base, BudgetLimit, Job, LedgerEntry, Request, TeamSetting

__all__ = ["Base", "BudgetLimit", "Database", "Job", "LedgerEntry", "Request", "TeamSetting"]
