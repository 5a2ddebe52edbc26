// The demo page: plain JavaScript against the service's own API, no library and no other host.
"use strict";

const $ = (id) => document.getElementById(id);

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  node.append(...children);
  return node;
}

// A 4xx/5xx body says what is wrong in `detail`: a string, or pydantic's list of {loc, msg}.
function describeError(status, body) {
  const detail = body && body.detail;
  if (Array.isArray(detail)) return `${status}: ` + detail.map((d) => d.msg || JSON.stringify(d)).join("; ");
  return `${status}: ${detail || "the request failed"}`;
}

// A server with API keys answers 401 without one; the key typed here lives in this tab's sessionStorage.
const keyInput = $("api-key");
keyInput.value = sessionStorage.getItem("charserve-api-key") || "";
keyInput.addEventListener("change", () => sessionStorage.setItem("charserve-api-key", keyInput.value.trim()));

function headers(extra = {}) {
  const key = keyInput.value.trim();
  return { "content-type": "application/json", ...(key ? { authorization: `Bearer ${key}` } : {}), ...extra };
}

async function postJSON(path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: headers(),
    body: JSON.stringify(body),
  });
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    if (response.status === 401) $("key-panel").open = true;
    throw new Error(describeError(response.status, data));
  }
  return data;
}

function showError(target, error) {
  target.replaceChildren(element("span", { class: "error" }, error.message));
}

async function busy(form, work) {
  const button = form.querySelector("button");
  button.disabled = true;
  try {
    await work();
  } finally {
    button.disabled = false;
  }
}

// --- /correct: the input with each corrected word underlined, what it was and its alternatives on hover ---

function percent(confidence) {
  return `${Math.round(confidence * 100)}%`;
}

function correctionTip(correction) {
  const tip = element("span", { class: "tip", role: "tooltip" }, `was “${correction.original}”`);
  if (typeof correction.confidence === "number") tip.append(`, confidence ${percent(correction.confidence)}`);
  const alternatives = correction.alternatives || [];
  if (alternatives.length) {
    const list = element("ul");
    for (const alt of alternatives) {
      const text = typeof alt === "string" ? alt : alt.suggestion;
      const score = typeof alt.confidence === "number" ? ` (${percent(alt.confidence)})` : "";
      list.append(element("li", {}, text + score));
    }
    tip.append(element("br"), "alternatives:", list);
  }
  return tip;
}

// Offsets are into the input text: walk it, putting each correction's suggestion where its word stood.
function renderCorrected(input, corrections) {
  const parts = [];
  let at = 0;
  for (const c of [...corrections].sort((a, b) => a.start - b.start)) {
    parts.push(input.slice(at, c.start));
    const uncertain = typeof c.confidence === "number" && c.confidence < 0.5;
    const word = element("span", { class: uncertain ? "fix uncertain" : "fix", tabindex: "0" }, c.suggestion);
    word.title = `was “${c.original}”`;
    word.append(correctionTip(c));
    parts.push(word);
    at = c.end;
  }
  parts.push(input.slice(at));
  return parts;
}

$("correct-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const output = $("correct-output");
  const text = $("correct-input").value;
  busy(event.target, async () => {
    try {
      const { results } = await postJSON("/correct", { text });
      const [result] = results;
      const parts = renderCorrected(text, result.corrections);
      if (!result.corrections.length) parts.push(element("span", { class: "hint" }, "  (nothing to correct)"));
      output.replaceChildren(...parts);
    } catch (error) {
      showError(output, error);
    }
  });
});

// --- /poem with stream: server-sent events read from a POST, so fetch and a stream reader (EventSource only GETs) ---

function* parseEvents(chunk) {
  for (const block of chunk.split("\n\n")) {
    let name = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (line.startsWith("event:")) name = line.slice(6).trim();
      else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
    }
    if (data.length) yield { name, data: JSON.parse(data.join("\n")) };
  }
}

async function streamPoem(body, onChar, onPoem) {
  const response = await fetch("/poem", {
    method: "POST",
    headers: headers({ accept: "text/event-stream" }),
    body: JSON.stringify({ ...body, stream: true }),
  });
  if (!response.ok) throw new Error(describeError(response.status, await response.json().catch(() => null)));
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    const end = buffer.lastIndexOf("\n\n");
    if (end < 0) continue;
    const complete = buffer.slice(0, end);
    buffer = buffer.slice(end + 2);
    for (const event of parseEvents(complete)) {
      if (event.name === "char") onChar(event.data.char);
      else if (event.name === "poem") onPoem(event.data);
      else if (event.name === "error") throw new Error(event.data.detail);
    }
  }
}

$("poem-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const output = $("poem-output");
  const status = $("poem-status");
  const body = { form: $("poem-form-select").value, temperature: Number($("poem-temperature").value || 0) };
  const acrostic = $("poem-acrostic").value.trim();
  const prompt = $("poem-prompt").value.trim();
  const seed = $("poem-seed").value;
  if (acrostic) body.acrostic = acrostic;
  if (prompt) body.prompt = prompt;
  if (seed !== "") body.seed = Number(seed);
  output.textContent = "";
  status.textContent = "writing…";
  busy(event.target, async () => {
    let finished = false;
    try {
      await streamPoem(
        body,
        (char) => { output.textContent += char; },
        (poem) => {
          finished = true;
          output.textContent = poem.lines.join("\n");
          status.textContent = poem.seed === null ? "greedy (temperature 0)" : `seed ${poem.seed}`;
        },
      );
      if (!finished) status.textContent = "the stream ended before the poem did";
    } catch (error) {
      status.textContent = "";
      showError(output, error);
    }
  });
});

// --- /classify: a bar per type ---

function renderScores(name, result) {
  const rows = Object.entries(result.scores)
    .sort((a, b) => b[1] - a[1])
    .map(([label, score]) =>
      element(
        "div",
        { class: label === result.label ? "bar top" : "bar" },
        element("span", {}, label),
        element("span", { class: "track" }, element("span", { class: "fill", style: `width:${score * 100}%` })),
        element("span", { class: "value" }, score.toFixed(2)),
      ),
    );
  return element("div", { class: "name" }, element("strong", {}, `${name} → ${result.label}`), ...rows);
}

$("classify-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const output = $("classify-output");
  const texts = $("classify-input").value.split("\n").map((t) => t.trim()).filter(Boolean);
  busy(event.target, async () => {
    try {
      const { results } = await postJSON("/classify", { texts });
      output.replaceChildren(...results.map((result, i) => renderScores(texts[i], result)));
    } catch (error) {
      showError(output, error);
    }
  });
});
