"""Renders the golden prompts of ChatTemplateTests with the real Jinja chat templates.

Each <model>.json here holds the chat_template, bos_token and eos_token of that model's
tokenizer_config.json. This renders them the way transformers' apply_chat_template does
(jinja2 sandbox, trim_blocks, lstrip_blocks, loopcontrols, raise_exception) over the
conversations below and writes <model>.<conversation>.golden.txt. Needs only jinja2:

    python3 render_goldens.py
"""
import json
import pathlib

from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

CONVERSATIONS = {
    # system + 2 user turns (one answered) + the generation prompt
    "system": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Hello!"},
        {"role": "assistant", "content": "Hi there! How can I help?"},
        {"role": "user", "content": "Tell me a story."},
    ],
    # no system message: templates with a default system prompt insert it
    "nosystem": [
        {"role": "user", "content": "Hello!"},
        {"role": "assistant", "content": "Hi there! How can I help?"},
        {"role": "user", "content": "Tell me a story."},
    ],
}


def raise_exception(message):
    raise ValueError(message)


def render(config, messages):
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.globals["raise_exception"] = raise_exception
    template = env.from_string(config["chat_template"])
    # A fixed date for Llama 3.1/3.2 (transformers would pass today's date through strftime_now).
    return template.render(messages=messages, add_generation_prompt=True, date_string="26 Jul 2024",
                           bos_token=config.get("bos_token") or "", eos_token=config.get("eos_token") or "")


here = pathlib.Path(__file__).parent
for path in sorted(here.glob("*.json")):
    config = json.loads(path.read_text(encoding="utf-8"))
    for name, messages in CONVERSATIONS.items():
        text = render(config, messages)
        (here / f"{path.stem}.{name}.golden.txt").write_text(text, encoding="utf-8", newline="")
        print(f"{path.stem}.{name}: {text!r}")
