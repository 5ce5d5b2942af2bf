"""Jinja2 renderer for the email bodies in templates/ (<kind>.txt and <kind>.html).

HTML is autoescaped (names and product names are user input); plain text is not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2

from services.notification.domain import Kind

TEMPLATE_DIR = Path(__file__).with_name("templates")


class JinjaRenderer:
    def __init__(self, directory: Path = TEMPLATE_DIR) -> None:
        self._env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(directory),
            autoescape=jinja2.select_autoescape(enabled_extensions=("html",)),
            undefined=jinja2.StrictUndefined,  # a typo in a template fails the test, not a customer
            keep_trailing_newline=True,
            # Templates ship with the code: no stat() of every file on every email.
            auto_reload=False,
        )
        self._templates: dict[Kind, tuple[jinja2.Template, jinja2.Template]] = {}

    def render(self, kind: Kind, context: dict[str, Any]) -> tuple[str, str]:
        pair = self._templates.get(kind)
        if pair is None:
            pair = self._templates[kind] = (
                self._env.get_template(f"{kind.value}.txt"),
                self._env.get_template(f"{kind.value}.html"),
            )
        return pair[0].render(context), pair[1].render(context)
