"""Coordination: collector containers share the channels/servers to watch.

Each container claims up to ``max_claims`` entities of its platform, live ones and
higher-priority ones (lower number) first, then by viewer count. Claims are atomic:
on PostgreSQL one transaction selects candidates ``FOR UPDATE SKIP LOCKED`` so
concurrent claimers never take the same row; on SQLite (one process) a lock
serialises claimers. A claim lasts 30 minutes unless extended by a heartbeat; a
container that has not checked in for 6 minutes (5 + 1 grace) loses its claims.
Every function takes ``now`` so tests control the clock.
"""

from __future__ import annotations

import datetime
import threading

from waddlebot.contracts import PLATFORMS
from waddlebot.db import utcnow
from waddlebot.web import NotFound, ValidationError

CLAIM_TTL = datetime.timedelta(minutes=30)
CHECKIN_TIMEOUT = datetime.timedelta(minutes=6)
ERROR_THRESHOLD = 5
DEFAULT_MAX_CLAIMS = 5
PLATFORM_SCOPE = {"twitch": "channel", "discord": "server", "slack": "server", "console": "channel"}

_sqlite_lock = threading.Lock()


def claim_view(row) -> dict:
    return {
        "entity_id": row.entity_id,
        "platform": row.platform,
        "server_id": row.server_id,
        "channel_id": row.channel_id,
        "is_live": bool(row.is_live),
        "viewer_count": row.viewer_count or 0,
        "priority": row.priority,
        "status": row.status,
        "claimed_by": row.claimed_by,
        "claim_expires": row.claim_expires.isoformat() if row.claim_expires else None,
    }


def validate_platform(value) -> str:
    """A known platform name or a 400 naming ``platform``."""
    if value not in PLATFORMS:
        raise ValidationError(f"platform must be one of {', '.join(PLATFORMS)}", field="platform")
    return value


def validate_container(value) -> str:
    """A container id or a 400 naming ``container_id``."""
    if not isinstance(value, str) or not value.strip() or len(value) > 255:
        raise ValidationError("container_id must be a non-empty string", field="container_id")
    return value


def cleanup_expired(db, *, now: datetime.datetime | None = None) -> int:
    """Free claims whose time ran out or whose container stopped checking in."""
    now = now or utcnow()
    table = db.coordination
    stale = (table.claimed_by != None) & (  # noqa: E711
        (table.claim_expires < now) | (table.last_checkin < now - CHECKIN_TIMEOUT)
    )
    return db(stale).update(
        claimed_by=None, claimed_at=None, claim_expires=None, status="available"
    )


def held_by(db, container_id: str, platform: str | None = None) -> list:
    """Rows currently claimed by a container."""
    query = db.coordination.claimed_by == container_id
    if platform:
        query &= db.coordination.platform == platform
    return db(query).select(orderby=db.coordination.id)


def _candidates_postgres(db, platform: str, limit: int) -> list[int]:
    rows = db.executesql(
        "SELECT id FROM coordination WHERE platform = %s AND claimed_by IS NULL "
        "AND status <> 'error' AND error_count < %s "
        "ORDER BY is_live DESC, priority ASC, viewer_count DESC, id ASC "
        "LIMIT %s FOR UPDATE SKIP LOCKED",
        placeholders=(platform, ERROR_THRESHOLD, limit),
    )
    return [r[0] for r in rows]


def _candidates_generic(db, platform: str, limit: int) -> list[int]:
    table = db.coordination
    query = (
        (table.platform == platform)
        & (table.claimed_by == None)  # noqa: E711
        & (table.status != "error")
        & (table.error_count < ERROR_THRESHOLD)
    )
    rows = db(query).select(
        table.id,
        orderby=~table.is_live | table.priority | ~table.viewer_count | table.id,
        limitby=(0, limit),
    )
    return [r.id for r in rows]


def _whole_servers(db, platform: str, ids: list[int], servers: int) -> list[int]:
    """Discord/Slack claim whole servers: every free channel of the first servers found."""
    table = db.coordination
    picked = db(table.id.belongs(ids)).select(table.server_id, orderby=table.id)
    chosen: list[str] = []
    for row in picked:
        if row.server_id not in chosen:
            chosen.append(row.server_id)
        if len(chosen) == servers:
            break
    free = (
        (table.claimed_by == None)  # noqa: E711
        & (table.status != "error")
        & (table.error_count < ERROR_THRESHOLD)
    )
    rows = db((table.platform == platform) & table.server_id.belongs(chosen) & free).select(
        table.id
    )
    return [r.id for r in rows]


def claim(
    db,
    *,
    platform: str,
    container_id: str,
    max_claims: int = DEFAULT_MAX_CLAIMS,
    now: datetime.datetime | None = None,
) -> list[dict]:
    """Claim entities until the container holds ``max_claims``; returns what it holds."""
    now = now or utcnow()
    postgres = db._adapter.dbengine == "postgres"
    lock = None if postgres else _sqlite_lock
    if lock:
        lock.acquire()
    try:
        if cleanup_expired(db, now=now):
            db.commit()
        by_server = PLATFORM_SCOPE.get(platform) == "server"
        if postgres and by_server:
            # A whole-server claim locks candidate rows of more servers than it takes
            # and then every channel of the chosen ones: concurrent server claimers
            # would skip each other's candidates (claiming nothing while servers are
            # free) or split a server. One server claimer per platform at a time
            # (released at commit); channel platforms keep SKIP LOCKED.
            db.executesql(
                "SELECT pg_advisory_xact_lock(hashtext(%s))",
                placeholders=(f"waddlebot:coordination:{platform}",),
            )
        rows = held_by(db, container_id, platform)
        held = len({r.server_id for r in rows}) if by_server else len(rows)
        need = max(0, max_claims - held)
        if need:
            finder = _candidates_postgres if postgres else _candidates_generic
            ids = finder(db, platform, need if not by_server else need * 20)
            if ids and by_server:
                ids = _whole_servers(db, platform, ids, need)
            if ids:
                free = db.coordination.claimed_by == None  # noqa: E711
                db(db.coordination.id.belongs(ids) & free).update(
                    claimed_by=container_id,
                    claimed_at=now,
                    claim_expires=now + CLAIM_TTL,
                    last_checkin=now,
                    status="claimed",
                )
        db.commit()
    finally:
        if lock:
            lock.release()
    return [claim_view(r) for r in held_by(db, container_id, platform)]


def release(db, *, container_id: str, entity_ids: list[str] | None = None) -> int:
    """Give back some (``entity_ids``; an empty list releases none) or all claims."""
    query = db.coordination.claimed_by == container_id
    if entity_ids is not None:
        query &= db.coordination.entity_id.belongs(entity_ids)
    return db(query).update(
        claimed_by=None, claimed_at=None, claim_expires=None, status="available"
    )


def checkin(db, *, container_id: str, now: datetime.datetime | None = None) -> dict:
    """The 5-minute check-in: keeps the container's claims alive."""
    now = now or utcnow()
    cleanup_expired(db, now=now)
    renewed = db(db.coordination.claimed_by == container_id).update(
        last_checkin=now, claim_expires=now + CLAIM_TTL
    )
    return {"renewed": renewed, "claims": [claim_view(r) for r in held_by(db, container_id)]}


def heartbeat(db, *, container_id: str, now: datetime.datetime | None = None) -> dict:
    """Extend the container's claims by another claim period."""
    now = now or utcnow()
    extended = db(db.coordination.claimed_by == container_id).update(
        claim_expires=now + CLAIM_TTL, last_check=now
    )
    return {"extended": extended}


def update_status(
    db,
    *,
    entity_id: str,
    is_live: bool | None = None,
    viewer_count: int | None = None,
    now: datetime.datetime | None = None,
) -> dict:
    """Live status and viewers of one entity (collectors report them)."""
    now = now or utcnow()
    row = db(db.coordination.entity_id == entity_id).select().first()
    if row is None:
        raise NotFound(f"entity {entity_id!r} is not coordinated", field="entity_id")
    values: dict = {"last_activity": now}
    if is_live is not None:
        values["is_live"] = is_live
        if is_live and not row.is_live:
            values["live_since"] = now
        if not is_live:
            values["live_since"] = None
    if viewer_count is not None:
        values["viewer_count"] = viewer_count
    row.update_record(**values)
    return claim_view(row)


def report_error(db, *, entity_id: str, container_id: str | None, error: str) -> dict:
    """Count an error; past the threshold the entity is marked and skipped."""
    row = db(db.coordination.entity_id == entity_id).select().first()
    if row is None:
        raise NotFound(f"entity {entity_id!r} is not coordinated", field="entity_id")
    count = (row.error_count or 0) + 1
    values = {"error_count": count, "last_error": error[:2000]}
    if count >= ERROR_THRESHOLD:
        values.update(status="error", claimed_by=None, claim_expires=None)
    row.update_record(**values)
    return {"entity_id": entity_id, "error_count": count, "status": row.status}


def release_offline(
    db,
    *,
    container_id: str,
    platform: str,
    max_claims: int = DEFAULT_MAX_CLAIMS,
    now: datetime.datetime | None = None,
) -> dict:
    """Drop the container's offline entities and claim new ones in their place."""
    offline = db(
        (db.coordination.claimed_by == container_id)
        & (db.coordination.platform == platform)
        & (db.coordination.is_live == False)
    ).select(db.coordination.entity_id)
    released = [r.entity_id for r in offline]
    if released:
        release(db, container_id=container_id, entity_ids=released)
        db.commit()
    claimed = claim(
        db, platform=platform, container_id=container_id, max_claims=max_claims, now=now
    )
    return {"released": released, "claimed": claimed}


def populate(db, *, platform: str | None = None) -> dict:
    """Fill the coordination table from active ``servers`` rows (idempotent)."""
    query = db.servers.is_active == True
    if platform:
        query &= db.servers.platform == platform
    existing = {r.entity_id for r in db(db.coordination.id > 0).select(db.coordination.entity_id)}
    created = 0
    for server in db(query).select():
        entity_id = f"{server.platform}:{server.server_id}:{server.channel}"
        if entity_id in existing:
            continue
        db.coordination.insert(
            platform=server.platform,
            server_id=server.server_id,
            channel_id=server.channel,
            entity_id=entity_id,
            status="available",
            metadata={},
            config=server.config or {},
        )
        existing.add(entity_id)
        created += 1
    return {"created": created, "total": len(existing)}


def stats(db) -> dict:
    """Counts by platform and status, live entities and containers."""
    table = db.coordination
    count = table.id.count()
    by_status: dict = {}
    for row in db(table.id > 0).select(
        table.platform, table.status, count, groupby=table.platform | table.status
    ):
        by_status.setdefault(row.coordination.platform, {})[row.coordination.status] = row[count]
    containers = db(table.claimed_by != None).select(  # noqa: E711
        table.claimed_by, distinct=True
    )
    return {
        "by_platform": by_status,
        "live": db(table.is_live == True).count(),
        "claimed": db(table.claimed_by != None).count(),  # noqa: E711
        "containers": sorted(r.claimed_by for r in containers),
        "errored": db(table.status == "error").count(),
    }


def ensure_entity(db, *, platform: str, server_id: str, channel_id: str) -> None:
    """Make an activated channel claimable (no-op when already coordinated)."""
    entity_id = f"{platform}:{server_id}:{channel_id}"
    if db(db.coordination.entity_id == entity_id).isempty():
        db.coordination.insert(
            platform=platform,
            server_id=server_id,
            channel_id=channel_id,
            entity_id=entity_id,
            status="available",
            metadata={},
            config={},
        )
