"""Who is looking at the viewer: the API key from an HttpOnly cookie (set by the login form) or a bearer header.

The viewer proves a caller exactly as `/v1` does (the same keys file, the same tenants, the
same per-key rate limit for pages and JSON), so a browser sees only its tenant's sessions.
Thumbnails are authenticated too but not rate-limited: one timeline shows dozens of them.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials

from ..auth import KeysFile
from ..deps import LOCAL, MemoryDep, SettingsDep, Tenant, TenantSessions, get_tenant
from ..errors import ApiError

#: The cookie holding the caller's API key (HttpOnly, SameSite=Strict, path /ui).
COOKIE = "optimem_key"
COOKIE_PATH = "/ui"
COOKIE_MAX_AGE = 12 * 3600


class LoginRequired(ApiError):
    """No usable key: a browser is sent to the login form, a JSON client gets 401."""

    def __init__(self, message: str, next_url: str = "/ui/") -> None:
        super().__init__(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})
        self.next_url = next_url


def presented_key(request: Request) -> str | None:
    """The key the caller sent: `Authorization: Bearer` first, else the viewer's cookie."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.cookies.get(COOKIE) or None


def _next_url(request: Request) -> str:
    """Where to come back after signing in: this page (a form post goes back to the page it came from)."""
    path = request.url.path
    if request.method != "GET":
        return path.removesuffix("/read") if path.endswith("/read") else "/ui/"
    return path + (f"?{request.url.query}" if request.url.query else "")


async def viewer_tenant(request: Request, settings: SettingsDep) -> Tenant:
    """The caller's tenant, checked and rate-limited by the REST service's own `get_tenant`."""
    if not settings.auth_enabled:
        return await get_tenant(request, settings, None)
    key = presented_key(request)
    if key is None:
        raise LoginRequired("sign in with an API key to see this tenant's memory", _next_url(request))
    credentials = HTTPAuthorizationCredentials(scheme="Bearer", credentials=key)
    try:
        return await get_tenant(request, settings, credentials)
    except ApiError as exc:
        if exc.status == 401:
            raise LoginRequired("that API key is invalid or was revoked", _next_url(request)) from None
        raise


async def image_tenant(request: Request, settings: SettingsDep) -> Tenant:
    """Like `viewer_tenant` without the rate limit (page images a timeline embeds)."""
    if not settings.auth_enabled:
        tenant = LOCAL
    else:
        key = presented_key(request)
        keys: KeysFile = request.app.state.keys
        record = keys.authenticate(key) if key else None
        if record is None:
            raise LoginRequired("sign in with an API key", _next_url(request))
        tenant = Tenant(record.tenant, record.id)
    request.state.tenant = tenant
    return tenant


def check_key(request: Request, key: str) -> Tenant | None:
    """The tenant `key` belongs to (None if it is not an active key); no rate limit."""
    keys: KeysFile | None = request.app.state.keys
    if keys is None:
        return LOCAL
    record = keys.authenticate(key.strip())
    return None if record is None else Tenant(record.tenant, record.id)


def safe_next(url: str | None) -> str:
    """Where to go after signing in: only a path inside the viewer (no open redirects)."""
    if url and url.startswith("/ui") and not url.startswith("//") and "\\" not in url:
        return url
    return "/ui/"


def login_url(next_url: str) -> str:
    return "/ui/login?next=" + quote(next_url, safe="/")


def same_origin(request: Request) -> bool:
    """A state-changing form post comes from this site (the cookie is SameSite=Strict too)."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    host = request.headers.get("host", "")
    return origin.split("://", 1)[-1] == host


ViewerTenant = Annotated[Tenant, Depends(viewer_tenant)]
ImageTenant = Annotated[Tenant, Depends(image_tenant)]


def viewer_sessions(memory: MemoryDep, tenant: ViewerTenant) -> TenantSessions:
    return TenantSessions(memory, tenant)


def image_sessions(memory: MemoryDep, tenant: ImageTenant) -> TenantSessions:
    return TenantSessions(memory, tenant)


ViewerSessions = Annotated[TenantSessions, Depends(viewer_sessions)]
ImageSessions = Annotated[TenantSessions, Depends(image_sessions)]
