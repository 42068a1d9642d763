() => {
  const bad = [];
  document.querySelectorAll("input[type=number]").forEach(box => {
    const text = box.value;
    if (box.validity.badInput || (text !== "" && !Number.isFinite(Number(text)))) {
      const block = box.closest(".block");
      const label = block && block.querySelector("[data-testid='block-info']");
      bad.push(label ? label.innerText.trim() : (box.getAttribute("aria-label") || "A number box"));
    }
  });
  const rows = [];
  for (let n = 1; document.getElementById(`concept-${n}`); n++) {
    const text = document.querySelector(`#concept-${n}-text input, #concept-${n}-text textarea`);
    const weight = document.querySelector(`#concept-${n}-weight input[type=number]`);
    const negate = document.querySelector(`#concept-${n}-not input`);
    rows.push({text: text ? text.value : null, weight: weight ? weight.value : null,
               negate: negate ? negate.checked : null});
  }
  return JSON.stringify({unreadable: [...new Set(bad)], rows});
}
