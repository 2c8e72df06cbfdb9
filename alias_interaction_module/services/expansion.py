"""Alias templates: names, parsing, variable expansion with shell quoting, and chains.

An alias is a command template such as ``!so {arg1}``. Running it substitutes the
variables and yields a chat line that the router parses again with ``shlex``:

* ``{user}`` - who typed the alias, as one argument;
* ``{arg1}`` … ``{argN}`` - one typed argument each, as one argument (like ``"$1"``);
  a missing argument is empty and simply disappears, it is never an error;
* ``{args}`` - everything after the alias name exactly as typed (like ``$*``), so the
  user's own quotes apply when the router parses the line again;
* ``{all_args}`` - every argument, each quoted with :func:`shlex.quote` (like ``"$@"``).

A value is quoted for the place it lands in: outside quotes with :func:`shlex.quote`,
inside double quotes with backslash escapes, inside single quotes by closing and
reopening the quote. A value can therefore never change how the rest of the line
parses. ``\\{user}`` keeps the braces literally.

Aliases may point at other aliases of the same community; :func:`resolve_chain`
follows them at most :data:`MAX_DEPTH` deep and :func:`check_chain` refuses a loop
when an alias is created. Nothing here touches the database or the network.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
from collections.abc import Mapping, Sequence

#: how many aliases one typed command may pass through
MAX_DEPTH = 5
#: longest template an alias may hold
MAX_TEMPLATE = 500
#: the router refuses longer chat lines (``waddlebot.contracts.MAX_MESSAGE``)
MAX_LINE = 4000
#: command names the router accepts (``router_module.services.registry``)
NAME_PATTERN = re.compile(r"[a-z0-9_-]{1,64}")
VARIABLE = re.compile(r"\{(user|args|all_args|arg([1-9][0-9]{0,2}))\}")


class AliasError(ValueError):
    """Input that cannot become or run an alias; the message is fit for chat."""


@dataclasses.dataclass(frozen=True, slots=True)
class CommandLine:
    """A chat line split the way the router splits it."""

    prefix: str
    name: str
    args: tuple[str, ...]
    args_text: str

    @property
    def label(self) -> str:
        """``!so`` style name."""
        return f"{self.prefix}{self.name}"


@dataclasses.dataclass(frozen=True, slots=True)
class Expansion:
    """What running an alias produces: the final line and the aliases it went through."""

    line: str
    chain: tuple[str, ...]


def shorten(text: str, limit: int = 40) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis, for chat replies."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def normalize_name(raw: str | None) -> str:
    """``!Hi`` → ``hi``; an AliasError explains what a valid alias name is."""
    name = (raw or "").strip()
    if name.startswith("!"):
        name = name[1:]
    name = name.lower()
    if not NAME_PATTERN.fullmatch(name):
        rule = "alias names are 1-64 characters of a-z, 0-9, _ and -, like !hi."
        if raw and raw.strip():
            raise AliasError(f"{shorten(raw.strip(), 24)!r} is not a valid name: {rule}")
        raise AliasError(rule)
    return name


def split_arguments(text: str) -> list[str]:
    """Split like a shell; an unterminated quote or trailing backslash is an AliasError."""
    try:
        return shlex.split(text or "")
    except ValueError as exc:
        if "quotation" in str(exc):
            raise AliasError(
                "a quote is not closed; put a matching ' or \" at the end "
                '(for example "two words").'
            ) from None
        raise AliasError("the text ends with a lone backslash (\\); remove it.") from None


def parse_command_line(line: str) -> CommandLine:
    """Split ``!so bob`` like the router (prefix, lowercased name, shell-split arguments)."""
    text = (line or "").strip()
    if len(text) < 2 or text[0] not in "!#" or text[1].isspace():
        raise AliasError(
            f"{shorten(text) or 'an empty command'!r} is not a command; "
            'it must start with ! or #, like "!so {arg1}".'
        )
    head, _, rest = text[1:].partition(" ")
    return CommandLine(text[0], head.lower(), tuple(split_arguments(rest)), rest.strip())


def parse_template(template: str | None) -> CommandLine:
    """Validate an alias template and return the command it runs (its first word)."""
    template = (template or "").strip()
    if not template:
        raise AliasError('the alias needs a command, like !alias add !hi "!so {arg1}".')
    if len(template) > MAX_TEMPLATE:
        raise AliasError(
            f"that command is {len(template)} characters long; an alias holds at most "
            f"{MAX_TEMPLATE}."
        )
    target = parse_command_line(template)
    if not NAME_PATTERN.fullmatch(target.name):
        raise AliasError(
            f"{shorten(target.label, 30)!r} is not a command name "
            "(a-z, 0-9, _ and -, variables are not allowed there)."
        )
    return target


def _quote(value: str, state: str | None) -> str:
    if state == '"':
        return value.replace("\\", "\\\\").replace('"', '\\"')
    if state == "'":
        return value.replace("'", "'\"'\"'")
    return shlex.quote(value) if value else ""


def expand(template: str, *, user: str, args: Sequence[str], args_text: str) -> str:
    """Substitute the variables of ``template``, each quoted for where it lands."""
    out: list[str] = []
    state: str | None = None
    position = 0
    while position < len(template):
        char = template[position]
        if char == "\\" and state != "'":
            out.append(template[position : position + 2])
            position += 2
            continue
        if char in "'\"" and (state is None or state == char):
            state = None if state == char else char
        elif char == "{":
            found = VARIABLE.match(template, position)
            if found is not None:
                out.append(_substitute(found, state, user, args, args_text))
                position = found.end()
                continue
        out.append(char)
        position += 1
    return "".join(out)


def _substitute(found: re.Match, state: str | None, user, args, args_text) -> str:
    name = found.group(1)
    if name == "user":
        return _quote(user, state)
    if name == "args":
        return args_text if state is None else _quote(args_text, state)
    if name == "all_args":
        if state is None:
            return " ".join(shlex.quote(a) for a in args)
        return _quote(" ".join(args), state)
    number = int(found.group(2))
    return _quote(args[number - 1] if number <= len(args) else "", state)


def resolve_chain(
    aliases: Mapping[str, str],
    name: str,
    *,
    user: str,
    args: Sequence[str],
    args_text: str,
) -> Expansion:
    """Expand alias ``name`` and any aliases it leads to (at most MAX_DEPTH in total)."""
    chain = [name]
    line = expand(aliases[name], user=user, args=args, args_text=args_text)
    while True:
        target = parse_command_line(line)
        if target.prefix != "!" or target.name not in aliases:
            return Expansion(line, tuple(chain))
        if target.name in chain:
            path = " → ".join("!" + n for n in [*chain, target.name])
            raise AliasError(f"!{name} loops ({path}).")
        if len(chain) >= MAX_DEPTH:
            raise AliasError(f"!{name} passes through more than {MAX_DEPTH} aliases.")
        chain.append(target.name)
        line = expand(aliases[target.name], user=user, args=target.args, args_text=target.args_text)


def check_chain(aliases: Mapping[str, str], name: str, template: str) -> tuple[str, ...]:
    """The alias chain ``name`` would start if it held ``template``; AliasError on a loop."""
    chain = [name]
    target = parse_template(template)
    while target.prefix == "!" and (target.name in aliases or target.name == name):
        if target.name in chain:
            path = " → ".join("!" + n for n in [*chain, target.name])
            raise AliasError(f"that would make a loop ({path}).")
        chain.append(target.name)
        if len(chain) > MAX_DEPTH:
            raise AliasError(f"an alias may lead through at most {MAX_DEPTH} aliases.")
        target = parse_template(aliases[target.name])
    return tuple(chain)
