"""What routes receive through `Annotated[..., Depends(...)]`: settings, the memory, the caller's tenant, sessions.

Any router (the REST one, the viewer's) takes `MemoryDep`, `TenantDep` and `SessionsDep`;
tests swap them with `app.dependency_overrides`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.convertors import Convertor, register_url_convertor

from optimem import OpticalMemory, Session

from .auth import LOCAL_TENANT, KeysFile
from .errors import ApiError, not_found
from .limits import RateLimiter, SharedRateLimiter
from .schemas import SESSION_ID_MAX, SESSION_ID_PATTERN, SESSION_ID_RULE, SESSION_PATTERN, SESSION_RULE
from .settings import Settings

bearer = HTTPBearer(auto_error=False, description="An API key from `optimem keys add TENANT`.")


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_memory(request: Request) -> OpticalMemory:
    return request.app.state.memory


SettingsDep = Annotated[Settings, Depends(get_settings)]
MemoryDep = Annotated[OpticalMemory, Depends(get_memory)]


@dataclass(frozen=True)
class Tenant:
    """Who is calling: a tenant name and the key that proved it (None without auth).

    A tenant sees the sessions whose ids start with ``"<name>/"`` and calls them by the rest of
    the id; the local tenant (`LOCAL`, a service without keys) sees every session by its full id.
    """

    name: str
    key_id: str | None = None
    everything: bool = False
    """Sees every session of the database (the local user of a service without keys)."""

    @property
    def prefix(self) -> str:
        """What the library's session ids of this tenant start with ("" for the local tenant)."""
        return "" if self.everything else f"{self.name}/"


#: The caller of a service without keys.
LOCAL = Tenant(LOCAL_TENANT, everything=True)


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


async def get_tenant(
    request: Request,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Tenant:
    """The caller's tenant from its bearer key (rate-limited per key); `LOCAL` without auth."""
    if not settings.auth_enabled:
        tenant = LOCAL
    else:
        if credentials is None:
            raise _unauthorized("missing API key: send 'Authorization: Bearer <key>'")
        keys: KeysFile = request.app.state.keys
        record = keys.authenticate(credentials.credentials)
        if record is None:
            raise _unauthorized("invalid or revoked API key")
        tenant = Tenant(record.tenant, record.id)
    request.state.tenant = tenant
    limiter: RateLimiter | SharedRateLimiter = request.app.state.limiter
    await limiter.ahit(tenant.key_id or tenant.name)
    return tenant


TenantDep = Annotated[Tenant, Depends(get_tenant)]


def session_rule_error(name: str, rule: str = SESSION_RULE) -> ApiError:
    return ApiError(422, "validation_error", f"session id {name!r} is invalid: {rule}")


class TenantSession(Session):
    """A library session as one caller names it: `public_id` is its id without the tenant prefix."""

    def __init__(self, memory: OpticalMemory, session_id: str, public_id: str) -> None:
        super().__init__(memory, session_id)
        self.public_id = public_id


class TenantSessions:
    """The caller's own sessions: ``"<tenant>/<name>"`` called `name`, or for the local tenant
    every session, called by its full id."""

    def __init__(self, memory: OpticalMemory, tenant: Tenant) -> None:
        self.memory = memory
        self.tenant = tenant
        self.prefix = tenant.prefix

    def session(self, name: str) -> TenantSession:
        """The session called `name` (created on first write); checks the name's form only."""
        if self.tenant.everything:
            if (
                not isinstance(name, str)
                or len(name) > SESSION_ID_MAX
                or not re.fullmatch(SESSION_ID_PATTERN, name)
            ):
                raise session_rule_error(str(name), SESSION_ID_RULE)
        elif not isinstance(name, str) or not re.fullmatch(SESSION_PATTERN, name):
            raise session_rule_error(str(name))
        return TenantSession(self.memory, self.prefix + name, name)

    async def existing(self, name: str) -> TenantSession:
        """The session called `name`, or the 404 a missing one and another tenant's both get."""
        session = self.session(name)
        if not await session.aexists():
            raise not_found(name)
        return session

    def names(self) -> list[str]:
        # startswith again: a store may match the prefix with LIKE, where '_' is a wildcard
        ids = self.memory.sessions(prefix=self.prefix or None)
        return [sid[len(self.prefix) :] for sid in ids if sid.startswith(self.prefix)]


def get_sessions(memory: MemoryDep, tenant: TenantDep) -> TenantSessions:
    return TenantSessions(memory, tenant)


SessionsDep = Annotated[TenantSessions, Depends(get_sessions)]

#: Path words after a session id (`…/{session}/turns`): no later segment of an id in a path may
#: be one, so `DELETE /v1/sessions/a/turns` is the turns route's 405, never session "a/turns".
ROUTE_WORDS = ("turns", "pages", "stats", "context", "search")


class SessionConvertor(Convertor[str]):
    """`{session:session}`: one path segment, or (a full id) several joined by '/', none of the
    later ones a route word; the name's own rule is checked by validation (422), not routing."""

    regex = "[^/]+(?:/(?!(?:" + "|".join(ROUTE_WORDS) + ")(?:/|$))[^/]+)*"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("session", SessionConvertor())

SessionName = Annotated[
    str,
    Path(
        pattern=SESSION_ID_PATTERN,
        max_length=SESSION_ID_MAX,
        description=f"Session id: {SESSION_ID_RULE}.",
        examples=["thread-42"],
    ),
]
"""A path's `{session}`: routes declare it `{session:session}`, since a full id may hold '/'."""


async def existing_session(session: SessionName, sessions: SessionsDep) -> TenantSession:
    return await sessions.existing(session)


async def any_session(session: SessionName, sessions: SessionsDep) -> TenantSession:
    return sessions.session(session)


ExistingSession = Annotated[TenantSession, Depends(existing_session)]
"""A path's `{session}` that must exist and belong to the caller (else 404)."""
NewOrExistingSession = Annotated[TenantSession, Depends(any_session)]
