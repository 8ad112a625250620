"""Who is calling: API keys from the REST service's keys file as bearer tokens, and the tenant's sessions.

Over HTTP with a keys file, the SDK's bearer middleware asks `KeysVerifier` about each request's
key; the tenant then rides the SDK's access token into every tool call. Without keys (stdio, or
loopback HTTP) every call is the local user, who sees every session by its full id (as `optimem
serve` without keys), unless `--tenant` names one tenant whose sessions alone it sees.
"""

from __future__ import annotations

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken

from optimem.server.auth import KeysFile
from optimem.server.deps import LOCAL, Tenant, TenantSessions
from optimem.server.limits import RateLimiter

from ...memory import OpticalMemory


class KeysVerifier:
    """The SDK's `TokenVerifier` over a keys file: a key's tenant becomes the token's client id."""

    def __init__(self, keys: KeysFile) -> None:
        self.keys = keys

    async def verify_token(self, token: str) -> AccessToken | None:
        record = self.keys.authenticate(token)  # re-reads the file when it changed: revocations apply at once
        if record is None:
            return None
        return AccessToken(token=token, client_id=record.tenant, subject=record.id, scopes=[])


class Tenancy:
    """The caller's tenant and sessions for the tool call in progress."""

    def __init__(self, memory: OpticalMemory, fixed: str | None, limiter: RateLimiter | None = None) -> None:
        self.memory = memory
        self.fixed = LOCAL if fixed is None else Tenant(fixed)
        self.limiter = limiter

    def tenant(self) -> Tenant:
        token = get_access_token()
        if token is None:
            return self.fixed
        return Tenant(token.client_id, token.subject)

    def sessions(self, *, count: bool = True) -> TenantSessions:
        """The caller's sessions; `count` takes one request from its rate limit (HTTP only)."""
        tenant = self.tenant()
        if count and self.limiter is not None:
            self.limiter.hit(tenant.key_id or tenant.name)
        return TenantSessions(self.memory, tenant)
