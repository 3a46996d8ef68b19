"""Request bodies of the OpenAI-compatible server, as pydantic models.

Types are strict (``"5"`` is not an integer, ``"true"`` is not a boolean) so a
client's type mistake is reported rather than guessed at. Fields that OpenAI
defines but megadelta does not use are ignored, as OpenAI-compatible servers
commonly do, so stock clients that always send them keep working.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class StreamOptions(_Body):
    include_usage: bool = False


class TextPart(_Body):
    type: Literal["text"]
    text: str


class ChatMessage(_Body):
    # "developer" is OpenAI's newer name for "system".
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None

    def as_template_message(self) -> dict[str, str]:
        """The ``{"role", "content"}`` dict the chat template renders."""
        role = "system" if self.role == "developer" else self.role
        if self.content is None:
            return {"role": role, "content": ""}
        if isinstance(self.content, str):
            return {"role": role, "content": self.content}
        return {"role": role, "content": "".join(part.text for part in self.content)}


class _GenerationRequest(_Body):
    """Fields shared by /v1/chat/completions and /v1/completions."""

    model: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    repetition_penalty: float | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    n: int | None = None

    def requested_max_tokens(self) -> tuple[str, int | None]:
        """(the field the client used, its value)."""
        return "max_tokens", self.max_tokens

    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage


class ChatCompletionRequest(_GenerationRequest):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = None

    def requested_max_tokens(self) -> tuple[str, int | None]:
        # OpenAI's newer name wins when a client sends both.
        if self.max_completion_tokens is not None:
            return "max_completion_tokens", self.max_completion_tokens
        return "max_tokens", self.max_tokens


class CompletionRequest(_GenerationRequest):
    # One prompt: text, or token ids. A list of one text is accepted because
    # some clients always wrap the prompt in a list.
    prompt: str | list[int] | list[str]
