"""The demo community ``waddlebot up`` seeds so a newcomer can chat at once.

A console channel (``console:demo:demo``) and a Twitch-like channel
(``twitch:demo:demo``) share one community owned by ``alice``; core modules are
enabled there by default. Running it again changes nothing.
"""

from __future__ import annotations

from .contracts import entity_id_for
from .db import Database

DEMO_OWNER = "alice"
DEMO_CHANNELS = (("console", "demo", "demo"), ("twitch", "demo", "demo"))
DEMO_COMMUNITY = "WaddleBot Demo"


def _user(db, platform: str, platform_user_id: str, name: str) -> int:
    identity = (
        db(
            (db.user_identities.platform == platform)
            & (db.user_identities.platform_user_id == platform_user_id)
        )
        .select()
        .first()
    )
    if identity is not None:
        return identity.user_id
    user_id = db.users.insert(display_name=name)
    db.user_identities.insert(
        user_id=user_id,
        platform=platform,
        platform_user_id=platform_user_id,
        platform_username=name,
    )
    return int(user_id)


def seed_demo(database: Database) -> dict:
    """Create the demo community, its channels and owner if missing; returns their ids."""
    with database.connection() as db:
        owner = _user(db, "console", DEMO_OWNER, DEMO_OWNER)
        _user_twitch = _user(db, "twitch", DEMO_OWNER, DEMO_OWNER)
        if _user_twitch != owner:
            # one person, two identities: keep them on one bot user
            db(db.user_identities.user_id == _user_twitch).update(user_id=owner)
            db(db.users.id == _user_twitch).delete()
        community = db(db.communities.name == DEMO_COMMUNITY).select().first()
        community_id = (
            community.id
            if community
            else db.communities.insert(
                name=DEMO_COMMUNITY, platform="console", owner_user_id=owner, config={}
            )
        )
        rbac = db(
            (db.community_rbac.community_id == community_id) & (db.community_rbac.user_id == owner)
        )
        if rbac.isempty():
            db.community_rbac.insert(
                community_id=community_id, user_id=owner, role="owner", assigned_by="seed"
            )
        entities = []
        for platform, server_id, channel_id in DEMO_CHANNELS:
            entity_id = entity_id_for(platform, server_id, channel_id)
            entities.append(entity_id)
            if db(db.entities.entity_id == entity_id).isempty():
                db.entities.insert(
                    entity_id=entity_id,
                    platform=platform,
                    server_id=server_id,
                    channel_id=channel_id,
                    owner=DEMO_OWNER,
                    community_id=community_id,
                    config={},
                )
            server = db(
                (db.servers.platform == platform)
                & (db.servers.server_id == server_id)
                & (db.servers.channel == channel_id)
            )
            if server.isempty():
                db.servers.insert(
                    platform=platform,
                    server_id=server_id,
                    channel=channel_id,
                    owner=DEMO_OWNER,
                    is_active=True,
                    config={},
                )
        members = db(
            (db.community_memberships.community_id == community_id)
            & (db.community_memberships.user_id == owner)
        )
        if members.isempty():
            db.community_memberships.insert(community_id=community_id, user_id=owner, reputation=0)
    return {"community_id": community_id, "owner": DEMO_OWNER, "entities": entities}
