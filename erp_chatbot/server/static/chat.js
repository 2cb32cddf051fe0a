// The chat view: each question goes to <path>/stream in this page's session; the answer is shown as
// it streams, rendered as Markdown, then its sources and the grounding note apart from it.
"use strict";

const chainPath = document.querySelector('meta[name="erp-path"]').content;
const conversation = document.getElementById("conversation");
const keyField = document.getElementById("api-key");
keyField.value = sessionStorage.getItem("erp-api-key") || "";
keyField.addEventListener("change", () => sessionStorage.setItem("erp-api-key", keyField.value.trim()));
let sessionId = newSessionId();

function newSessionId() {
  return "chat-" + crypto.getRandomValues(new Uint32Array(4)).reduce((s, n) => s + n.toString(16).padStart(8, "0"), "");
}

// --- Markdown: the subset the documents and answers use. Text is escaped first, so no HTML
// from a document or an answer ever reaches the page as markup.
function escapeHtml(text) {
  return text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

function inline(text) {
  return escapeHtml(text)
    .replace(/`([^`]+)`/g, "<code>$1</code>")
    .replace(/\*\*([^*]+)\*\*/g, "<strong>$1</strong>")
    .replace(/(^|[^*\w])\*([^*\s][^*]*)\*/g, "$1<em>$2</em>")
    .replace(/\[([^\]]+)\]\((https?:\/\/[^\s)]+)\)/g, '<a href="$2" rel="noopener noreferrer" target="_blank">$1</a>');
}

function renderMarkdown(markdown) {
  const html = [];
  let list = null; // "ol" or "ul" while inside a list
  let paragraph = [];
  const flush = () => {
    if (paragraph.length) html.push("<p>" + paragraph.map(inline).join("<br>") + "</p>");
    paragraph = [];
  };
  const closeList = () => {
    if (list) html.push(`</${list}>`);
    list = null;
  };
  for (const line of markdown.split("\n")) {
    const item = line.match(/^\s*(\d+[.)]|[-*+•])\s+(.*)$/);
    const heading = line.match(/^(#{1,4})\s+(.*)$/);
    if (item) {
      flush();
      const kind = /\d/.test(item[1]) ? "ol" : "ul";
      if (list !== kind) {
        closeList();
        html.push(kind === "ol" ? `<ol start="${parseInt(item[1], 10)}">` : "<ul>");
        list = kind;
      }
      html.push("<li>" + inline(item[2]) + "</li>");
    } else if (heading) {
      flush();
      closeList();
      html.push(`<h${heading[1].length + 2}>${inline(heading[2])}</h${heading[1].length + 2}>`);
    } else if (/^\s*(---+|\*\*\*+)\s*$/.test(line)) {
      flush();
      closeList();
      html.push("<hr>");
    } else if (!line.trim()) {
      flush();
      closeList();
    } else if (list && /^\s+/.test(line)) {
      html[html.length - 1] = html[html.length - 1].replace(/<\/li>$/, "<br>" + inline(line.trim()) + "</li>");
    } else {
      closeList();
      paragraph.push(line.replace(/^>\s?/, ""));
    }
  }
  flush();
  closeList();
  return html.join("\n");
}

// --- The conversation
function addTurn(kind, text) {
  const turn = document.createElement("section");
  turn.className = "turn " + kind;
  turn.textContent = text || "";
  conversation.appendChild(turn);
  turn.scrollIntoView({ block: "end" });
  return turn;
}

function showAnswer(turn, output, done) {
  const note = (output.grounding && output.grounding.note) || "";
  const answer = note && output.answer.endsWith(note) ? output.answer.slice(0, -note.length) : output.answer || "";
  turn.innerHTML = `<div class="answer">${renderMarkdown(answer)}</div>`;
  turn.classList.toggle("pending", !done);
  if (note.trim()) {
    turn.insertAdjacentHTML("beforeend", `<div class="note">${renderMarkdown(note.trim())}</div>`);
  }
  if (output.sources && output.sources.length) {
    const items = output.sources.map((s) => `<li>${escapeHtml(s.title)} <small>(${escapeHtml(s.source)})</small></li>`);
    const label = output.language === "ko" ? "출처" : "Sources";
    turn.insertAdjacentHTML("beforeend", `<div class="sources">${label}<ol>${items.join("")}</ol></div>`);
  }
}

function merge(output, chunk) {
  for (const [key, value] of Object.entries(chunk)) {
    output[key] = key === "answer" && key in output ? output[key] + value : value;
  }
}

// LangServe's stream: server-sent events "data" (one output chunk each), "error", "end".
async function* events(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) !== -1) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const event = (block.match(/^event: ?(.*)$/m) || [])[1] || "message";
      const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart()).join("\n");
      yield { event, data };
    }
  }
}

async function ask(question) {
  addTurn("user", question);
  const turn = addTurn("assistant pending");
  const headers = { "Content-Type": "application/json" };
  if (keyField.value.trim()) headers["X-API-Key"] = keyField.value.trim();
  const body = { input: { question }, config: { configurable: { session_id: sessionId } } };
  const output = { answer: "" };
  try {
    const response = await fetch(`${chainPath}/stream`, { method: "POST", headers, body: JSON.stringify(body) });
    if (!response.ok) throw new Error(await errorText(response));
    for await (const { event, data } of events(response)) {
      if (event === "data") merge(output, JSON.parse(data));
      if (event === "error") throw new Error(JSON.parse(data).message || data);
      showAnswer(turn, output, event === "end");
    }
    showAnswer(turn, output, true);
    turn.dataset.done = "true";
  } catch (error) {
    turn.classList.remove("pending");
    turn.insertAdjacentHTML("beforeend", `<p class="error">${escapeHtml(String(error.message || error))}</p>`);
    turn.dataset.done = "error";
  }
}

async function errorText(response) {
  const text = await response.text();
  try {
    const detail = JSON.parse(text).detail;
    return `${response.status}: ${typeof detail === "string" ? detail : JSON.stringify(detail)}`;
  } catch {
    return `${response.status}: ${text}`;
  }
}

document.getElementById("ask").addEventListener("submit", async (submitted) => {
  submitted.preventDefault();
  const field = document.getElementById("question");
  const question = field.value.trim();
  if (!question) return;
  field.value = "";
  field.disabled = true;
  await ask(question);
  field.disabled = false;
  field.focus();
});
document.getElementById("question").addEventListener("keydown", (key) => {
  if (key.key === "Enter" && !key.shiftKey && !key.isComposing) {
    key.preventDefault();
    document.getElementById("ask").requestSubmit();
  }
});
document.getElementById("new-session").addEventListener("click", () => {
  sessionId = newSessionId();
  conversation.replaceChildren();
});
