"""Generator backends behind one interface."""

from agents.generation.base import ChatMessage, Generation, GenerationRequest, Generator

__all__ = ["ChatMessage", "Generation", "GenerationRequest", "Generator"]
