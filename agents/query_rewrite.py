"""A conversation's latest turn as a standalone question, for retrieval.

"And how much does it cost?" retrieves nothing on its own; the copilot searches with the question a
person would have asked without the history ("How much does the premium plan cost?"). The generator
still sees the whole history — only retrieval uses the rewrite.

Rules first, where they fit, in English and Chinese:

- relative dates (``yesterday``, ``last week``, ``上个月``…) become absolute (ISO dates) from ``today``;
- an explicit change of topic ("by the way", "换个话题") drops the history;
- a pronoun or demonstrative (``it``, ``he``, ``there``, ``that band``, ``它``, ``他``, ``那里``, ``该公司``)
  is replaced by its referent: the previous answer when it is a short name of the right kind (the
  second hop of a multi-hop chain: "Who founded it?" after "Which company makes X?" → "Acme"),
  else the subject of the previous standalone question;
- an ellipsis ("What about the premium plan?", "那第二个呢？") puts its fragment in place of the previous
  question's subject, an ordinal ("the second one", "第二个") first read from the previous answer's list;
- a complete question is left as it is (``method="unchanged"``).

The model is asked only where a pronoun or ellipsis has no referent the rules can find; its output is
validated (one line, the message's script, not a refusal, bounded length) and, if it fails, the
previous question is appended to the message as context instead. Every rewrite says what it replaced
and why (:attr:`Rewrite.reason`, :attr:`Rewrite.replaced`), for the trace.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from agents.generation.base import ChatMessage


@dataclass(frozen=True)
class Turn:
    """One earlier turn: a user message (with its stored rewrite) or an answer (with its sources)."""

    role: Literal["user", "assistant"]
    content: str
    standalone: str | None = None
    sources: tuple[str, ...] = ()  # titles of the sources an answer cited


@dataclass(frozen=True)
class Rewrite:
    standalone: str
    method: Literal["unchanged", "rules", "model"]
    reason: str
    replaced: tuple[tuple[str, str], ...] = ()  # (what was in the message, what stands there now)
    topic_change: bool = False
    llm_calls: int = 0


#: (messages, max_tokens) → the model's reply; the service backs it with the generator (base model).
Generate = Callable[[Sequence[ChatMessage], int], str]

_CJK = re.compile(r"[\u4e00-\u9fff]")
_CITE = re.compile(r"\s*\[\d+\]")
_WORD = re.compile(r"[A-Za-z][\w'’-]*|\d[\d.,]*")

_QUESTION_WORDS = {
    "who", "whom", "whose", "what", "which", "when", "where", "why", "how", "is", "are", "was", "were",
    "do", "does", "did", "can", "could", "will", "would", "should", "shall", "may", "might", "has",
    "have", "had", "i", "and", "but", "so", "also", "then", "tell", "please", "in", "on", "at", "for",
}  # fmt: skip
_AUX = {
    "do", "does", "did", "can", "could", "will", "would", "should", "shall", "may", "might", "has",
    "have", "had",
}  # fmt: skip
_COPULA = {"is", "are", "was", "were"}
_STOP = {
    "of", "in", "on", "at", "for", "to", "from", "with", "by", "about", "after", "before", "during",
    "is", "are", "was", "were", "be", "been", "do", "does", "did", "can", "could", "will", "would",
    "should", "has", "have", "had", "and", "or", "if", "when", "that", "which", "who", "than", "as",
    "into", "over", "under", "between", "i", "we", "you", "they", "it", "get", "cost", "costs", "take",
    "include", "includes", "work", "works", "mean", "means", "need", "use", "make", "made",
}  # fmt: skip
_CONNECT = {"of", "the", "de", "and", "for", "&", "on", "la", "le", "von", "van", "der", "du"}
_DETERMINERS = {"the", "a", "an", "my", "your", "our", "their"}
_FUNCTION = {
    "the", "a", "an", "is", "was", "are", "were", "it", "he", "she", "they", "we", "you", "i", "there",
    "to", "of", "in", "on", "at", "for", "with", "by", "this", "that", "these", "those", "my", "your",
}  # fmt: skip

# English pronouns, by the kind of referent they take.
_PERSON = {"he", "him", "his", "she", "her", "hers", "himself", "herself"}
_THING = {"it", "its", "itself", "they", "them", "their", "theirs", "themselves"}
_PRONOUN = re.compile(r"\b(" + "|".join(sorted(_PERSON | _THING, key=len, reverse=True)) + r")\b", re.I)
_THERE = re.compile(r"\bthere\b(?!\s+(?:is|are|was|were|be|been|'s|’s|any|a)\b)", re.I)
_BE_THERE = re.compile(r"\b(?:is|are|was|were|be|been)\s+there\b", re.I)
_DEMONSTRATIVE = re.compile(r"\b(that|this|those|these|the same)\s+([A-Za-z][\w-]*)", re.I)
_BARE_DEMONSTRATIVE = re.compile(r"\b(that|this)\b(?=\s*(?:[?.!,]|$))", re.I)
_EXPLETIVE_IT = re.compile(
    # "does it take 3 days to …", "is it possible to …": "it" stands for the clause that follows
    r"\bit\s+(?:(?:take|takes|took)\b.*\bto\s+\w|(?:possible|necessary|okay|ok|true|safe|worth|likely)\b"
    r"|raining|snowing)",
    re.I,
)
_ELLIPSIS_EN = re.compile(r"^(?:and\s+|so\s+|but\s+)?(?:what|how)\s+about\s+(.+?)[?.!]*$", re.I)
_LEAD_EN = re.compile(r"^(?:and|so|but|also|then|ok|okay)[,\s]+", re.I)
_ORDINALS_EN = {
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "1st": 1, "2nd": 2, "3rd": 3,
    "4th": 4, "5th": 5, "last": -1,
}  # fmt: skip
_ORDINAL_EN = re.compile(
    r"^(?:the\s+)?(" + "|".join(_ORDINALS_EN) + r")(?:\s+(?:one|option|item|plan|choice))?$", re.I
)

# Chinese.
_ZH_PRONOUNS = ("它们", "他们", "她们", "它的", "他的", "她的", "它", "他", "她")
_ZH_PLACE = ("那里", "那儿", "这里", "这儿", "该地", "当地")
_ZH_NOUNS = (
    "公司", "城市", "国家", "地区", "产品", "服务", "乐队", "组织", "大学", "学校", "机构", "套餐", "计划",
    "电影", "歌曲", "书", "人", "地方", "方案", "功能", "版本", "款", "家", "位", "个", "种", "项",
)  # fmt: skip
_ZH_DEMONSTRATIVE = re.compile(r"(?:该|这个|那个|这|那|此)(" + "|".join(_ZH_NOUNS) + r")")
_ZH_QI = re.compile(r"其(?=[\u4e00-\u9fff])")
_ZH_ORDINAL = re.compile(r"第([一二三四五六七八九十\d]+)(?:个|种|项|款|条|家|位)?")
_ZH_NUM = {"一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9, "十": 10}
_ZH_ELLIPSIS = re.compile(r"^(?:那么?|还有|另外)?(.+?)呢[？?。!！]*$")
_ZH_PREDICATE = re.compile(
    r"(是|有|在|位于|成立|建于|出生|发生|属于|为什么|什么|哪|多少|几|如何|怎么|怎样|谁|能否|可以|需要|要|会|的)"
)

_TOPIC_EN = re.compile(
    r"^(?:by the way|btw|on another note|unrelated(?: question)?|new question|different question|"
    r"another question|change of topic|something else)[,:;.!\s-]*",
    re.I,
)
_TOPIC_ZH = re.compile(
    r"^(?:换个话题|另外一个问题|另一个问题|顺便问一下|顺便问|题外话|其他问题|新问题)[，,：:。\s]*"
)

_REFUSAL = re.compile(r"^(?:sorry|i can(?:no|')t|i am|i'm|as an ai|抱歉|对不起|我无法)", re.I)


# --- dates ---------------------------------------------------------------------------------------
def _monday(day: dt.date) -> dt.date:
    return day - dt.timedelta(days=day.weekday())


def _month(day: dt.date, delta: int) -> tuple[int, int]:
    index = day.year * 12 + day.month - 1 + delta
    return index // 12, index % 12 + 1


def _week(day: dt.date, zh: bool) -> str:
    start = _monday(day)
    end = start + dt.timedelta(days=6)
    return f"{start.isoformat()}至{end.isoformat()}" if zh else f"the week of {start.isoformat()}"


def _date_rules(today: dt.date) -> list[tuple[re.Pattern[str], Callable[[re.Match[str]], str]]]:
    d = dt.timedelta
    iso = dt.date.isoformat

    def month(delta: int, zh: bool) -> str:
        y, m = _month(today, delta)
        return f"{y}年{m}月" if zh else f"{y}-{m:02d}"

    return [
        (re.compile(r"\bthe day before yesterday\b", re.I), lambda m: iso(today - d(days=2))),
        (re.compile(r"\bthe day after tomorrow\b", re.I), lambda m: iso(today + d(days=2))),
        (re.compile(r"\byesterday\b", re.I), lambda m: iso(today - d(days=1))),
        (re.compile(r"\btomorrow\b", re.I), lambda m: iso(today + d(days=1))),
        (re.compile(r"\btoday\b", re.I), lambda m: iso(today)),
        (re.compile(r"\b(\d+) days? ago\b", re.I), lambda m: iso(today - d(days=int(m[1])))),
        (re.compile(r"\bin (\d+) days?\b", re.I), lambda m: iso(today + d(days=int(m[1])))),
        (re.compile(r"\blast week\b", re.I), lambda m: _week(today - d(days=7), False)),
        (re.compile(r"\bnext week\b", re.I), lambda m: _week(today + d(days=7), False)),
        (re.compile(r"\bthis week\b", re.I), lambda m: _week(today, False)),
        (re.compile(r"\blast month\b", re.I), lambda m: month(-1, False)),
        (re.compile(r"\bnext month\b", re.I), lambda m: month(1, False)),
        (re.compile(r"\bthis month\b", re.I), lambda m: month(0, False)),
        (re.compile(r"\blast year\b", re.I), lambda m: str(today.year - 1)),
        (re.compile(r"\bnext year\b", re.I), lambda m: str(today.year + 1)),
        (re.compile(r"\bthis year\b", re.I), lambda m: str(today.year)),
        (re.compile(r"前天"), lambda m: iso(today - d(days=2))),
        (re.compile(r"后天"), lambda m: iso(today + d(days=2))),
        (re.compile(r"昨天|昨日"), lambda m: iso(today - d(days=1))),
        (re.compile(r"明天|明日"), lambda m: iso(today + d(days=1))),
        (re.compile(r"今天|今日"), lambda m: iso(today)),
        (re.compile(r"(\d+)天前"), lambda m: iso(today - d(days=int(m[1])))),
        (re.compile(r"(\d+)天后"), lambda m: iso(today + d(days=int(m[1])))),
        (re.compile(r"上个?(?:星期|礼拜|周)"), lambda m: _week(today - d(days=7), True)),
        (re.compile(r"下个?(?:星期|礼拜|周)"), lambda m: _week(today + d(days=7), True)),
        (re.compile(r"(?:本|这个?)(?:星期|礼拜|周)"), lambda m: _week(today, True)),
        (re.compile(r"上个?月"), lambda m: month(-1, True)),
        (re.compile(r"下个?月"), lambda m: month(1, True)),
        (re.compile(r"(?:本|这个)月"), lambda m: month(0, True)),
        (re.compile(r"去年"), lambda m: f"{today.year - 1}年"),
        (re.compile(r"明年"), lambda m: f"{today.year + 1}年"),
        (re.compile(r"今年"), lambda m: f"{today.year}年"),
    ]


def absolute_dates(text: str, today: dt.date) -> tuple[str, list[tuple[str, str]]]:
    """``text`` with its relative dates made absolute, and the (relative, absolute) pairs replaced."""
    replaced: list[tuple[str, str]] = []
    for pattern, value in _date_rules(today):

        def sub(m: re.Match[str], value: Callable[[re.Match[str]], str] = value) -> str:
            new = value(m)
            replaced.append((m[0], new))
            return new

        text = pattern.sub(sub, text)
    return text, replaced


# --- referents -----------------------------------------------------------------------------------
def _is_zh(text: str) -> bool:
    return bool(_CJK.search(text))


def _clean_answer(text: str) -> str:
    return _CITE.sub("", text).strip().rstrip("。.!！")


def short_entity(answer: str) -> str | None:
    """The previous answer when it is a short name (not a number or a date, not a sentence)."""
    text = _clean_answer(answer)
    if not text or re.fullmatch(r"[\d\s.,:/年月日-]+", text) or re.search(r"[.;:!?。；！？\n]", text):
        return None
    if _is_zh(text):
        return text if len(text) <= 12 else None
    words = text.split()
    if len(words) > 6 or not any(w[:1].isupper() for w in words):
        return None
    return text


def _capitalised(question: str) -> list[str]:
    tokens = re.findall(r"[\w'’&-]+|[^\w\s]", question)
    spans: list[list[str]] = []
    current: list[str] = []
    for i, tok in enumerate(tokens):
        first = i == 0 or tokens[i - 1] in {'"', "'", "(", ","}
        proper = (tok[:1].isupper() and not (first and tok.lower() in _QUESTION_WORDS)) or (
            current and tok[:1].isdigit()
        )
        if (proper and tok.lower() != "i") or (current and tok.lower() in _CONNECT):
            current.append(tok)
        else:
            if current:
                spans.append(current)
            current = []
    if current:
        spans.append(current)
    out = []
    for span in spans:
        while span and span[-1].lower() in _CONNECT:
            span.pop()
        if span:
            out.append(" ".join(span))
    return out


def _determiner_phrase(question: str) -> str | None:
    words = question.rstrip("?.! ").split()
    lowered = [w.lower().strip(",") for w in words]
    inverted = len(lowered) > 1 and (lowered[0] in _AUX or (len(lowered) > 2 and lowered[1] in _AUX))
    for i, w in enumerate(lowered):
        if w not in _DETERMINERS:
            continue
        j = i + 1
        while j < len(words) and lowered[j] not in _STOP and j - i <= 5:
            j += 1
        if j == len(words) and inverted and j - i > 2:
            j -= 1  # "How much does the premium plan cost": the last word is the verb
        if j > i + 1:
            return " ".join(words[i:j]).strip(",")
    return None


def _zh_subject(question: str, sources: Sequence[str]) -> str | None:
    titled = re.search(r"《[^》]+》", question)
    if titled:
        return titled[0]
    for title in sources:
        common = _longest_common(question, title)
        if len(common) >= 2:
            return common
    text = re.sub(r"^(?:请问|我想知道|你知道)?(?:你们的|我们的|你们|我们|我的|我)?", "", question.strip())
    m = _ZH_PREDICATE.search(text)
    if m and 2 <= m.start() <= 14:
        return text[: m.start()]
    return None


def _longest_common(a: str, b: str) -> str:
    best = ""
    for i in range(len(a)):
        for j in range(i + len(best) + 1, len(a) + 1):
            if a[i:j] in b:
                best = a[i:j]
            else:
                break
    return best.strip(" ，,。？?")


def subject_of(question: str, sources: Sequence[str] = ()) -> str | None:
    """The entity a question is about: a quoted or capitalised name, else its first noun phrase."""
    if _is_zh(question):
        return _zh_subject(question, sources)
    quoted = re.search(r"[\"“]([^\"”]{2,60})[\"”]", question)
    if quoted:
        return quoted[1]
    names = _capitalised(question)
    if names:
        name = max(names, key=lambda n: len(n.split()))
        before = question[: question.find(name)].rstrip().lower()
        return f"the {name}" if before.endswith(" the") or before == "the" else name
    return _determiner_phrase(question)


def list_item(answer: str, index: int) -> str | None:
    """The ``index``-th item (1-based, -1 last) of an answer's numbered, bulleted or comma list."""
    text = _clean_answer(answer)
    items = re.findall(r"(?m)^\s*(?:\d+[.)、]|[-*•])\s*(.+?)\s*$", text)
    if len(items) < 2:
        body = re.sub(r"^.*?(?:[:：]|包括|有|are|include[s]?)\s*", "", text, count=1)
        items = [
            p.strip() for p in re.split(r"[,、，;；]|\s+and\s+|\s+or\s+|和|与|以及|或", body) if p.strip()
        ]
    if len(items) < 2:
        return None
    if index == -1:
        return items[-1]
    return items[index - 1] if 0 < index <= len(items) else None


# --- the rewriter --------------------------------------------------------------------------------
@dataclass
class _Context:
    question: str | None  # the previous user turn's standalone question
    answer: str | None  # the answer to it
    sources: tuple[str, ...]
    subject: str | None
    earlier_subject: str | None  # from an older user turn, when the last has none


def _context(history: Sequence[Turn]) -> _Context:
    question = answer = None
    sources: tuple[str, ...] = ()
    subjects: list[str] = []
    for i in range(len(history) - 1, -1, -1):
        turn = history[i]
        if turn.role != "user":
            continue
        text = turn.standalone or turn.content
        if question is None:
            question = text
            nxt = history[i + 1] if i + 1 < len(history) else None
            if nxt is not None and nxt.role == "assistant":
                answer, sources = nxt.content, nxt.sources
        found = subject_of(text, sources)
        if found:
            subjects.append(found)
        if len(subjects) >= 2:
            break
    subject = subject_of(question, sources) if question else None
    earlier = next((s for s in subjects if s != subject), None)
    return _Context(question, answer, sources, subject, subject or earlier)


def _asks_who(question: str) -> bool:
    return bool(re.match(r"^\s*(?:who|whom|whose)\b", question, re.I)) or "谁" in question


def _asks_where(question: str) -> bool:
    return bool(re.match(r"^\s*where\b", question, re.I)) or bool(re.search(r"哪里|哪儿|什么地方", question))


def _possessive(name: str) -> str:
    return name + ("'" if name.endswith("s") else "'s")


class QueryRewriter:
    """History-aware rewriting of a turn into a standalone question (rules, then the model)."""

    def __init__(self, generate: Generate | None = None, *, use_model: bool = True) -> None:
        self._generate = generate
        self._use_model = use_model and generate is not None

    def rewrite(self, history: Sequence[Turn], message: str, *, today: dt.date) -> Rewrite:
        text = " ".join(message.split())
        dated, date_pairs = absolute_dates(text, today)
        notes = ["relative date made absolute"] if date_pairs else []
        topic = _TOPIC_ZH.match(dated) if _is_zh(dated) else _TOPIC_EN.match(dated)
        if topic and dated[topic.end() :].strip():
            body = dated[topic.end() :].strip()
            return Rewrite(
                body,
                "rules",
                "; ".join([*notes, f"change of topic ({topic[0].strip(' ,:;')!r}): history ignored"]),
                tuple([*date_pairs, (topic[0].strip(), "")]),
                topic_change=True,
            )
        if not any(t.role == "user" for t in history):
            return self._complete(dated, date_pairs, notes, False)
        ctx = _context(history)
        resolved = self._resolve(dated, ctx)
        if resolved is None:
            return self._complete(dated, date_pairs, notes, self._new_topic(dated, history))
        standalone, pairs, why = resolved
        if standalone is None:  # a reference the rules cannot resolve
            return self._fallback(history, dated, ctx, date_pairs, [*notes, why])
        return Rewrite(standalone, "rules", "; ".join([*notes, why]), tuple([*date_pairs, *pairs]))

    # A message with no reference to the history.
    def _complete(
        self, text: str, pairs: list[tuple[str, str]], notes: list[str], topic_change: bool
    ) -> Rewrite:
        if pairs:
            return Rewrite(text, "rules", "; ".join(notes), tuple(pairs), topic_change=topic_change)
        reason = "a complete question: left as it is"
        if topic_change:
            reason += " (it shares nothing with the history: a new topic)"
        return Rewrite(text, "unchanged", reason, topic_change=topic_change)

    @staticmethod
    def _new_topic(text: str, history: Sequence[Turn]) -> bool:
        recent = " ".join((t.standalone or t.content) for t in history[-4:]).lower()
        if _is_zh(text):
            grams = {text[i : i + 2] for i in range(len(text) - 1) if _CJK.match(text[i])}
            return bool(grams) and not any(g in recent for g in grams)
        words = {w.lower() for w in _WORD.findall(text)} - _STOP - _QUESTION_WORDS - _FUNCTION
        words = {w for w in words if len(w) > 3}
        return bool(words) and not any(w in recent for w in words)

    def _resolve(self, text: str, ctx: _Context) -> tuple[str | None, list[tuple[str, str]], str] | None:
        """None: no reference to the history; (None, [], why): a reference the rules cannot fill."""
        return self._resolve_zh(text, ctx) if _is_zh(text) else self._resolve_en(text, ctx)

    # --- English --------------------------------------------------------------------------------
    def _resolve_en(self, text: str, ctx: _Context) -> tuple[str | None, list[tuple[str, str]], str] | None:
        stripped = _LEAD_EN.sub("", text)
        m = _ELLIPSIS_EN.match(text)
        words = stripped.rstrip("?.! ").split()
        fragment = None
        if m:
            fragment = m[1].strip()
        elif (
            0 < len(words) <= 4
            and words[0].lower() not in _QUESTION_WORDS | _AUX | _COPULA
            and not _PRONOUN.search(stripped)
        ):
            fragment = stripped.rstrip("?.! ")
        if fragment is not None:
            return self._ellipsis(fragment, ctx, text)
        found = self._pronouns_en(stripped, ctx)
        if found is None:
            return None
        out, pairs, why = found
        return out, pairs, why

    def _pronouns_en(self, text: str, ctx: _Context) -> tuple[str | None, list[tuple[str, str]], str] | None:
        refs: list[tuple[int, int, str, str]] = []  # start, end, word, kind
        for m in _PRONOUN.finditer(text):
            word = m[1].lower()
            if word == "it" and _EXPLETIVE_IT.search(text[m.start() :]):
                continue
            refs.append((m.start(), m.end(), m[1], "person" if word in _PERSON else "thing"))
        if not _BE_THERE.search(text):
            refs += [(m.start(), m.end(), m[0], "place") for m in _THERE.finditer(text)]
        for m in _DEMONSTRATIVE.finditer(text):
            if m[2].lower() not in _FUNCTION:
                refs.append((m.start(), m.end(), m[0], "named"))
        refs += [(m.start(), m.end(), m[0], "thing") for m in _BARE_DEMONSTRATIVE.finditer(text)]
        if not refs:
            return None
        refs.sort()
        out, pairs, referents = [], [], []
        pos = 0
        for start, end, word, kind in refs:
            if start < pos:
                continue
            referent = self._referent(kind, ctx)
            if referent is None:
                return None, [], f"{word!r} refers to the history, and the rules find no referent"
            replacement = referent
            if word.lower() in {"his", "her", "its", "their"} and not (
                word.lower() == "her" and kind == "person" and _object_her(text, end)
            ):
                replacement = _possessive(referent)
            if kind == "place" and not re.search(r"\b(?:in|at|to|from|near|of)\s*$", text[:start], re.I):
                replacement = f"in {referent}"
            if word[:1].isupper() and start == 0:
                replacement = replacement[:1].upper() + replacement[1:]
            out.append(text[pos:start] + replacement)
            pairs.append((word, replacement))
            referents.append(referent)
            pos = end
        out.append(text[pos:])
        source = (
            "the previous answer"
            if ctx.answer and any(r == short_entity(ctx.answer) for r in referents)
            else "the previous question"
        )
        return "".join(out), pairs, f"{', '.join(repr(p[0]) for p in pairs)} resolved from {source}"

    def _referent(self, kind: str, ctx: _Context) -> str | None:
        answer = short_entity(ctx.answer) if ctx.answer else None
        question = ctx.question or ""
        if kind == "person":
            return answer if answer and _asks_who(question) else (ctx.subject or ctx.earlier_subject)
        if kind == "place":
            return answer if answer and _asks_where(question) else (ctx.subject or ctx.earlier_subject)
        if kind == "named":  # "that band", "该公司": the thing the last answer named, when it named one
            return answer or ctx.subject or ctx.earlier_subject
        if answer and not _asks_who(question) and not ctx.subject:
            return answer
        if (
            answer
            and re.match(r"^\s*(?:which|what)\s+\w+", question, re.I)
            and not re.match(r"^\s*what\s+(?:is|are|was|were|does|do|did)\b", question, re.I)
        ):
            return answer  # "Which company makes X?" → "Acme"; "When was it founded?" → Acme
        return ctx.subject or ctx.earlier_subject

    def _ellipsis(
        self, fragment: str, ctx: _Context, text: str
    ) -> tuple[str | None, list[tuple[str, str]], str]:
        if not ctx.question:
            return None, [], "an ellipsis with no earlier question"
        ordinal = _ORDINAL_EN.match(fragment) if not _is_zh(fragment) else None
        zh_ordinal = _ZH_ORDINAL.fullmatch(fragment) if _is_zh(fragment) else None
        pairs: list[tuple[str, str]] = []
        index = None
        if ordinal:
            index = _ORDINALS_EN[ordinal[1].lower()]
        elif zh_ordinal:
            index = _zh_number(zh_ordinal[1])
        if index is not None:
            item = list_item(ctx.answer or "", index)
            if item is None:
                return None, [], f"{fragment!r} points into a list the previous answer does not hold"
            pairs.append((fragment, item))
            standalone = f"介绍一下{item}" if _is_zh(item) else f"Tell me more about {item}."
            return standalone, pairs, f"{fragment!r} read from the previous answer's list"
        base = ctx.question.rstrip()
        if ctx.subject and ctx.subject in base and ctx.subject != fragment:
            standalone = base.replace(ctx.subject, fragment, 1)
            pairs.append((ctx.subject, fragment))
            why = f"an ellipsis: {fragment!r} put in place of {ctx.subject!r} in the previous question"
        else:
            sep = "：" if _is_zh(base) else ": "
            standalone = f"{fragment}{sep}{base}"
            pairs.append((text, standalone))
            why = "an ellipsis: the previous question, about the fragment"
        return standalone, pairs, why

    # --- Chinese --------------------------------------------------------------------------------
    def _resolve_zh(self, text: str, ctx: _Context) -> tuple[str | None, list[tuple[str, str]], str] | None:
        m = _ZH_ELLIPSIS.match(text)
        if m and len(m[1]) <= 12 and not _ZH_PREDICATE.search(m[1].replace("的", "")):
            return self._ellipsis(m[1].strip("，, "), ctx, text)
        spans: list[tuple[int, int, str, str]] = []
        for word in _ZH_PRONOUNS:
            start = text.find(word)
            while start != -1:
                kind = "person" if word[0] in "他她" else "thing"
                spans.append((start, start + len(word), word, kind))
                start = text.find(word, start + len(word))
        for word in _ZH_PLACE:
            for m2 in re.finditer(word, text):
                spans.append((m2.start(), m2.end(), word, "place"))
        for m2 in _ZH_DEMONSTRATIVE.finditer(text):
            spans.append((m2.start(), m2.end(), m2[0], "named"))
        for m2 in _ZH_QI.finditer(text):
            spans.append((m2.start(), m2.end(), "其", "thing"))
        if not spans:
            return None
        spans.sort(key=lambda s: (s[0], -(s[1] - s[0])))
        out, pairs = [], []
        pos = 0
        for start, end, word, kind in spans:
            if start < pos:
                continue
            referent = self._referent(kind, ctx)
            if referent is None:
                return None, [], f"{word!r} refers to the history, and the rules find no referent"
            replacement = referent + ("的" if word.endswith("的") or word == "其" else "")
            out.append(text[pos:start] + replacement)
            pairs.append((word, replacement))
            pos = end
        out.append(text[pos:])
        return "".join(out), pairs, f"{'、'.join(p[0] for p in pairs)} resolved from the history"

    # --- the model, where the rules do not fit -------------------------------------------------
    def _fallback(
        self,
        history: Sequence[Turn],
        text: str,
        ctx: _Context,
        pairs: list[tuple[str, str]],
        notes: list[str],
    ) -> Rewrite:
        if self._use_model and self._generate is not None:
            reply = self._generate(_prompt(history, text), 64)
            candidate = _validated(reply, text)
            if candidate is not None:
                reason = "; ".join([*notes, "rewritten by the model"])
                return Rewrite(candidate, "model", reason, tuple([*pairs, (text, candidate)]), llm_calls=1)
            notes = [*notes, f"the model's rewrite was refused ({reply[:60]!r})"]
            calls = 1
        else:
            calls = 0
        context = ctx.subject or ctx.question
        if not context:
            return Rewrite(text, "rules", "; ".join(notes), tuple(pairs), llm_calls=calls)
        sep = "（" if _is_zh(text) else " ("
        end = "）" if _is_zh(text) else ")"
        standalone = f"{text}{sep}{context}{end}"
        reason = "; ".join([*notes, "the previous question's subject appended as context"])
        return Rewrite(standalone, "rules", reason, tuple([*pairs, (text, standalone)]), llm_calls=calls)


def _object_her(text: str, end: int) -> bool:
    """``her`` as an object ("ask her") rather than a possessive ("her book")."""
    nxt = re.match(r"\s+([A-Za-z]+)", text[end:])
    return nxt is None or nxt[1].lower() in _STOP | _FUNCTION


def _zh_number(text: str) -> int | None:
    if text.isdigit():
        return int(text)
    if text in _ZH_NUM:
        return _ZH_NUM[text]
    if text.startswith("十") and len(text) == 2 and text[1] in _ZH_NUM:
        return 10 + _ZH_NUM[text[1]]
    return None


def _prompt(history: Sequence[Turn], message: str) -> list[ChatMessage]:
    lines = []
    for turn in history[-4:]:
        who = "User" if turn.role == "user" else "Assistant"
        lines.append(f"{who}: {_clean_answer(turn.content)[:400]}")
    zh = _is_zh(message)
    instruction = (
        "把用户的最后一句话改写成一个不依赖上下文、可以单独检索的问题。只输出改写后的问题。"
        if zh
        else "Rewrite the user's last message as a standalone question that can be understood without "
        "the conversation. Reply with the rewritten question only."
    )
    return [
        {"role": "system", "content": instruction},
        {"role": "user", "content": "\n".join(lines) + f"\nUser: {message}\n\nStandalone question:"},
    ]


def _validated(reply: str, message: str) -> str | None:
    """The model's rewrite when it looks like one: one line, the message's script, not a refusal."""
    text = reply.strip().splitlines()[0].strip() if reply.strip() else ""
    text = re.sub(r"^(?:standalone question|question|改写|问题)\s*[:：]\s*", "", text, flags=re.I).strip(
        " \"'“”"
    )
    if not text or len(text) > 3 * len(message) + 120 or _REFUSAL.match(text):
        return None
    if _is_zh(message) != _is_zh(text):
        return None
    return text
