() => {
  document.addEventListener("blur", event => {
    if (event.target.matches && event.target.matches("[id^='concept-'][id$='-weight'] input[type=number]"))
      event.stopPropagation();
  }, true);
  const name = () => {
    document.querySelectorAll("button[id^='concept-']").forEach(button => {
      const m = button.id.match(/^concept-(\d+)-(up|down|duplicate|mute|remove)$/);
      if (m) button.setAttribute("aria-label", `Row ${m[1]}: ${button.innerText.trim()}`);
    });
    document.querySelectorAll("[id^='concept-'][id$='-not'] input").forEach(box => {
      const m = box.closest("[id$='-not']").id.match(/^concept-(\d+)-not$/);
      if (m) box.setAttribute("aria-label", `Row ${m[1]}: NOT`);
    });
    const status = document.getElementById("status");
    if (status && !status.hasAttribute("aria-live")) {
      status.setAttribute("role", "status");
      status.setAttribute("aria-live", "polite");
    }
    const link = document.querySelector("#share-link textarea");
    if (link) link.setAttribute("aria-label", "Link to this recipe");
  };
  new MutationObserver(name).observe(document.body, {childList: true, subtree: true});
  name();
}
