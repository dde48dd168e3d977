"""Prompt formats: how a conversation becomes the text a model reads.

``chat_template`` (``Model.load``, ``--chat-template``) takes:

- ``"auto"`` (the default): the model file's own template. llama.cpp renders it when it knows
  the template's family; otherwise jinja2 renders the file's Jinja text itself. A file with no
  template (a base model), or one neither can render, falls back to ``"raw"`` with a notice.
- a llama.cpp built-in name (``"chatml"``, ``"llama3"``, ``"gemma"``, ``"phi3"``, ...; see
  ``builtin_names()``): llama.cpp's rendering of that family.
- a path to a Jinja template file: rendered with jinja2, with ``messages``,
  ``add_generation_prompt``, ``bos_token`` and ``eos_token`` as Hugging Face templates expect.
- ``"raw"``: a plain transcript for base models, the format Lindsey (2025) used with them::

      {system}\\n\\nHuman: {user}\\n\\nAssistant: {assistant}\\n\\nHuman: {user}\\n\\nAssistant:

  ``user_prefix`` / ``assistant_prefix`` change the speaker labels.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from pyintro._native import _engine

__all__ = ["Messages", "PromptFormat", "builtin_names", "render", "resolve"]

RAW_USER = "Human: "
RAW_ASSISTANT = "Assistant:"
RAW_SEP = "\n\n"
_PROBE = [("system", "S"), ("user", "U"), ("assistant", "A"), ("user", "V")]

Messages = Sequence[tuple[str, str]]  # (role, content); roles "system", "user", "assistant"


def builtin_names() -> list[str]:
    """The chat template names llama.cpp 0.3.36 knows."""
    return sorted(_engine.builtin_templates())


@dataclass(frozen=True)
class PromptFormat:
    """A resolved prompt format. ``kind`` is "llama.cpp" (llama.cpp renders ``template``: a
    built-in name or the file's template text), "jinja" (jinja2 renders ``template``) or "raw"."""

    kind: str
    name: str  # what was asked for: "auto", a built-in name, a path, or "raw"
    source: str  # where it came from, in words (``pyintro info`` prints it)
    template: str = ""
    user_prefix: str = RAW_USER
    assistant_prefix: str = RAW_ASSISTANT

    def describe(self) -> dict:
        """For provenance records: everything that decides the prompt text."""
        d = {"kind": self.kind, "name": self.name, "source": self.source}
        if self.kind == "raw":
            d.update(user_prefix=self.user_prefix, assistant_prefix=self.assistant_prefix)
        else:
            d["template"] = self.template
        return d


def resolve(engine, chat_template: str = "auto", user_prefix: Optional[str] = None,
            assistant_prefix: Optional[str] = None, model_name: str = "the model") -> PromptFormat:
    """The prompt format ``chat_template`` names, for the model in ``engine`` (see the module)."""
    if not isinstance(chat_template, str) or not chat_template:
        raise ValueError("chat_template must be 'auto', 'raw', a llama.cpp template name or a Jinja file path")
    if (user_prefix is not None or assistant_prefix is not None) and chat_template != "raw":
        raise ValueError("--user-prefix and --assistant-prefix apply to --chat-template raw only")
    raw = PromptFormat("raw", "raw", "raw transcript", user_prefix=RAW_USER if user_prefix is None else user_prefix,
                       assistant_prefix=RAW_ASSISTANT if assistant_prefix is None else assistant_prefix)
    if chat_template == "raw":
        return raw
    if chat_template == "auto":
        own = engine.chat_template
        for fmt in (PromptFormat("llama.cpp", "auto", "the file's own template (llama.cpp renders it)", own),
                    PromptFormat("jinja", "auto", "the file's own template (jinja2 renders it; llama.cpp "
                                                  "does not know its family)", own)):
            if own and _renders(fmt, engine):
                return fmt
        why = "has no chat template" if not own else "has a chat template neither llama.cpp nor jinja2 can render"
        warnings.warn(f"{model_name} {why}: using the raw transcript format (\"Human: ...\\n\\nAssistant:\"); "
                      "choose another with --chat-template", UserWarning, stacklevel=3)
        return PromptFormat("raw", "auto", f"raw transcript (the file {why})")
    if chat_template in builtin_names():
        return PromptFormat("llama.cpp", chat_template, f"llama.cpp's built-in '{chat_template}' template",
                            chat_template)
    path = Path(chat_template).expanduser()
    if path.is_file():
        fmt = PromptFormat("jinja", str(path), f"the Jinja template {path}", path.read_text(encoding="utf-8"))
        render(fmt, engine, _PROBE[1:2], True)  # a broken template says so now, not mid-experiment
        return fmt
    raise ValueError(f"unknown chat template {chat_template!r}: use auto, raw, a path to a Jinja file, or one of "
                     f"llama.cpp's names ({', '.join(builtin_names()[:8])}, ...)")


def render(fmt: PromptFormat, engine, messages: Messages, add_assistant: bool) -> str:
    """The prompt text of ``messages``; ``add_assistant`` ends it where the assistant speaks."""
    messages = [(str(r), str(c)) for r, c in messages]
    for role, _ in messages:
        if role not in ("system", "user", "assistant"):
            raise ValueError(f"a message's role must be system, user or assistant, got {role!r}")
    if fmt.kind == "raw":
        parts = []
        for role, content in messages:
            if role == "system":
                parts.append(content)
            elif role == "user":
                parts.append(fmt.user_prefix + content)
            else:
                parts.append(f"{fmt.assistant_prefix} {content}")
        if add_assistant:
            parts.append(fmt.assistant_prefix)
        return RAW_SEP.join(parts)
    if fmt.kind == "llama.cpp":
        return engine.apply_chat_template(messages, add_assistant, fmt.template)
    return _jinja(fmt.template, engine, messages, add_assistant)


def _token_text(engine, token: int) -> str:
    return "" if token < 0 else engine.token_piece(token).decode("utf-8", errors="replace")


def _jinja(template: str, engine, messages: Messages, add_assistant: bool) -> str:
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise jinja2.TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals.update(raise_exception=raise_exception, strftime_now=lambda fmt: "")
    try:
        return env.from_string(template).render(
            messages=[{"role": r, "content": c} for r, c in messages], add_generation_prompt=add_assistant,
            bos_token=_token_text(engine, engine.bos), eos_token=_token_text(engine, engine.eos))
    except jinja2.TemplateError as e:
        raise ValueError(f"the Jinja chat template failed: {e}") from None


def _renders(fmt: PromptFormat, engine) -> bool:
    try:
        return bool(render(fmt, engine, _PROBE[1:2], True))
    except ValueError:
        return False
