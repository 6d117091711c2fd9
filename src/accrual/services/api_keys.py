"""API keys: create (the secret is shown once), list, revoke, authenticate."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import secrets
import uuid
from collections.abc import Iterable

from accrual.domain import access
from accrual.domain.errors import InvalidInput, NotFound, Unauthenticated
from accrual.services.unit_of_work import Actor, UnitOfWork, read_only, unit_of_work
from accrual.store import api_keys as key_store
from accrual.store import ids
from accrual.store.database import TransactionSource
from accrual.store.pagination import Page, fetch_page

SECRET_PREFIX = "acr_"  # noqa: S105 - the public prefix of every key, not a secret
# Enough of the secret to tell keys apart in a list, far too little to guess the rest.
_DISPLAY_PREFIX_LENGTH = len(SECRET_PREFIX) + 6


class ApiKeyNotFound(NotFound):
    title = "API key not found"


class InvalidApiKey(Unauthenticated):
    title = "Invalid API key"


@dataclasses.dataclass(frozen=True)
class Principal:
    """Who is calling: the tenant and the key, with what the key may do."""

    tenant_id: uuid.UUID
    api_key_id: uuid.UUID
    scopes: frozenset[access.Scope]

    @property
    def actor(self) -> Actor:
        return Actor.api_key(self.api_key_id)


@dataclasses.dataclass(frozen=True)
class IssuedKey:
    """A new key and its secret, which exists nowhere else once this is returned."""

    key: key_store.ApiKey
    secret: str


def hash_secret(secret: str) -> bytes:
    # The secret is 256 random bits: a fast hash is enough, and authentication stays one
    # indexed lookup.
    return hashlib.sha256(secret.encode()).digest()


def _validate_name(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= 200:
        raise InvalidInput("name must be 1 to 200 characters", field="/name")
    return name


def issue_key(uow: UnitOfWork, *, name: str, scopes: Iterable[str]) -> IssuedKey:
    """Create a key inside an open unit of work (tenant creation issues the first one this way)."""
    parsed = access.parse_scopes(scopes)
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    key = key_store.ApiKey(
        tenant_id=uow.tenant_id,
        api_key_id=ids.new_id(),
        name=_validate_name(name),
        prefix=secret[:_DISPLAY_PREFIX_LENGTH],
        scopes=tuple(sorted(s.value for s in parsed)),
        created_at=uow.now,
        created_by=str(uow.actor),
        revoked_at=None,
    )
    key_store.insert(uow.conn, key, key_hash=hash_secret(secret))
    uow.changed(
        "api_key.created",
        entity_type="api_key",
        entity_id=str(key.api_key_id),
        before=None,
        after=key.snapshot(),
    )
    return IssuedKey(key=key, secret=secret)


def create_api_key(
    db: TransactionSource,
    *,
    tenant_id: uuid.UUID,
    name: str,
    scopes: Iterable[str],
    actor: Actor,
    now: dt.datetime,
) -> IssuedKey:
    """Create an API key with `scopes` for the tenant; its secret is in the result and nowhere else."""
    with unit_of_work(db, tenant_id=tenant_id, actor=actor, now=now) as uow:
        return issue_key(uow, name=name, scopes=scopes)


def revoke_api_key(
    db: TransactionSource, *, tenant_id: uuid.UUID, api_key_id: uuid.UUID, actor: Actor, now: dt.datetime
) -> key_store.ApiKey:
    """Revoke a key at once; revoking a revoked key changes nothing. Raises `ApiKeyNotFound`."""
    with unit_of_work(db, tenant_id=tenant_id, actor=actor, now=now) as uow:
        before = key_store.get(uow.conn, tenant_id=tenant_id, api_key_id=api_key_id, for_update=True)
        if before is None:
            raise ApiKeyNotFound(f"no API key {api_key_id}")
        if before.revoked_at is not None:
            return before
        after = key_store.revoke(uow.conn, tenant_id=tenant_id, api_key_id=api_key_id, at=uow.now)
        uow.changed(
            "api_key.revoked",
            entity_type="api_key",
            entity_id=str(api_key_id),
            before=before.snapshot(),
            after=after.snapshot(),
        )
        return after


def get_api_key(db: TransactionSource, *, tenant_id: uuid.UUID, api_key_id: uuid.UUID) -> key_store.ApiKey:
    with read_only(db) as conn:
        key = key_store.get(conn, tenant_id=tenant_id, api_key_id=api_key_id)
    if key is None:
        raise ApiKeyNotFound(f"no API key {api_key_id}")
    return key


def list_api_keys(
    db: TransactionSource, *, tenant_id: uuid.UUID, include_revoked: bool, cursor: str | None, limit: int
) -> Page[key_store.ApiKey]:
    query = key_store.select_for_tenant(tenant_id, include_revoked=include_revoked)
    with read_only(db) as conn:
        return fetch_page(
            conn,
            query,
            query.selected_columns.api_key_id,
            cursor=cursor,
            limit=limit,
            descending=True,
            to_item=key_store.key_from_row,
            key_of=lambda k: k.api_key_id,
            parse_key=uuid.UUID,
        )


def authenticate(db: TransactionSource, *, secret: str) -> Principal:
    """The principal behind a bearer secret; raises `InvalidApiKey` for unknown or revoked keys."""
    if not secret.startswith(SECRET_PREFIX):
        raise InvalidApiKey("the API key is not valid")
    with read_only(db) as conn:
        key = key_store.find_active_by_hash(conn, hash_secret(secret))
    if key is None:
        raise InvalidApiKey("the API key is not valid or was revoked")
    return Principal(
        tenant_id=key.tenant_id,
        api_key_id=key.api_key_id,
        scopes=frozenset(access.Scope(s) for s in key.scopes),
    )
