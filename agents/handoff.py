"""When the copilot hands a conversation to a person.

Three triggers, each a pure function of the turn and the history (so stateless requests, which
carry their own history, behave like stored sessions):

- the customer asks for a person ("can I talk to a human?", "转人工");
- strict mode refuses twice in a row (this turn and the one before);
- the answer's confidence stays below the assistant's threshold (this turn and the one before).

A 0.5B model asked "does the customer want a human?" answers at random, so the request is read by
rules: a verb of asking or talking next to a word for a person, in English and Chinese, and the
short forms support customers type ("agent", "human please"). A question *about* people ("who is
the CEO?") or about the bot ("are you a human?") does not trigger.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

_PERSON = (
    r"(?:a\s+|an\s+|the\s+|some\s*one\s*|some\s+)?(?:real\s+|live\s+|actual\s+)?"
    r"(?:human|person|people|agent|representative|rep|operator|staff|someone|somebody|support\s+agent|"
    r"customer\s+service(?:\s+(?:agent|rep|representative))?)"
)
_EN = [
    # "talk to a human", "speak with an agent", "connect me to a representative"
    rf"\b(?:talk|speak|chat|connect\s+me|transfer\s+me|put\s+me\s+through|get\s+me|reach)\s+(?:to|with|through\s+to)?\s*{_PERSON}\b",
    # "I want/need a human", "can I have a real person"
    rf"\b(?:want|need|have|get|request|prefer)\s+{_PERSON}\b(?!\s+(?:who|that|which))",
    # "human please", "agent!", "representative"
    r"^\s*(?:a\s+)?(?:human|agent|representative|operator|real person|live agent|live chat)"
    r"(?:\s+(?:please|now|pls))?\s*[.!?]*\s*$",
    r"\b(?:human|live)\s+(?:agent|support|help|being\s+please)\b",
]
_ZH = [
    r"转人工",
    r"人工(?:客服|服务|坐席|支持|帮助)",
    r"(?:找|要|转|接|换)(?:个|一个)?(?:真人|人工|客服人员|工作人员)",
    r"(?:和|跟|与)(?:真人|人工|客服人员|工作人员)(?:说|聊|谈|沟通)",
    r"^\s*人工\s*[。！!？?]*\s*$",
]
_PATTERNS = [re.compile(p, re.IGNORECASE) for p in _EN + _ZH]
#: Questions about the bot itself, not requests for a person.
_ABOUT_BOT = re.compile(
    r"\b(?:are|r)\s+(?:you|u)\s+(?:a\s+)?(?:real\s+)?(?:human|person|bot|robot)\b|你是(?:真人|人|机器人)",
    re.I,
)


def asks_for_human(text: str) -> bool:
    """Whether the customer asks to be handed to a person."""
    if _ABOUT_BOT.search(text):
        return False
    return any(p.search(text) for p in _PATTERNS)


def handoff_reason(
    answer_source: str,
    confidence: float | None,
    history: Sequence[Mapping[str, Any]],
    *,
    strict: bool,
    min_confidence: float | None,
) -> str | None:
    """Why this turn's answer hands over (None: it does not). ``history`` holds the earlier
    assistant turns' ``answer_source`` and ``confidence`` (dicts), oldest first."""
    previous = next((h for h in reversed(history) if h.get("role") == "assistant"), None)
    if strict and answer_source == "refusal" and previous and previous.get("answer_source") == "refusal":
        return "the knowledge base had no answer twice in a row"
    if min_confidence is None or answer_source not in ("documents", "model") or previous is None:
        return None
    if not _low(confidence, min_confidence):
        return None
    before = previous.get("answer_source")
    low_before = before in ("documents", "model") and _low(previous.get("confidence"), min_confidence)
    if before == "refusal" or low_before:
        return f"answer confidence stayed below {min_confidence:g}"
    return None


def _low(confidence: Any, threshold: float) -> bool:
    return confidence is None or float(confidence) < threshold
