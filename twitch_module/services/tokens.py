"""User tokens of connected Twitch accounts, stored encrypted in ``twitch_tokens``.

:meth:`TokenStore.provider` hands out a :class:`~waddlebot.twitch.oauth.UserTokenProvider`
that refreshes before expiry and after a 401, and writes every refreshed grant back.
A refresh Twitch refuses (revoked access) marks the row ``invalid``: the broadcaster
has to connect again.
"""

from __future__ import annotations

import logging

from waddlebot.db import Database
from waddlebot.twitch.oauth import OAuthClient, TokenGrant, UserTokenProvider
from waddlebot.twitch.tokens import TokenCipher, TokenDecryptError

log = logging.getLogger("waddlebot.twitch.tokens")


class TokenStore:
    """Save grants per Twitch user and build self-refreshing providers from them."""

    def __init__(self, database: Database, oauth: OAuthClient, cipher: TokenCipher):
        self.database = database
        self.oauth = oauth
        self.cipher = cipher

    def save(self, *, user_id: str, login: str | None, display_name: str | None, grant: TokenGrant):
        """Insert or replace the tokens of one user (encrypted) and mark them active."""
        values = dict(
            login=login,
            display_name=display_name,
            access_token=self.cipher.encrypt(grant.access_token),
            refresh_token=self.cipher.encrypt(grant.refresh_token),
            scopes=list(grant.scopes),
            token_type=grant.token_type,
            expires_at=grant.expires_at,
            status="active",
        )
        with self.database.connection() as db:
            table = db.twitch_tokens
            if not db(table.user_id == user_id).update(**values):
                table.insert(user_id=user_id, **values)

    def _store_refreshed(self, user_id: str, grant: TokenGrant) -> None:
        with self.database.connection() as db:
            db(db.twitch_tokens.user_id == user_id).update(
                access_token=self.cipher.encrypt(grant.access_token),
                refresh_token=self.cipher.encrypt(grant.refresh_token),
                expires_at=grant.expires_at,
                scopes=list(grant.scopes),
                status="active",
            )

    def mark_invalid(self, user_id: str) -> None:
        """The tokens no longer work; the user must connect again."""
        with self.database.connection() as db:
            db(db.twitch_tokens.user_id == user_id).update(status="invalid")

    def provider(self, user_id: str) -> UserTokenProvider | None:
        """A refreshing token provider for the user, or None when not connected."""
        with self.database.connection() as db:
            table = db.twitch_tokens
            row = db((table.user_id == user_id) & (table.status == "active")).select().first()
        if row is None:
            return None
        try:
            grant = TokenGrant(
                access_token=self.cipher.decrypt(row.access_token),
                refresh_token=self.cipher.decrypt(row.refresh_token),
                expires_at=row.expires_at,
                scopes=tuple(row.scopes or ()),
                token_type=row.token_type or "bearer",
            )
        except TokenDecryptError:
            log.warning("tokens of Twitch user %s cannot be decrypted; reconnect needed", user_id)
            self.mark_invalid(user_id)
            return None
        return UserTokenProvider(
            self.oauth,
            grant,
            user_id=user_id,
            on_refresh=lambda fresh: self._store_refreshed(user_id, fresh),
            on_refused=lambda _error: self.mark_invalid(user_id),
        )

    def channels(self, *, offset: int = 0, limit: int = 50) -> tuple[int, list[dict]]:
        """Connected accounts without their tokens: (total, page)."""
        with self.database.connection() as db:
            table = db.twitch_tokens
            total = db(table.id > 0).count()
            rows = db(table.id > 0).select(
                table.user_id,
                table.login,
                table.display_name,
                table.scopes,
                table.expires_at,
                table.status,
                table.updated_at,
                orderby=table.id,
                limitby=(offset, offset + limit),
            )
        return total, [
            {
                "user_id": r.user_id,
                "login": r.login,
                "display_name": r.display_name,
                "scopes": r.scopes or [],
                "expires_at": r.expires_at,
                "status": r.status,
                "updated_at": r.updated_at.isoformat() if r.updated_at else None,
            }
            for r in rows
        ]
