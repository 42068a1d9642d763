"""One concept row of the form: prompt, AND weight or NOT β, and its buttons.

Called inside the form's @gr.render; every component has a stable key built from the
row's id, and its listeners are defined here, with the loop variables frozen.
"""
from __future__ import annotations

import gradio as gr

from ui import state

# Enter in a prompt box clicks Generate (once the text has reached the server).
CLICK_GENERATE_JS = "() => document.getElementById('generate').click()"


def concept_row(n: int, row: dict, count: int, choices, rows_state) -> None:
    rid = row["id"]
    classes = ["concept-row"] + (["muted"] if row["muted"] else [])
    with gr.Group(elem_classes=classes, elem_id=f"concept-{n}", key=f"{rid}-group"):
        with gr.Row(equal_height=True):
            if choices:
                text = gr.Dropdown(choices, value=row["text"], allow_custom_value=True,
                                   label=f"Concept {n}", elem_id=f"concept-{n}-text",
                                   key=f"{rid}-text-choice", scale=4, interactive=True)
            else:
                text = gr.Textbox(row["text"], label=f"Concept {n}", placeholder="a prompt",
                                  elem_id=f"concept-{n}-text", key=f"{rid}-text-free", scale=4,
                                  max_length=400, interactive=True)
            weight = gr.Slider(0, 10, step=0.05, value=row["beta"] if row["negate"] else row["weight"],
                               label=weight_label(n, row["negate"]), elem_id=f"concept-{n}-weight",
                               key=f"{rid}-weight", scale=3, interactive=True)
            negate = gr.Checkbox(row["negate"], label="NOT", elem_id=f"concept-{n}-not",
                                 key=f"{rid}-not", scale=0, min_width=80,
                                 interactive=True)
        with gr.Row():
            buttons = {}
            for action, label in (("up", "Up"), ("down", "Down"), ("duplicate", "Duplicate"),
                                  ("mute", "Unmute" if row["muted"] else "Mute"),
                                  ("remove", "Remove")):
                buttons[action] = gr.Button(
                    label, size="sm", elem_id=f"concept-{n}-{action}", key=f"{rid}-{action}",
                    preserved_by_key=None, min_width=40,
                    interactive=not ((action == "up" and n == 1)
                                     or (action == "down" and n == count)))

    def set_text(value, rows, rid=rid):
        row_of(rows, rid)["text"] = value or ""

    def set_weight(value, rows, rid=rid):
        """Keeps what the box shows, in range or not: the recipe refuses what it cannot run."""
        r = row_of(rows, rid)
        if r:
            r["beta" if r["negate"] else "weight"] = state.number_or_text(value)

    def set_negate(value, rows, rid=rid, n=n):
        r = row_of(rows, rid)
        if not r:
            return gr.skip()
        r["negate"] = bool(value)
        return gr.update(value=r["beta"] if r["negate"] else r["weight"],
                         label=weight_label(n, r["negate"]))

    # .input, not .change: a re-render sets these boxes' values, and a change event of
    # a box being replaced raced the render inside Gradio (its preprocessing re-adds the
    # box to the session while the render walks it: "dictionary changed size").
    text.input(set_text, [text, rows_state], None, queue=False)
    if not choices:  # Enter in a prompt runs Generate, once the text has reached the server
        text.submit(set_text, [text, rows_state], None, queue=False).then(
            None, js=CLICK_GENERATE_JS)
    # Unprocessed: Gradio would clamp or reject an out-of-range value before we see it.
    weight.input(set_weight, [weight, rows_state], None, queue=False, preprocess=False)
    negate.input(set_negate, [negate, rows_state], weight, queue=False)
    for action, button in buttons.items():
        button.click(lambda rows, action=action, rid=rid: state.row_action(rows, action, rid),
                     rows_state, rows_state)


def row_of(rows: list[dict], rid: str) -> dict:
    try:
        return rows[state.find(rows, rid)]
    except KeyError:  # the row was removed while an edit was in flight
        return {}


def weight_label(n: int, negate: bool) -> str:
    return f"Row {n} · β (NOT strength)" if negate else f"Row {n} · AND weight w"
