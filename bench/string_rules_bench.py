"""Benchmark the string-rule matcher against the naive per-rule loop.

Builds 100, 1,000 and 10,000 rules for one entity (word / contains / exact literals,
1 % regex, a fifth case-sensitive), generates 20,000 chat messages (most match nothing,
some hit a rule, as written, upper-cased or inside a longer word) and prints one JSON
object with messages per second for :class:`StringRuleMatcher` and :func:`naive_match`.
The naive loop runs on a sample of the messages at the larger rule counts so the whole
run stays well under a minute; on that sample both answers are checked to be equal.

Rates are messages per CPU-second of this (single-threaded) process (``time.process_time``),
so other load on a shared machine does not skew them; the matchers are also timed
round-robin, best of ``--rounds`` passes.

Run: ``.venv/bin/python bench/string_rules_bench.py [--messages N] [--seed S] [--rounds R]``
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import sys
import time
from pathlib import Path

_PATH = Path(__file__).resolve().parents[1] / "router_module" / "services" / "string_rules.py"

RULE_COUNTS = (100, 1_000, 10_000)
NAIVE_SAMPLE = {100: 20_000, 1_000: 2_000, 10_000: 200}

COMMON = (
    "the be to of and a in that have i it for not on with he as you do at this but his by "
    "from they we say her she or an will my one all would there their what so up out if "
    "about who get which go me when make can like time no just him know take people into "
    "year your good some could them see other than then now look only come its over think "
    "also back after use two how our work first well way even new want because any these "
    "give day most us stream chat lol lmao gg wp pog poggers kappa omg nice play game boss "
    "level raid sub hype clip song music sound mic cam lag fps win lose run again today "
    "tonight tomorrow yesterday hello hi hey bye thanks thank love hate great awesome cool "
    "fun funny wow yes yeah nope maybe really very much more less big small fast slow best "
    "worst map team enemy friend squad mod emote follow discord twitch youtube link check "
    "out please help question answer why where when who what which build item loot drop "
    "quest boss fight died dead again clutch insane crazy wild chill vibes coffee tea pizza "
    "food sleep late early morning night weekend monday friday party everyone somebody"
).split()

SYLLABLES = (
    "ba be bi bo bu da de di do du fa fe fi fo ga ge go gu ka ke ki ko ku la le li lo lu "
    "ma me mi mo mu na ne ni no nu pa pe pi po pu ra re ri ro ru sa se si so su ta te ti "
    "to tu va ve vi vo za ze zi zo zu bla bre cri dro fla gri klo pla pro sta stra tri "
    "zor rax nix vex gul mog tar kin zed"
).split()

EMOJI = ("🔥", "😂", "❤️", "👀", "💀", "✨", "🎉", "😎")


def _load_engine():
    name = "router_string_rules_bench"
    spec = importlib.util.spec_from_file_location(name, _PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _pseudo_words(rng: random.Random, count: int) -> list[str]:
    """Distinct word-like strings (4-12 letters) that are not common chat words."""
    common = set(COMMON)
    words: dict[str, None] = {}
    while len(words) < count:
        word = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4)))
        if word not in common:
            words[word] = None
    return list(words)


def _regex_for(rng: random.Random, words: list[str]) -> str:
    a, b = rng.choice(words), rng.choice(words)
    return rng.choice(
        (
            rf"\b{a}\d{{2,}}\b",
            rf"{a}\s*(?:\.|dot)\s*(?:com|net|gg|tv)\b",
            rf"(?:https?://)?(?:www\.)?{a}\.[a-z]{{2,3}}/\S*",
            rf"\b{a}\b.{{0,20}}\b{b}\b",
            rf"^{a}[!?.]*$",
            rf"{a[:3]}[a-z]*{b[-3:]}",
        )
    )


def build_rules(engine, rng: random.Random, count: int, words: list[str]) -> list:
    """``count`` rules: 40 % word, 35 % contains, 24 % exact, 1 % regex."""
    rules = []
    regex_every = 100
    for i in range(count):
        word = words[i % len(words)]
        if i % regex_every == regex_every - 1:
            match_type, string = "regex", _regex_for(rng, words)
        else:
            match_type = rng.choices(("word", "contains", "exact"), weights=(40, 35, 24))[0]
            string = word
            if match_type == "contains" and rng.random() < 0.3:
                string = f"{word} {rng.choice(words)}"
            if rng.random() < 0.2:
                string = string.capitalize()
        rules.append(
            engine.Rule(
                id=i + 1,
                string=string,
                match_type=match_type,
                case_sensitive=rng.random() < 0.2,
                priority=rng.randint(1, 1000),
                action=rng.choice(("warn", "block", "command", "webhook")),
                command_to_execute="!so",
                warning_message="please keep it friendly",
            )
        )
    return rules


def build_messages(rng: random.Random, count: int, words: list[str]) -> list[str]:
    """Chat lines: mostly common words; about 6 % carry a rule-like word somewhere."""
    messages = []
    for _ in range(count):
        tokens = [rng.choice(COMMON) for _ in range(rng.randint(2, 18))]
        roll = rng.random()
        if roll < 0.04:
            # Half from the first 100 rule words, so every rule count sees some matches.
            word = rng.choice(words[:100] if rng.random() < 0.5 else words)
            if rng.random() < 0.3:
                word = word.upper()
            if rng.random() < 0.3:
                word = rng.choice(COMMON) + word
            tokens.insert(rng.randrange(len(tokens) + 1), word)
        elif roll < 0.05:
            tokens = [rng.choice(words[:100] if rng.random() < 0.5 else words)]
        elif roll < 0.06:
            tokens.append(f"{rng.choice(words)}{rng.randint(10, 999)}")
        if rng.random() < 0.15:
            tokens.append(rng.choice(EMOJI))
        text = " ".join(tokens)
        if rng.random() < 0.3:
            text = text.capitalize() + rng.choice(("!", "?", "...", " :)"))
        messages.append(text)
    return messages


def _timed(function, messages: list[str]) -> tuple[float, list]:
    """Messages per CPU-second of one pass over ``messages``, and the answers."""
    started = time.process_time()
    answers = [function(m) for m in messages]
    return len(messages) / max(time.process_time() - started, 1e-9), answers


def run(message_count: int, seed: int, rounds: int = 5) -> dict:
    """Measure every rule count; return the report.

    The matchers are timed round-robin (one pass per rule count per round, best round
    kept) so a burst of load on a shared machine hits every rule count alike.
    """
    engine = _load_engine()
    rng = random.Random(seed)
    words = _pseudo_words(rng, max(RULE_COUNTS))
    messages = build_messages(rng, message_count, words)
    rule_sets, matchers, build_ms = {}, {}, {}
    for count in RULE_COUNTS:
        rules = build_rules(engine, random.Random(seed + count), count, words[:count])
        # Hand the naive loop its rules already in (priority, id) order: its sort is then
        # a linear pass, and the comparison measures matching, not sorting.
        rules.sort(key=lambda r: r.sort_key)
        started = time.perf_counter()
        matchers[count] = engine.StringRuleMatcher(rules)
        build_ms[count] = (time.perf_counter() - started) * 1000
        rule_sets[count] = rules

    best = dict.fromkeys(RULE_COUNTS, 0.0)
    answers: dict = {}
    for _ in range(rounds):
        for count in RULE_COUNTS:
            rate, answers[count] = _timed(matchers[count].match, messages)
            best[count] = max(best[count], rate)

    report: dict = {"rules": {}, "timer": "process_time"}
    for count in RULE_COUNTS:
        rules = rule_sets[count]
        sample = messages[: min(NAIVE_SAMPLE[count], len(messages))]
        naive_rate, naive_answers = _timed(lambda m, r=rules: engine.naive_match(r, m), sample)
        if answers[count][: len(sample)] != naive_answers:
            raise SystemExit(f"matcher and naive loop disagree at {count} rules")
        report["rules"][str(count)] = {
            "matcher_msgs_per_s": round(best[count]),
            "naive_msgs_per_s": round(naive_rate),
            "speedup": round(best[count] / naive_rate, 1),
            "build_ms": round(build_ms[count], 1),
            "matched_fraction": round(
                sum(a is not None for a in answers[count]) / len(messages), 4
            ),
            "messages": len(messages),
            "naive_sampled_messages": len(sample),
        }
    small = report["rules"][str(RULE_COUNTS[0])]["matcher_msgs_per_s"]
    large = report["rules"][str(RULE_COUNTS[-1])]["matcher_msgs_per_s"]
    report["ratio_10000_vs_100"] = round(large / small, 3)
    return report


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, run the benchmark, print the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    print(json.dumps(run(args.messages, args.seed, args.rounds)))


if __name__ == "__main__":
    main()
