// Copy buttons (the API keys page): each copies the text of the element its data-copy names, or,
// where the clipboard is not available (plain http on another host than localhost), selects it.
// A file rather than an inline script: the pages' Content-Security-Policy runs no inline code.
for (const button of document.querySelectorAll("button.copy")) {
  button.addEventListener("click", async () => {
    const source = document.getElementById(button.dataset.copy);
    try {
      await navigator.clipboard.writeText(source.textContent);
      button.textContent = "Copied";
    } catch {
      const range = document.createRange();
      range.selectNodeContents(source);
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      button.textContent = "Selected: press Ctrl+C";
    }
  });
}
