"""Plans read off the question's grammar, for the shapes that do not need a model to split.

A 0.5B model asked to decompose often copies the question as its first step. The commonest
multi-hop shapes in English say plainly what must be found first: an entity described instead of
named. ``rule_plan`` takes the innermost description, asks for it, puts ``#n`` in its place and
repeats until the question names everything:

    "Who was the first president of the association which published Journal X?"
    1. Which association published Journal X?      2. Who was the first president of #1?

Shapes: "X's <role>" and "the <role> of X" (author, performer, composer, …, birthplace);
"the <noun> which/that/where/in which <clause>" ending the question; "the <noun> X is from / is
part of / is in". Where none of these fits, a bridge whose question sits inside the description
(HotpotQA's commonest shape) is split in two:

    "Drew Fuller starred in a series that originally broadcast on what station?"
    1. Drew Fuller starred in which series?        2. #1 originally broadcast on what station?

A question none of them fits has no rule plan (the model plans it).
"""

from __future__ import annotations

import re

from agents import composing
from agents.answer_text import tokens

#: People and places a description names by their relation to something else.
ROLES = (
    "author",
    "writer",
    "performer",
    "performers",
    "singer",
    "director",
    "producer",
    "composer",
    "creator",
    "founder",
    "publisher",
    "developer",
    "manufacturer",
    "owner",
    "spouse",
    "wife",
    "husband",
    "father",
    "mother",
    "son",
    "daughter",
    "birthplace",
    "hometown",
    "headquarters",
)
_PLACE_ROLES = {"birthplace": "Where was {x} born?", "hometown": "What is the hometown of {x}?"}
_HEADQUARTERS = "Where are the headquarters of {x}?"

_SMALL = r"(?:of|the|and|a|an|with|in|on|for|to|no|de|du|von|van|la|le|&)"
_WORD = r"(?:[A-Z0-9#][\w.'&-]*|\([^)]*\))"
#: A name: capitalised words, with the small words and commas names carry ("Alexander and the
#: Terrible, Horrible, No Good, Very Bad Day"), or a reference to an earlier step (#1).
_NAME = rf"{_WORD}(?:,?\s+(?:{_SMALL}\s+)*{_WORD})*"
_ROLE = "|".join(sorted(ROLES, key=len, reverse=True))
_AUX = r"(?:is|was|are|were)"

_POSSESSIVE = re.compile(rf"(?P<x>{_NAME})'s?\s+(?P<role>{_ROLE})\b")
_ROLE_OF = re.compile(rf"the\s+(?P<role>{_ROLE})\s+of\s+(?P<x>{_NAME})")
_RELATIVE = re.compile(
    r"the\s+(?P<noun>[a-z]+)\s+(?P<rel>in\s+which|which|that|where|whom|who)\s+"
    # the clause runs to the end; a comma only inside a name ("Leland, North Carolina")
    r"(?P<clause>(?:[^?,]|,\s*(?=[A-Z]))+?)\s*\??\s*$"
)
_BELONGS = re.compile(
    rf"the\s+(?P<noun>[a-z]+)\s+(?P<x>{_NAME})\s+(?P<aux>{_AUX})\s+(?P<prep>from|(?:a\s+)?part\s+of|located\s+in|based\s+in|in)\b"
)

# A bridge whose question sits inside the description ("Drew Fuller starred in a series that
# originally broadcast on what station?"): the main clause finds the entity, the clause asks about it.
_BRIDGE_MARKER = (
    r"(?P<rel>who|that|which|whose|where)|"
    r"(?P<part>(?:[a-z]+ed|known|born|built|made|written|run|held|set|shot|sold|won|grown|seen|led)"
    r"\s+(?:in|by|after|for|on|at|as|from|with|to)|from)"
)
_BRIDGE = re.compile(
    r"(?P<det>a|an|the)\s+(?P<np>[\w'-]+(?:\s+[\w'-]+){0,5}?)\s+"
    # the clause runs to the end; a comma only inside a name or before "and"
    rf"(?:{_BRIDGE_MARKER})\s+(?P<rest>(?:[^?,]|,\s*(?=[A-Z]|and\b))+?)\s*\??\s*$"
)
_DET = re.compile(r"\b(?:a|an|the)\b")
_ASKS = re.compile(r"\b(?:what|which|whom|who|when|where|how\s+(?:many|much|long|old))\b", re.IGNORECASE)
_NOT_IN_NP = {"a", "an", "the", "is", "was", "are", "were", "who", "that", "which", "whose", "where", "what"}
_COPULA = {"is", "was", "are", "were", "be", "been", "being", "becomes", "became"}

#: Steps a rule plan may hold, like a model plan.
MAX_STEPS = 4
#: Longest question the rules read (the public sets' longest is 300 characters).
MAX_CHARS = 400


def _role_question(role: str, x: str) -> str:
    role = role.removesuffix("s") if role == "performers" else role
    if role in _PLACE_ROLES:
        return _PLACE_ROLES[role].format(x=x)
    if role == "headquarters":
        return _HEADQUARTERS.format(x=x)
    return f"Who is the {role} of {x}?"


def _relative_question(noun: str, rel: str, clause: str) -> str:
    clause = clause.strip().rstrip(",")
    if rel in ("where", "in which"):
        # "the country where the Bubye River is found" -> "In which country is the Bubye River found?"
        aux = re.search(rf"\s{_AUX}\s", f" {clause} ")
        if aux:
            head, tail = clause[: aux.start()].strip(), clause[aux.end() - 1 :].strip()
            return f"In which {noun} {aux.group(0).strip()} {head} {tail}?".replace("  ", " ")
        return f"In which {noun} {clause}?"
    if rel in ("who", "whom"):
        return f"Who {clause}?"
    return f"Which {noun} {clause}?"


def _inside_name(question: str, start: int) -> bool:
    """Whether ``start`` is a later word of a capitalised name ("Love" in "Hello Love's")."""
    before = question[:start].rstrip().split(" ")[-1:] or [""]
    return start > 0 and (question[start - 1] != " " or before[0][:1].isupper())


def _innermost(question: str) -> tuple[int, int, str] | None:
    """(start, end, sub-question) of the rightmost description in the question, if any."""
    best: tuple[int, int, str] | None = None
    for start in range(len(question)):
        if start and question[start - 1].isalnum():
            continue
        found: tuple[int, int, str] | None = None
        m = _POSSESSIVE.match(question, start)
        if m and not _inside_name(question, start):
            found = (m.start(), m.end(), _role_question(m["role"], m["x"]))
        for pattern in (_ROLE_OF, _RELATIVE, _BELONGS):
            if found:
                break
            m = pattern.match(question, start)
            if not m:
                continue
            if pattern is _ROLE_OF:
                found = (m.start(), m.end(), _role_question(m["role"], m["x"]))
            elif pattern is _RELATIVE:
                found = (m.start(), m.end(), _relative_question(m["noun"], m["rel"], m["clause"]))
            else:
                prep = " ".join(m["prep"].split())
                found = (m.start(), m.end(), f"Which {m['noun']} {m['aux']} {m['x']} {prep}?")
        if found:
            best = found
    return best


def _has_content(text: str) -> bool:
    """Something left to ask beyond the reference: "Who is #1?" has nothing, "Who founded #1?" has."""
    empty = {"who", "what", "which", "where", "when", "is", "was", "are", "were", "it", "that", "this", "of"}
    empty |= {"name", "called", "first", "last", "full"}  # "What is the last name of #1?" asks #1 again
    return any(t not in empty and not t.isdigit() for t in tokens(re.sub(r"#\d+", " ", text)))


def _bridge(question: str) -> list[str] | None:
    """Two steps for "<main clause> a <noun> that/who/based in … <wh-word> …?": first "<main clause>
    which <noun>?", then the clause asked of #1. Not when the main clause only says what its subject
    is ("X is a consultant who …": the description is of X, named already) or the question opens
    with its own wh-word or as a yes/no question."""
    if composing.shape(question).kind != "open" or _ASKS.search(" ".join(question.split()[:3])):
        return None  # a yes/no question or a choice, or one that opens with its own wh-word
    for det in _DET.finditer(question):
        m = _BRIDGE.match(question, det.start())
        if m is None:
            continue
        main, np, rest = question[: m.start()].strip().rstrip(","), m["np"], m["rest"].strip()
        np_words = np.lower().split()
        if (
            len(main.split()) < 2
            or main.split()[-1].lower() in _COPULA
            or any(w in _NOT_IN_NP for w in np_words)
            or not _ASKS.search(rest)
        ):
            continue
        if m["rel"] == "whose":
            second = f"#1's {rest}?"
        elif m["rel"] == "where":
            second = f"In #1, {rest}?"
        elif m["rel"]:
            second = f"#1 {rest}?"
        else:
            part = " ".join(m["part"].split())
            aux = "was" if part.endswith(" by") else "is"
            second = f"#1 {aux} {part} {rest}?"
        if _has_content(second):
            return [f"{main} which {np}?", second]
    return None


def rule_plan(question: str) -> list[str] | None:
    """The steps (later ones referring to earlier answers as #n), or None when no rule fits."""
    rest = " ".join(question.split())
    if len(rest) > MAX_CHARS:
        return None  # a passage, not a question's sentence: the model plans it (and rules stay fast)
    steps: list[str] = []
    while len(steps) < MAX_STEPS - 1:
        found = _innermost(rest)
        if found is None:
            break
        start, end, asked = found
        remainder = f"{rest[:start]}#{len(steps) + 1}{rest[end:]}"
        if not _has_content(remainder) or asked.rstrip("?").strip() == rest.rstrip("?").strip():
            break
        steps.append(asked)
        rest = remainder
    if not steps:
        return _bridge(" ".join(question.split()))
    last = rest.strip()
    return [*steps, last if last.endswith("?") else last + "?"]
