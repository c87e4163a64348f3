// The service's page: each dropped or chosen photo is posted to /caption on its own, and shown
// as a thumbnail beside its caption and the beam's alternatives (or the service's error).
"use strict";

const results = document.getElementById("results");

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

async function caption(file) {
  const item = element("li", "result");
  const thumbnail = element("img");
  thumbnail.src = URL.createObjectURL(file);
  thumbnail.alt = file.name;
  const text = element("div", "text");
  const line = element("p", "caption", "captioning…");
  text.append(element("div", "name", file.name), line);
  item.append(thumbnail, text);
  results.prepend(item);

  const form = new FormData();
  form.append("file", file);
  try {
    const response = await fetch("/caption", { method: "POST", body: form });
    const answer = await response.json();
    if (!response.ok) {
      line.textContent = `error ${response.status}: ${answer.error}`;
      line.classList.add("error");
      return;
    }
    line.textContent = answer.caption;
    const alternatives = element("ol", "alternatives");
    for (const alternative of answer.alternatives) {
      const entry = element("li", "alternative", alternative.caption);
      entry.append(" ", element("span", "score", alternative.score.toFixed(3)));
      alternatives.append(entry);
    }
    text.append(alternatives, element("div", "name", `${answer.seconds.toFixed(2)} s`));
  } catch (error) {
    line.textContent = `error: ${error}`;
    line.classList.add("error");
  }
}

function captionAll(files) {
  for (const file of files) caption(file);
}

const drop = document.getElementById("drop");
const pick = document.getElementById("pick");
pick.addEventListener("change", () => { captionAll(pick.files); pick.value = ""; });
drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  captionAll(event.dataTransfer.files);
});

// The model and its decoding; a published model's headline (its card), with a note when the
// service decodes otherwise than its scores were measured.
const json = (response) => (response.ok ? response.json() : null);
Promise.all([fetch("/health").then(json), fetch("/model").then(json)]).then(([health, card]) => {
  const decoding = health.decoding;
  document.getElementById("model").textContent =
    `model ${health.model.path} (md5 ${health.model.md5.slice(0, 8)}), beam ${decoding.beam_size}`;
  if (card === null) return;
  const measured = card.model.decoding;
  const same = Object.keys(measured).every((key) => measured[key] === decoding[key]);
  const headline = document.getElementById("headline");
  headline.textContent = card.headline.text + (same ? "" :
    ` (measured with beam ${measured.beam_size}, length penalty ${measured.length_penalty}, ` +
    `at most ${measured.max_length} words; served otherwise)`);
  headline.hidden = false;
});
