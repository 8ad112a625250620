"""Small helpers the routers share: the caller-facing session id, turning records into dicts."""

from __future__ import annotations

from typing import Any

from optimem import Session

from ..deps import TenantSession

#: Error statuses every authenticated `/v1` route can answer.
AUTHED = (400, 401, 413, 422, 429)


def public_id(session: Session) -> str:
    """The session id as the caller knows it (without the tenant prefix)."""
    return session.public_id if isinstance(session, TenantSession) else session.id


def as_dict(record: Any) -> dict[str, Any]:
    return record.to_dict()
