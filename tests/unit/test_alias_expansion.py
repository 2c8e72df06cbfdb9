"""Alias templates: names, parsing, variable expansion, shell quoting, chains and loops.

The module is loaded from its file so that importing it does not start the alias app
(``alias_interaction_module/__init__.py`` registers actions and reads the settings).
"""

from __future__ import annotations

import importlib.util
import random
import shlex
import sys
from pathlib import Path

import pytest

_PATH = (
    Path(__file__).resolve().parents[2] / "alias_interaction_module" / "services" / "expansion.py"
)


def _load():
    name = "alias_expansion_under_test"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, _PATH)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


ex = _load()
AliasError = ex.AliasError


def run(template: str, *typed: str, user: str = "mia") -> list[str]:
    """Expand as if ``typed`` were typed, then parse the result like the router."""
    args_text = shlex.join(typed)
    line = ex.expand(template, user=user, args=list(typed), args_text=args_text)
    return shlex.split(line)


# -- variables --------------------------------------------------------------------------------
def test_variables_are_substituted():
    assert run("!so {arg1}", "bob") == ["!so", "bob"]
    assert run("!say {user} greets {arg2} and {arg1}", "a", "b") == [
        "!say", "mia", "greets", "b", "and", "a",
    ]  # fmt: skip
    assert run("!x {arg10}", *"abcdefghij") == ["!x", "j"]


def test_missing_arguments_are_empty_never_an_error():
    assert run("!so {arg1}") == ["!so"]
    assert run("!say x{arg3}y {arg3}", "a") == ["!say", "xy"]
    assert run('!say "{arg2}"', "a") == ["!say", ""]
    assert run("!say {args} {all_args}") == ["!say"]


def test_an_argument_stays_one_argument_whatever_it_holds():
    nasty = ["two words", "it's", 'say "hi"', "$HOME", "`rm -rf`", "a\\b", "日本語 ✓", ";|&", ""]
    for value in nasty:
        assert run("!echo {arg1}", value)[1:] == ([value] if value else [])
        assert run('!echo "{arg1}"', value) == ["!echo", value]
        assert run("!echo '{arg1}'", value) == ["!echo", value]
        assert run("!echo pre-{arg1}-post", value) == ["!echo", f"pre-{value}-post"]


def test_all_args_keeps_every_argument_like_quoted_at():
    typed = ["two words", "it's", "", "c"]
    assert run("!echo {all_args}", *typed) == ["!echo", *typed]
    assert run('!echo "{all_args}"', *typed) == ["!echo", " ".join(typed)]


def test_args_is_the_text_as_typed_like_star():
    line = ex.expand("!echo {args}", user="u", args=["a b", "c"], args_text='"a b"   c')
    assert line == '!echo "a b"   c'
    assert shlex.split(line) == ["!echo", "a b", "c"]
    quoted = ex.expand('!echo "{args}"', user="u", args=["a b", "c"], args_text='"a b" c')
    assert shlex.split(quoted) == ["!echo", '"a b" c']


def test_user_names_with_spaces_or_quotes_stay_one_argument():
    assert run("!hug {user}", user="Sam O'Neil") == ["!hug", "Sam O'Neil"]


def test_escaped_braces_and_unknown_variables_stay_literal():
    assert ex.expand("!say \\{user} {nope} {arg0}", user="u", args=[], args_text="") == (
        "!say \\{user} {nope} {arg0}"
    )
    assert run("!say \\{user}") == ["!say", "{user}"]


def test_expansion_round_trips_random_arguments():
    rng = random.Random(7)
    alphabet = "ab '\"\\$`;|&*?{}()日✓\t"
    for _ in range(300):
        typed = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8))) for _ in range(3)]
        assert run("!t {all_args}", *typed) == ["!t", *typed]
        expected = [a for a in typed[:2] if a]
        assert run("!t {arg1} {arg2}", *typed) == ["!t", *expected]
        assert run("!t \"{arg3}\" '{arg1}'", *typed) == ["!t", typed[2], typed[0]]


# -- names, arguments, templates -------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "name"),
    [("!hi", "hi"), ("Hi", "hi"), ("  !so_2-x ", "so_2-x"), ("!" + "a" * 64, "a" * 64)],
)
def test_valid_names(raw, name):
    assert ex.normalize_name(raw) == name


@pytest.mark.parametrize("raw", ["", "!", "!héllo", "!日本", "!a b", "!!hi", "#hi", "!" + "a" * 65])
def test_invalid_names_are_explained(raw):
    with pytest.raises(AliasError, match="1-64 characters of a-z, 0-9, _ and -"):
        ex.normalize_name(raw)


def test_invalid_name_message_stays_short():
    with pytest.raises(AliasError) as caught:
        ex.normalize_name("!" + "x" * 5000)
    assert len(str(caught.value)) < 150


def test_unterminated_quotes_and_backslashes_are_explained():
    with pytest.raises(AliasError, match="a quote is not closed"):
        ex.split_arguments('"bob')
    with pytest.raises(AliasError, match="a quote is not closed"):
        ex.split_arguments("it's")
    with pytest.raises(AliasError, match="lone backslash"):
        ex.split_arguments("bob\\")
    assert ex.split_arguments(" 'a b'  c ") == ["a b", "c"]


def test_templates_name_the_command_they_run():
    target = ex.parse_template("  !SO {arg1} extra ")
    assert (target.prefix, target.name, target.label) == ("!", "so", "!so")
    assert ex.parse_template("#weather {args}").label == "#weather"


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("", "needs a command"),
        ("   ", "needs a command"),
        ("hello {arg1}", "is not a command"),
        ("! so", "is not a command"),
        ('"!so" bob', "is not a command"),
        ("!{arg1} bob", "variables are not allowed"),
        ("!héllo", "is not a command name"),
        ('!so "{arg1}', "a quote is not closed"),
        ("!so " + "x" * 600, "holds at most 500"),
    ],
)
def test_bad_templates_are_explained(template, message):
    with pytest.raises(AliasError, match=message):
        ex.parse_template(template)


def test_command_lines_split_like_the_router():
    line = ex.parse_command_line('!So "a b" c')
    assert (line.prefix, line.name, line.args, line.args_text) == (
        "!",
        "so",
        ("a b", "c"),
        '"a b" c',
    )


# -- chains and loops ---------------------------------------------------------------------------
def test_chains_expand_each_level_with_its_own_arguments():
    aliases = {"hi": "!greet {arg1} {user}", "greet": "!so {arg2}"}
    found = ex.resolve_chain(aliases, "hi", user="mia", args=["bob"], args_text="bob")
    assert found.line == "!so mia"
    assert found.chain == ("hi", "greet")


def test_chains_stop_at_non_alias_commands_and_hash_prefixes():
    aliases = {"w": "#w {args}", "so": "!so {arg1}"}
    found = ex.resolve_chain(aliases, "w", user="u", args=["paris"], args_text="paris")
    assert (found.line, found.chain) == ("#w paris", ("w",))


def test_chains_are_at_most_five_deep_when_run():
    aliases = {f"a{i}": f"!a{i + 1}" for i in range(1, 6)} | {"a6": "!so x"}
    with pytest.raises(AliasError, match="more than 5 aliases"):
        ex.resolve_chain(aliases, "a1", user="u", args=[], args_text="")
    assert ex.resolve_chain(aliases, "a2", user="u", args=[], args_text="").chain == (
        "a2", "a3", "a4", "a5", "a6",
    )  # fmt: skip


def test_a_loop_met_at_run_time_is_refused():
    with pytest.raises(AliasError, match=r"loops \(!a → !b → !a\)"):
        ex.resolve_chain({"a": "!b", "b": "!a"}, "a", user="u", args=[], args_text="")


def test_loops_are_refused_at_creation():
    existing = {"a": "!so {arg1}", "b": "!a {arg1}"}
    with pytest.raises(AliasError, match=r"loop \(!a → !b → !a\)"):
        ex.check_chain(existing, "a", "!b {arg1}")
    with pytest.raises(AliasError, match=r"loop \(!c → !c\)"):
        ex.check_chain(existing, "c", "!c")
    assert ex.check_chain(existing, "c", "!b {arg1}") == ("c", "b", "a")
    assert ex.check_chain(existing, "c", "#b") == ("c",)


def test_chains_longer_than_five_are_refused_at_creation():
    existing = {"a1": "!so x"} | {f"a{i}": f"!a{i - 1}" for i in range(2, 5)}
    assert len(ex.check_chain(existing, "a5", "!a4")) == 5
    with pytest.raises(AliasError, match="at most 5 aliases"):
        ex.check_chain({**existing, "a5": "!a4"}, "a6", "!a5")
