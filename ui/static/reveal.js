() => {
  const top = document.getElementById("progress"), preview = document.getElementById("preview");
  const bar = document.getElementById("action-bar");
  if (!top || !preview) return;
  // The progress line grows a bar when the run starts: leave room for it.
  const room = 24, bottom = window.innerHeight - (bar ? bar.offsetHeight : 0) - room;
  const first = top.getBoundingClientRect().top, last = preview.getBoundingClientRect().bottom;
  if (first < 0 || last > bottom) window.scrollBy(0, first - 8);
}
