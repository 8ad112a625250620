// optimem viewer: the few things a server-rendered page cannot do on its own. No dependencies.
"use strict";

function setupZoom() {
  const slider = document.querySelector("[data-zoom]");
  const image = document.querySelector("[data-zoom-image]");
  const label = document.querySelector("[data-zoom-label]");
  if (!slider || !image) return;
  const canvas = Number(image.dataset.canvas);
  const apply = () => {
    const factor = Number(slider.value);
    image.width = Math.round(canvas * factor);
    image.height = Math.round(canvas * factor);
    if (label) label.textContent = factor + "x";
  };
  slider.addEventListener("input", apply);
  apply();
}

function setupSearchKey() {
  const box = document.querySelector("[data-testid=search-input]");
  if (!box) return;
  document.addEventListener("keydown", (event) => {
    const typing = ["INPUT", "TEXTAREA"].includes(document.activeElement.tagName);
    if (event.key === "/" && !typing) {
      event.preventDefault();
      box.focus();
    }
  });
}

function setupReadAgain() {
  const form = document.querySelector("[data-read-again]");
  if (!form) return;
  form.addEventListener("submit", () => {
    const button = form.querySelector("button");
    button.disabled = true;
    button.textContent = "Reading…";
  });
}

document.addEventListener("DOMContentLoaded", () => {
  setupZoom();
  setupSearchKey();
  setupReadAgain();
});
