"""LangGraph state machines: flow control only."""
