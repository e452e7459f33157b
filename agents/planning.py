"""Question analysis and decomposition for agentic search QA.

``analyse`` decides without the model whether a question needs more than one hop: a 0.5B model
asked "is this multi-hop?" answers at random, while the shapes of multi-hop questions are plain
to see (a relative clause naming an entity the question never names, "both", a comparison).
``decompose`` asks the model for a plan as JSON and survives what a small model returns: prose
around the JSON, single quotes, trailing commas, a bare list of strings, a plan that refers to a
step that does not exist. A plan that cannot be repaired becomes the one-step plan (the question
itself), and the trace says so.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from agents import composing
from agents.generation.base import ChatMessage

#: Where a plan's JSON list ends (generation stops there; the parser gets it back).
PLAN_END = "}]"

#: Steps a plan may hold; a longer plan is cut (and the trace says so).
MAX_STEPS = 4

_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_REF = re.compile(r"#(\d+)")

# Shapes of questions that need an intermediate answer. English: a relative clause or a possessive
# chain that describes an entity instead of naming it; Chinese: the same with 的 + a relative verb.
_ROLES = (
    r"author|writer|performer|singer|director|producer|composer|creator|founder|publisher|developer|"
    r"manufacturer|owner|spouse|wife|husband|father|mother|son|daughter|birthplace|hometown|headquarters"
)
_MULTI_HOP_EN = [
    re.compile(p, re.IGNORECASE)
    for p in (
        # an entity described by a relative clause instead of named ("the association which published X")
        r"\b(?:the|a|an)\s+\w+(?:\s+\w+){0,3}\s+(?:that|which|whose|who|whom|where)\s+\w+",
        # "the author of X", "X's birthplace"
        rf"\b(?:the|a|an)\s+(?:\w+\s+)?(?:{_ROLES})\s+of\s+\w",
        rf"'s\s+(?:\w+\s+)?(?:{_ROLES})\b",
        # "the country X is from", "the company X is part of"
        r"\bthe\s+(?:country|state|city|company|team|band|university|county|league|group)\s+"
        r"(?:[\w'.-]+\s+){1,5}(?:is|was|are|were)\s+(?:from|part of|in|based|located)\b",
        # comparisons and conjunctions of two entities
        r"\b(?:both|either|neither)\b.+\band\b",
        r"\band\b.+\b(?:both|each)\b",
        r",\s*[A-Z][\w.'-]*(?:\s+[A-Z][\w.'-]*)*\s+or\s+[A-Z]",
        r"\bwhich of the two\b",
        r"\b(?:older|younger|earlier|later|larger|bigger|smaller|longer|shorter|taller)\b.*\bor\b",
    )
]
_MULTI_HOP_ZH = [re.compile(p) for p in (r"的.{1,12}的", r"(?:哪个|哪位|谁).{0,20}(?:和|与).{0,20}(?:更|哪)")]


@dataclass(frozen=True)
class Analysis:
    multi_hop: bool
    lang: str  # "en" | "zh"
    reason: str


def analyse(question: str) -> Analysis:
    """Single- or multi-hop, and the question's language."""
    lang = "zh" if len(_CJK.findall(question)) * 3 >= len(question.replace(" ", "")) else "en"
    patterns = _MULTI_HOP_ZH if lang == "zh" else _MULTI_HOP_EN
    for pattern in patterns:
        match = pattern.search(question)
        if match:
            return Analysis(True, lang, f"multi-hop shape: {match.group(0)[:60]!r}")
    return Analysis(False, lang, "no multi-hop shape")


@dataclass(frozen=True)
class Step:
    id: int
    question: str
    depends: tuple[int, ...] = ()


@dataclass
class Plan:
    steps: list[Step]
    repairs: list[str] = field(default_factory=list)  # what was fixed, for the trace
    fallback: bool = False  # the model's plan was unusable: one step, the question itself

    def as_trace(self) -> list[dict[str, Any]]:
        return [{"id": s.id, "question": s.question, "depends": list(s.depends)} for s in self.steps]


DECOMPOSE_INSTRUCTION = (
    "Split the question into the simple questions that must be answered one after another. Write a "
    "later question's missing part as #1, #2 (the answer of step 1, 2). Reply with JSON only: a list "
    'like [{"id": 1, "question": "..."}, {"id": 2, "question": "... #1 ..."}].'
)

#: Worked examples (invented, not from any evaluation set): a chain, a comparison, a "both" question.
_EXAMPLES = (
    (
        "Who founded the company that makes the PlayStation?",
        '[{"id": 1, "question": "Which company makes the PlayStation?"}, '
        '{"id": 2, "question": "Who founded #1?"}]',
    ),
    (
        "Which river is longer, the Danube or the Rhine?",
        '[{"id": 1, "question": "How long is the Danube?"}, {"id": 2, "question": "How long is the Rhine?"}]',
    ),
    (
        "Are Ridley Scott and Ang Lee both film directors?",
        '[{"id": 1, "question": "What is the occupation of Ridley Scott?"}, '
        '{"id": 2, "question": "What is the occupation of Ang Lee?"}]',
    ),
)


def decompose_messages(question: str, *, avoid: Sequence[str] = ()) -> list[ChatMessage]:
    """The decomposition prompt: worked examples, then the question. ``avoid`` lists sub-questions
    that found nothing on an earlier attempt (a re-plan after backtracking)."""
    note = ""
    if avoid:
        note = "\nThese questions found nothing before; ask differently: " + "; ".join(avoid)
    messages: list[ChatMessage] = [{"role": "system", "content": DECOMPOSE_INSTRUCTION}]
    for asked, plan in _EXAMPLES:
        messages += [{"role": "user", "content": asked}, {"role": "assistant", "content": plan}]
    messages.append({"role": "user", "content": question + note})
    return messages


def parse_plan(text: str, question: str) -> Plan:
    """The model's reply as a plan, repaired where possible, else the one-step plan. Generation
    stops at PLAN_END and leaves it out, so it is put back when missing."""
    repairs: list[str] = []
    if "[" in text and not text.rstrip().endswith("]"):
        text = text.rstrip() + PLAN_END
    raw = _extract_json(text, repairs)
    if raw is None:
        return Plan([Step(1, question)], ["no JSON list in the reply; answering the question whole"], True)
    steps: list[Step] = []
    for item in raw:
        if isinstance(item, str):
            q = item
        elif isinstance(item, dict) and isinstance(item.get("question"), str):
            q = item["question"]
        else:
            repairs.append(f"dropped a step that is not a question: {str(item)[:60]!r}")
            continue
        q = " ".join(q.split())
        if not q or any(q.lower() == s.question.lower() for s in steps):
            continue
        steps.append(Step(len(steps) + 1, q))
    if len(steps) > MAX_STEPS:
        repairs.append(f"plan of {len(steps)} steps cut to {MAX_STEPS}")
        steps = steps[:MAX_STEPS]
    if not steps:
        return Plan([Step(1, question)], [*repairs, "empty plan; answering the question whole"], True)
    fixed = [_fix_references(step, repairs) for step in steps]
    return Plan(fixed, repairs)


# An open question about two things ("What do A and B have in common?") may be answered from
# steps that do not build on each other; any other open question needs a chain.
_TWO_THINGS = re.compile(
    r"\b(?:both|either|neither|in common|connected|related|the same|differ|difference)\b", re.IGNORECASE
)

#: Why a model's plan was set aside for the single-shot answer (in the trace's repairs).
SET_ASIDE_NOTE = "the plan's steps do not build on each other: the question is answered whole, single-shot"


def only_restates(plan: Plan, question: str) -> bool:
    """A plan none of whose steps uses an earlier answer, for an open question about one thing:
    it restates the question (a 0.5B model's usual "plan" for a long bridge sentence). Comparisons,
    yes/no questions and questions about two things may be answered from independent steps."""
    return (
        not any(step.depends for step in plan.steps)
        and composing.shape(question).kind == "open"
        and not _TWO_THINGS.search(question)
    )


def set_aside(plan: Plan, question: str) -> Plan:
    """The one-step plan (the question itself), saying which plan was set aside and why."""
    listed = "set aside: " + "; ".join(s.question for s in plan.steps)
    return Plan([Step(1, question)], [*plan.repairs, SET_ASIDE_NOTE, listed], True)


def plan_of(questions: Sequence[str], note: str) -> Plan:
    """A plan from ready sub-questions (a rule plan), references checked like a model's."""
    repairs = [note]
    steps = [Step(i, q) for i, q in enumerate(questions[:MAX_STEPS], 1)]
    return Plan([_fix_references(step, repairs) for step in steps], repairs)


def _fix_references(step: Step, repairs: list[str]) -> Step:
    """A reference to the step itself or to a later one would loop: it points at the previous
    step's answer instead (or is dropped from step 1)."""
    refs = sorted({int(n) for n in _REF.findall(step.question)})
    bad = {n for n in refs if not 1 <= n < step.id}
    if not bad:
        return Step(step.id, step.question, tuple(refs))
    previous = step.id - 1
    repairs.append(f"step {step.id} referred to #{min(bad)}; now refers to #{previous or 'nothing'}")

    def point_back(match: re.Match[str]) -> str:
        if int(match.group(1)) not in bad:
            return match.group(0)
        return f"#{previous}" if previous else ""

    text = " ".join(_REF.sub(point_back, step.question).split())
    return Step(step.id, text, tuple(sorted({int(n) for n in _REF.findall(text)})))


def _extract_json(text: str, repairs: list[str]) -> list[Any] | None:
    start, end = text.find("["), text.rfind("]")
    if start < 0 or end <= start:
        return None
    if start > 0 or end < len(text.rstrip()) - 1:
        repairs.append("text around the JSON ignored")
    chunk = text[start : end + 1]
    for attempt in (chunk, _loosen(chunk)):
        try:
            value = json.loads(attempt)
        except json.JSONDecodeError:
            continue
        if attempt is not chunk:
            repairs.append("malformed JSON repaired (quotes, trailing commas)")
        return value if isinstance(value, list) else None
    return None


def _loosen(chunk: str) -> str:
    fixed = re.sub(r",\s*([\]}])", r"\1", chunk)  # trailing commas
    fixed = re.sub(r"(?<=[{,\s])'([^']*)'\s*:", r'"\1":', fixed)  # 'key':
    fixed = re.sub(r":\s*'([^']*)'", r': "\1"', fixed)  # : 'value'
    fixed = re.sub(r"(?<=[\[,\s])'([^']*)'(?=\s*[,\]])", r'"\1"', fixed)  # ['a', 'b']
    return fixed


def substitute(question: str, answers: dict[int, str]) -> str:
    """``#n`` replaced by step n's answer (left as is when step n has none)."""
    return _REF.sub(lambda m: answers.get(int(m.group(1)), m.group(0)), question)
