"""Gradio components whose refusal of a value is a visitor's mistake.

Gradio's own CheckboxGroup and Dropdown refuse a value outside their choices with an
error that prints a traceback to the server log. These say which value and which
choices, and print nothing: an API caller sending `"nope"` is not a server fault.
`is_template` makes Gradio draw them with the stock frontend.
"""
from __future__ import annotations

import gradio as gr

from composer.recipe import echo


def _refused(component, value) -> gr.Error:
    allowed = ", ".join(str(v) for _, v in component.choices)
    what = component.label or "value"
    return gr.Error(f"{what}: {echo(value)} is not one of: {allowed}", duration=12,
                    title="Cannot run this recipe", print_exception=False)

from gradio.events import Dependency

class CheckboxGroup(gr.CheckboxGroup):
    is_template = True

    def preprocess(self, payload):
        allowed = [v for _, v in self.choices]
        if not isinstance(payload, list):
            raise _refused(self, payload)
        for value in payload:
            if value not in allowed:
                raise _refused(self, value)
        return super().preprocess(payload)
    from typing import Callable, Literal, Sequence, Any, TYPE_CHECKING
    from gradio.blocks import Block
    if TYPE_CHECKING:
        from gradio.components import Timer
        from gradio.components.base import Component


class Dropdown(gr.Dropdown):
    is_template = True

    def preprocess(self, payload):
        allowed = [v for _, v in self.choices]
        values = payload if isinstance(payload, list) else [payload]
        if not self.allow_custom_value:
            for value in values:
                if value is not None and value not in allowed:
                    raise _refused(self, value)
        return super().preprocess(payload)
    from typing import Callable, Literal, Sequence, Any, TYPE_CHECKING
    from gradio.blocks import Block
    if TYPE_CHECKING:
        from gradio.components import Timer
        from gradio.components.base import Component