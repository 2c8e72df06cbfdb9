"""What the alias module answers in chat: ``!alias …`` and running an alias.

Running an alias never calls the target module itself: the expanded line goes back
to the router as a new chat message of the same user, with platform badges that give
exactly the level the router computed for this call. The router then checks the
target's permissions and rate limits and answers (or refuses) in chat, so an alias
can never lift a permission.
"""

from __future__ import annotations

import logging
import shlex

from waddlebot.http import HttpError
from waddlebot.modules import CommandCall

from .aliases import AliasBook, RouterUnavailable
from .expansion import MAX_LINE, AliasError, normalize_name, shorten, split_arguments
from .router_client import RouterClient

log = logging.getLogger("waddlebot.alias")

#: levels that may add and remove aliases
MANAGERS = ("owner", "admin", "moderator")
#: the badge that gives each level again when the expanded line goes back to the router
ROLE_BADGES = {
    "owner": ["broadcaster"],
    "admin": ["admin"],
    "moderator": ["moderator"],
    "vip": ["vip"],
    "subscriber": ["subscriber"],
    "member": [],
}
USAGE = (
    'Aliases: !alias add !name "<command>" · !alias remove !name · !alias list — '
    "variables: {user} {arg1} {arg2} … {args} {all_args}"
)
ADD_USAGE = 'Usage: !alias add !name "<command>", for example !alias add !hi "!so {arg1}"'
#: longest chat answer of ``!alias list``
LIST_LIMIT = 450


def chat(text: str) -> dict:
    """A chat response for the router."""
    return {"response_action": "chat", "chat_message": text}


def _split_head(text: str, count: int) -> tuple[list[str], str]:
    """The first ``count`` shell words of ``text`` and the raw text after them."""
    lexer = shlex.shlex(text, posix=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    words = []
    for _ in range(count):
        word = lexer.get_token()
        if word is None:
            return words, ""
        words.append(word)
    return words, text[lexer.instream.tell() :].strip()


class AliasChat:
    """Handles the router's calls for ``!alias`` and for every alias name."""

    def __init__(self, *, book: AliasBook, router: RouterClient):
        self.book = book
        self.router = router

    def community_id(self, call: CommandCall) -> int | None:
        """The caller's community (from the call, else from the entity)."""
        if isinstance(call.community_id, int):
            return call.community_id
        return self.book.community_of(call.entity_id)

    # -- !alias ---------------------------------------------------------------------------
    def manage(self, call: CommandCall) -> dict:
        """Answer ``!alias add|remove|list``."""
        user = call.user.name
        try:
            words = split_arguments(call.args_text)
        except AliasError as exc:
            return chat(f"@{user}, {exc}")
        action = words[0].lower() if words else ""
        community_id = self.community_id(call)
        if action in ("", "help"):
            return chat(USAGE)
        if community_id is None:
            return chat(f"@{user}, this channel does not belong to a community yet.")
        if action in ("list", "ls"):
            return chat(self._list(community_id))
        if action not in ("add", "set", "remove", "rm", "delete", "del"):
            return chat(f"@{user}, I don't know !alias {shorten(action, 20)}. {USAGE}")
        if call.user.role not in MANAGERS:
            return chat(f"@{user}, sorry — only moderators and above can add or remove aliases.")
        if action in ("add", "set"):
            return chat(self._add(call, community_id))
        return chat(self._remove(call, community_id, words[1:]))

    def _list(self, community_id: int) -> str:
        total, aliases = self.book.list(community_id)
        if not aliases:
            return 'There are no aliases here yet. Add one with !alias add !hi "!so {arg1}"'
        text = f"Aliases here ({total}): "
        for shown, alias in enumerate(aliases):
            entry = ("; " if shown else "") + f"{alias.label} → {shorten(alias.command, 60)}"
            if len(text) + len(entry) > LIST_LIMIT - 20:
                return f"{text} … and {total - shown} more"
            text += entry
        return text

    def _add(self, call: CommandCall, community_id: int) -> str:
        user = call.user.name
        head, rest = _split_head(call.args_text, 2)
        if len(head) < 2 or not rest:
            return f"@{user}, {ADD_USAGE}"
        words = split_arguments(rest)
        # one quoted word is the command itself; several words are taken as typed
        command = words[0] if len(words) == 1 else rest
        try:
            alias, created = self.book.save(
                community_id=community_id, name=head[1], command=command, created_by=user
            )
        except AliasError as exc:
            return f"@{user}, {exc}"
        except RouterUnavailable:
            return (
                f"@{user}, I can't reach the command router right now, so the alias was not "
                "saved; try again in a moment."
            )
        verb = "Added" if created else "Updated"
        return f"{verb} {alias.label} → {shorten(alias.command, 80)}"

    def _remove(self, call: CommandCall, community_id: int, words: list[str]) -> str:
        user = call.user.name
        if not words:
            return f"@{user}, Usage: !alias remove !name"
        try:
            name = normalize_name(words[0])
        except AliasError as exc:
            return f"@{user}, {exc}"
        alias = self.book.get(community_id, name)
        if alias is None:
            return f"@{user}, there is no alias !{name} here."
        self.book.remove(alias)
        return f"Removed {alias.label}."

    # -- running an alias -------------------------------------------------------------------
    def run(self, call: CommandCall) -> dict:
        """Expand the alias and send the result through the router as the same user."""
        user = call.user.name
        community_id = self.community_id(call)
        name = (call.command or "").lower()
        if community_id is None or not name:
            return {}
        try:
            expansion = self.book.expand(community_id, name, user=user, args_text=call.args_text)
        except AliasError as exc:
            return chat(f"@{user}, {exc}")
        if expansion is None:
            # the name is registered because another community has it; not an alias here
            return {}
        if len(expansion.line) > MAX_LINE:
            return chat(
                f"@{user}, !{name} expands to {len(expansion.line)} characters; "
                f"chat commands can be at most {MAX_LINE}."
            )
        event = {
            "platform": call.platform,
            "server_id": call.server_id,
            "channel_id": call.channel_id,
            "user_id": call.user.platform_user_id,
            "user_name": user,
            "message_type": "chatMessage",
            "message_content": expansion.line,
            "event_id": f"alias-{call.execution_id}",
            "user_roles": ROLE_BADGES.get(call.user.role, []),
            "metadata": {
                "alias": f"!{name}",
                "alias_chain": [f"!{n}" for n in expansion.chain],
                "alias_execution_id": call.execution_id,
            },
        }
        try:
            answer = self.router.send_event(event)
        except HttpError as exc:
            return chat(self._router_failure(user, name, exc))
        self.book.record_use(community_id, expansion.chain, user)
        unknown = ((answer or {}).get("matched") or {}).get("unknown_command")
        if unknown:
            shown = shorten(unknown, 30)
            return chat(f"@{user}, !{name} runs {shown}, which is not a command here.")
        return {}

    @staticmethod
    def _router_failure(user: str, name: str, exc: HttpError) -> str:
        if exc.status is not None and 400 <= exc.status < 500:
            error = (exc.body or {}).get("error") if isinstance(exc.body, dict) else None
            reason = (error or {}).get("message") or f"HTTP {exc.status}"
            return f"@{user}, the router refused what !{name} expands to: {shorten(reason, 120)}"
        log.warning("router unreachable while running alias !%s: %s", name, exc)
        return f"@{user}, I can't reach the command router right now; try !{name} again soon."
