"""The concept rows: MAX_CONCEPTS rows built once, as many shown as the recipe has.

Built once, never re-rendered: a `gr.render` replaced every box on each redraw, so
a box could be swapped out under a person's typing (pasted text came back as the
old prompt), and its new components raced the session's other events inside Gradio
("dictionary changed size during iteration"). Now every event that changes the rows
reads each shown box first (`Rows.current`) and writes back only what changed
(`Rows.view`): text that is on screen is never overwritten by an older copy.
"""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from composer.recipe import MAX_CONCEPTS
from ui import state

# Enter in a prompt box clicks Generate (the run reads the boxes as shown).
CLICK_GENERATE_JS = "() => document.getElementById('generate').click()"
ACTIONS = {"up": "Up", "down": "Down", "duplicate": "Duplicate", "mute": "Mute",
           "remove": "Remove"}


@dataclass(frozen=True)
class RowWidgets:
    group: gr.Group
    free: gr.Textbox        # a prompt, for models that read text
    choice: gr.Dropdown     # one of the model's concepts (the 2D lab)
    weight: gr.Slider       # the AND weight, or β when NOT is ticked
    negate: gr.Checkbox
    buttons: dict           # ACTIONS name -> gr.Button

    def values(self) -> list:
        """What a visitor edits."""
        return [self.free, self.choice, self.weight, self.negate]


@dataclass(frozen=True)
class Rows:
    state: gr.State         # list of state rows (ui/state.py), as the page last showed them
    widgets: list           # RowWidgets, one per possible row
    add: gr.Button

    def inputs(self) -> set:
        """What `current` reads: handlers get their values by component (a dict)."""
        return {self.state, *[box for w in self.widgets for box in w.values()]}

    def outputs(self) -> list:
        return [self.state, self.add, *[c for w in self.widgets
                                        for c in (w.group, *w.values(), *w.buttons.values())]]

    def current(self, values: dict, choices) -> list[dict]:
        """The rows as the boxes show them now, from the values of `inputs()` (an
        out-of-range or unreadable weight is kept as typed: the recipe refuses it with
        the row's name)."""
        rows = [dict(r) for r in values[self.state] or []]
        for row, w in zip(rows, self.widgets):
            text = values[w.choice] if choices else values[w.free]
            row["text"] = "" if text is None else str(text)
            if values[w.weight] is not None:
                row["beta" if row["negate"] else "weight"] = state.number_or_text(values[w.weight])
        return rows

    def view(self, rows: list[dict], choices, shown: list[dict] | None = None,
             new_choices: bool = True) -> dict:
        """Updates that make the page show `rows`; with `shown` (what the page shows
        now), a box that already shows its value is left alone, and the menus keep
        their concepts unless `new_choices`."""
        shown = shown or []
        full = len(rows) >= MAX_CONCEPTS
        updates = {self.state: rows,
                   self.add: gr.update(interactive=not full, value=f"At most {MAX_CONCEPTS} concepts"
                                       if full else "+ Add concept")}
        for n, w in enumerate(self.widgets, 1):
            if n > len(rows):
                updates[w.group] = gr.update(visible=False)
                continue
            row, before = rows[n - 1], (shown[n - 1] if n <= len(shown) else {})
            weight = _shown_weight(row)
            text = {} if before.get("text") == row["text"] else {"value": row["text"]}
            updates[w.group] = gr.update(visible=True, elem_classes=(
                ["concept-row", "muted"] if row["muted"] else ["concept-row"]))
            updates[w.free] = gr.update(visible=not choices, **({} if choices else text))
            updates[w.choice] = gr.update(visible=bool(choices), **(text if choices else {}),
                                          **({"choices": list(choices)}
                                             if choices and (new_choices or not before) else {}))
            kept = before and before["negate"] == row["negate"] and _shown_weight(before) == weight
            updates[w.weight] = gr.update(label=weight_label(n, row["negate"]),
                                          **({} if kept else {"value": weight}))
            updates[w.negate] = gr.update(**({} if before.get("negate") == row["negate"]
                                             else {"value": row["negate"]}))
            for action, button in w.buttons.items():
                updates[button] = gr.update(
                    value=("Unmute" if row["muted"] else "Mute") if action == "mute" else ACTIONS[action],
                    interactive=not ((action == "up" and n == 1)
                                     or (action == "down" and n == len(rows))
                                     or (action == "duplicate" and full)))
        return updates


def build() -> Rows:
    widgets = [_row(n) for n in range(1, MAX_CONCEPTS + 1)]
    with gr.Row():
        add = gr.Button("+ Add concept", elem_id="add-row", size="sm")
    return Rows(state=gr.State([]), widgets=widgets, add=add)


def wire(rows: Rows, info: gr.State, private: dict) -> None:
    """Each row's buttons and NOT box, and Add: read the boxes, change, show."""
    def act(action: str, index: int | None):
        def handler(values: dict):
            choices = (values[info] or {}).get("choices")
            shown = rows.current(values, choices)
            if action == "add":
                default = choices or [""]
                new = state.row_action(shown, "add", default_text=default[len(shown) % len(default)])
            else:
                new = state.row_action(shown, action, index)
            return rows.view(new, choices, shown, new_choices=False)
        return handler

    def negate(index: int):
        def handler(values: dict):
            choices = (values[info] or {}).get("choices")
            shown = rows.current(values, choices)
            ticked = values[rows.widgets[index].negate]
            new = [dict(r, negate=bool(ticked)) if i == index else r for i, r in enumerate(shown)]
            return rows.view(new, choices, shown, new_choices=False)   # the weight follows
        return handler

    # Unprocessed: Gradio would clamp or reject an out-of-range weight before we see it.
    events = {"queue": False, "preprocess": False, **private}
    inputs = {info, *rows.inputs()}
    rows.add.click(act("add", None), inputs, rows.outputs(), **events)
    for i, w in enumerate(rows.widgets):
        for action, button in w.buttons.items():
            button.click(act(action, i), inputs, rows.outputs(), **events)
        w.negate.input(negate(i), inputs, rows.outputs(), **events)
        w.free.submit(None, js=CLICK_GENERATE_JS)


def _row(n: int) -> RowWidgets:
    with gr.Group(elem_classes=["concept-row"], elem_id=f"concept-{n}", visible=n == 1) as group:
        with gr.Row(equal_height=True):
            # Only the shown one of the two is in the page, so both answer to one id.
            free = gr.Textbox("", label=f"Concept {n}", placeholder="a prompt", max_length=400,
                              elem_id=f"concept-{n}-text", scale=4, interactive=True)
            choice = gr.Dropdown([], value=None, allow_custom_value=True, label=f"Concept {n}",
                                 elem_id=f"concept-{n}-text", scale=4, interactive=True,
                                 visible=False)
            weight = gr.Slider(0, 10, step=0.05, value=1.0, label=weight_label(n, False),
                               elem_id=f"concept-{n}-weight", scale=3, interactive=True)
            negate = gr.Checkbox(False, label="NOT", elem_id=f"concept-{n}-not", scale=0,
                                 min_width=80, interactive=True)
        with gr.Row():
            buttons = {action: gr.Button(label, size="sm", elem_id=f"concept-{n}-{action}",
                                         min_width=40)
                       for action, label in ACTIONS.items()}
    return RowWidgets(group=group, free=free, choice=choice, weight=weight, negate=negate,
                      buttons=buttons)


def _shown_weight(row: dict):
    return row["beta"] if row["negate"] else row["weight"]


def weight_label(n: int, negate: bool) -> str:
    return f"Row {n} · β (NOT strength)" if negate else f"Row {n} · AND weight w"
