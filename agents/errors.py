"""Errors of the agents layer.

RagnetError (retrieval.errors)
 └── AgentError
      ├── ModelNotPrepared      a model folder is missing: run `ragnet models prepare`
      ├── ModelPreparationError a model package is missing or corrupt
      ├── UnknownAdapter        a request named an adapter that is not loaded
      ├── AdapterMismatch       an adapter folder is not a LoRA adapter for this base model
      ├── MissingExtra          an optional backend's package is not installed
      ├── GenerationError       the backend failed while generating
      │    └── BackendUnavailable  a generation server is down or too slow (after retries)
      ├── InvalidPrompt         an empty or overlong prompt
      ├── RouterCheckpointError a router folder missing, broken or for another embedder (routing.py)
      ├── TrainingDataError     a LoRA training file that cannot be read (lora_data.py)
      └── ReaderError           an extractive reader checkpoint missing, broken or for another encoder
"""

from __future__ import annotations

from retrieval.errors import RagnetError


class AgentError(RagnetError):
    pass


class ModelNotPrepared(AgentError):
    pass


class ModelPreparationError(AgentError):
    pass


class UnknownAdapter(AgentError):
    def __init__(self, name: str, known: list[str]) -> None:
        listed = ", ".join(known) if known else "none are loaded"
        super().__init__(f"unknown adapter {name!r}; known adapters: {listed}")
        self.name = name


class AdapterMismatch(AgentError):
    pass


class MissingExtra(AgentError):
    pass


class GenerationError(AgentError):
    pass


class BackendUnavailable(GenerationError):
    pass


class InvalidPrompt(AgentError):
    pass


class ReaderError(AgentError):
    pass


class TrainingDiverged(ReaderError):
    """A reader training run whose loss went back to a uniform guess's: nothing is written."""


class CheckpointError(AgentError):
    """A support-GNN checkpoint that is missing, unreadable or built for other features."""
