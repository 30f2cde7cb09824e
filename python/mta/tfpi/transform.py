"""The ThinkFree transform: the response starts with an empty thinking block.

TFPI (arXiv 2509.26226) trains a thinking model on *ThinkFree* prompts: right after the
generation prompt comes an empty thinking block (``<think>\\n\\n</think>\\n\\n`` by default),
so the model answers without thinking. The transform takes any prompt form:

* a rendered prompt string (what precedes the response);
* chat messages (with or without a system message), rendered with the tokenizer's chat
  template and ``add_generation_prompt=True``; ``enable_thinking=False`` is passed too, so a
  Qwen3-style template writes the empty block itself;
* token ids.

Three endings are handled, so the result always ends with exactly one empty block:
already ThinkFree (an empty block at the end: unchanged, so the transform is idempotent),
an open ``<think>`` (DeepSeek-R1-style templates open the thinking themselves: the open
tag is replaced by the empty block), anything else (the block is appended).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch

__all__ = ["EMPTY_THINK", "THINK_OPEN", "THINK_CLOSE", "render_prompt", "think_free", "thinking_prompt"]

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
EMPTY_THINK = "<think>\n\n</think>\n\n"


def _is_messages(x) -> bool:
    return isinstance(x, Sequence) and not isinstance(x, str) and len(x) > 0 and all(isinstance(m, dict) for m in x)


def render_prompt(messages: list[dict], tokenizer, *, enable_thinking: bool) -> str:
    """The generation prompt of ``messages`` under the tokenizer's chat template.

    Raises
    ------
    ValueError
        No chat template, a conversation that does not end with a user / system / tool
        message (``messages``), or a template that writes no generation prompt
        (``chat_template``: ``add_generation_prompt=True`` changes nothing).
    """
    if tokenizer is None or getattr(tokenizer, "chat_template", None) is None:
        raise ValueError("tokenizer: chat messages need a tokenizer with a chat template")
    if messages[-1].get("role") == "assistant":
        raise ValueError("messages: the last message is the assistant's; a prompt ends before the response")
    kw = {"tokenize": False, "enable_thinking": enable_thinking}
    with_prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, **kw)
    without = tokenizer.apply_chat_template(messages, add_generation_prompt=False, **kw)
    if with_prompt == without:
        raise ValueError("chat_template: the tokenizer's template writes no generation prompt "
                         "(add_generation_prompt=True changes nothing), so there is no place to put the response")
    return with_prompt


def _check_block(empty_think: str, open_tag: str, close_tag: str) -> None:
    if not isinstance(empty_think, str) or open_tag not in empty_think or close_tag not in empty_think \
            or empty_think.replace(open_tag, "", 1).replace(close_tag, "", 1).strip():
        raise ValueError(f"empty_think must be {open_tag} and {close_tag} with only whitespace around them, "
                         f"got {empty_think!r}")


def _text(text: str, empty_think: str, open_tag: str, close_tag: str) -> str:
    if re.search(re.escape(open_tag) + r"\s*" + re.escape(close_tag) + r"\s*$", text):
        return text  # already ThinkFree
    m = re.search(re.escape(open_tag) + r"\s*$", text)
    if m:  # the template opened the thinking (DeepSeek-R1 style): close it empty
        text = text[: m.start()]
    return text + empty_think


def _ids(ids: list[int], tokenizer, empty_think: str, open_tag: str) -> list[int]:
    block = tokenizer.encode(empty_think, add_special_tokens=False)
    if ids[-len(block):] == block:
        return ids
    opener = tokenizer.encode(open_tag, add_special_tokens=False)
    end = len(ids)
    while end > 0 and not tokenizer.decode(ids[end - 1:end]).strip():  # whitespace after an open tag
        end -= 1
    if end >= len(opener) and ids[end - len(opener):end] == opener:
        ids = ids[: end - len(opener)]
    return ids + block


def think_free(prompt, tokenizer=None, *, empty_think: str = EMPTY_THINK, open_tag: str = THINK_OPEN,
               close_tag: str = THINK_CLOSE):
    """The ThinkFree version of ``prompt`` (rules in the module docstring).

    Parameters
    ----------
    prompt : str, list of chat messages, or list / 1-D tensor of token ids
    tokenizer : optional
        Needed for messages (its chat template) and token ids (to encode the block).
    empty_think : str
        The empty thinking block.

    Returns
    -------
    str for a string or messages (the rendered prompt), list of int for token ids.
    """
    _check_block(empty_think, open_tag, close_tag)
    if isinstance(prompt, str):
        return _text(prompt, empty_think, open_tag, close_tag)
    if _is_messages(prompt):
        return _text(render_prompt(list(prompt), tokenizer, enable_thinking=False), empty_think, open_tag, close_tag)
    if isinstance(prompt, torch.Tensor):
        prompt = prompt.tolist()
    if isinstance(prompt, (list, tuple)) and prompt and all(isinstance(t, int) and not isinstance(t, bool)
                                                            for t in prompt):
        if tokenizer is None:
            raise ValueError("tokenizer: token ids need the tokenizer to encode the empty thinking block")
        return _ids(list(prompt), tokenizer, empty_think, open_tag)
    raise TypeError(f"prompt must be a str, a non-empty list of chat messages or of token ids, "
                    f"got {type(prompt).__name__}")


def thinking_prompt(messages: list[dict], tokenizer, *, open_tag: str = THINK_OPEN) -> str:
    """The thinking version of a chat prompt: rendered with ``enable_thinking=True``, ending
    with an open thinking block (appended when the template does not open one itself)."""
    if not _is_messages(messages):
        raise TypeError(f"messages must be a non-empty list of chat messages, got {type(messages).__name__}")
    text = render_prompt(list(messages), tokenizer, enable_thinking=True)
    return text if re.search(re.escape(open_tag) + r"\s*$", text) else text + open_tag + "\n"
