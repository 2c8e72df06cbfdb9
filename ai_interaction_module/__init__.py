"""AI interaction module (Ollama, OpenAI, MCP providers)."""

from . import controllers  # noqa: F401
