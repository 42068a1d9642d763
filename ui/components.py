"""Choice components whose refusal of a value is a visitor's mistake.

Gradio's CheckboxGroup and Dropdown refuse a value outside their choices with an
error that prints a traceback to the server log. `quiet_choices` makes an API-facing
one say which value and which choices instead, and print nothing: an API caller
sending "nope" is not a server fault. (A subclass would do the same, but Gradio
writes a .pyi stub beside every component subclass it meets.)
"""
from __future__ import annotations

import types

import gradio as gr

from composer.recipe import echo


def _refused(component, value) -> gr.Error:
    allowed = ", ".join(str(v) for _, v in component.choices)
    what = component.label or "value"
    return gr.Error(f"{what}: {echo(value)} is not one of: {allowed}", duration=12,
                    title="Cannot run this recipe", print_exception=False)


def _preprocess(self, payload):
    allowed = [v for _, v in self.choices]
    if isinstance(self, gr.CheckboxGroup) and not isinstance(payload, list):
        raise _refused(self, payload)
    values = payload if isinstance(payload, list) else [payload]
    if not getattr(self, "allow_custom_value", False):
        for value in values:
            if value is not None and value not in allowed:
                raise _refused(self, value)
    return type(self).preprocess(self, payload)


def quiet_choices(component: gr.CheckboxGroup | gr.Dropdown):
    """The component, refusing values outside its choices in one clear line."""
    component.preprocess = types.MethodType(_preprocess, component)
    return component
