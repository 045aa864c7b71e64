// The studio's page: a Poe client for the file's bots (requests as Poe sends them, replies
// read from their event stream as Poe's own client shows them), and a look inside each
// message's run. Markdown by marked, made safe by DOMPurify; the stream parsed by
// eventsource-parser (all three vendored: see vendor/README.md).
import { marked } from "./vendor/marked/marked.esm.js";
import DOMPurify from "./vendor/dompurify/purify.es.mjs";
import { createParser } from "./vendor/eventsource-parser/index.js";

// The run's token, from the URL the studio printed: every request carries it (as a header, or
// in the URL where a header cannot go: pictures, the change stream). No cookie holds it, as a
// cookie would go to every other server on 127.0.0.1 too.
const TOKEN = new URLSearchParams(location.search).get("token") ?? "";
const call = (url, options = {}) =>
  fetch(url, { ...options, headers: { ...(options.headers ?? {}), "x-studio-token": TOKEN } });
const withToken = (url) => `${url}${url.includes("?") ? "&" : "?"}token=${encodeURIComponent(TOKEN)}`;
// Elements are looked up among the page's own: a bot's answer may hold an element with the same
// id (DOMPurify also renames those), and it must never stand in for the page's.
const own = new Map();
const $ = (id) => {
  if (!own.has(id)) own.set(id, document.getElementById(id));
  return own.get(id);
};
const el = (tag, { dataset = {}, ...props } = {}, ...children) => {
  const node = Object.assign(document.createElement(tag), props);
  Object.assign(node.dataset, dataset);
  for (const child of children) node.append(child);
  return node;
};
const newId = () => crypto.randomUUID().replaceAll("-", "");

const studio = {
  state: null, // /api/state
  bot: null, // the bot id chatted with
  chats: {}, // bot id -> {conversation, history, turns: [elements]}
  params: {}, // bot id -> {parameter name: value}
  pending: [], // attachments of the next message
  busy: new Set(), // the bots answering now: one message at a time each, as on Poe
  run: null, // the run shown inside
};
window.studio = studio; // for the browser tests: what the page knows

// --- the file and its bots --------------------------------------------------------------

async function loadState() {
  const response = await call("/api/state");
  studio.state = await response.json();
  const { state } = studio;
  $("version").textContent = state.version ? `version ${state.version}` : "no valid version";
  $("version").dataset.changes = state.changes;
  showProblems(state.problems);
  $("warnings").hidden = state.warnings.length === 0;
  $("warnings-title").textContent = `${state.warnings.length} warning${state.warnings.length === 1 ? "" : "s"} from Poe's model catalog`;
  $("warnings-list").replaceChildren(...state.warnings.map((p) => el("li", { textContent: p.text })));
  if (!state.bots.some((b) => b.id === studio.bot)) studio.bot = state.bots[0]?.id ?? null;
  $("bots").replaceChildren(
    ...state.bots.map((bot) =>
      el("button", {
        type: "button",
        textContent: `/${bot.id}`,
        className: bot.id === studio.bot ? "on" : "",
        title: `worst case ${bot.outline.worst_case} calls per message`,
        onclick: () => pick(bot.id),
      }),
    ),
  );
  $("mode").querySelector('[value="live"]').disabled = !state.modes.live;
  $("mode").querySelector('[value="live"]').textContent = state.modes.live
    ? "Live: spends your Poe points"
    : "Live (export POE_API_KEY first)";
  $("case").replaceChildren(
    el("option", { value: "", textContent: state.answers_file ? `answers of ${state.answers_file}` : "no case: echo" }),
    ...state.cases.map((c) => el("option", { value: c.case, textContent: `${c.bot}: ${c.name}` })),
  );
  $("tests-file").textContent = state.cases_file;
  if (studio.bot) showBot();
}

function showProblems(problems) {
  $("problems").hidden = problems.length === 0;
  $("problems-title").textContent = `${problems.length} problem${problems.length === 1 ? "" : "s"} in the file.`;
  $("problems-list").replaceChildren(...problems.map((p) => el("li", { textContent: p.text })));
}

function bot() {
  return studio.state.bots.find((b) => b.id === studio.bot);
}

function chat() {
  studio.chats[studio.bot] ??= { conversation: newId(), history: [], turns: [] };
  return studio.chats[studio.bot];
}

function pick(botId) {
  studio.bot = botId;
  for (const button of $("bots").children) button.className = button.textContent === `/${botId}` ? "on" : "";
  showBot();
}

function showBot() {
  const current = bot();
  $("send").disabled = studio.busy.has(current.id);
  if (studio.run?.bot !== current.id) clearInside();
  studio.params[current.id] ??= defaults(current.controls);
  renderControls(current);
  const intro = current.introduction
    ? [el("div", { className: "message bot intro" }, markdown(current.introduction))]
    : [];
  $("messages").replaceChildren(...intro, ...chat().turns);
  $("suggestions").replaceChildren();
  $("attach").disabled = !current.allow_attachments;
  renderGraph();
}

function clearInside() {
  studio.run = null;
  const hint = "Send a message: each step, round, sample and try appears here as it runs.";
  $("tab-trace").replaceChildren(el("p", { className: "hint", textContent: hint }));
  $("tab-calls").replaceChildren();
  $("tab-sent").replaceChildren();
}

function follow() {
  // the chat follows a growing reply, as Poe's does, unless the user scrolled up to read
  const box = $("messages");
  if (box.scrollHeight - box.scrollTop - box.clientHeight < 120) box.scrollTop = box.scrollHeight;
}

// --- Poe's parameter controls as widgets ------------------------------------------------

function* controlsOf(controls) {
  for (const section of controls?.sections ?? []) {
    for (const control of section.controls ?? []) yield* inner(control);
    for (const tab of section.tabs ?? []) for (const control of tab.controls) yield* inner(control);
  }
  function* inner(control) {
    if (control.control === "condition") yield* control.controls;
    else yield control;
  }
}

function defaults(controls) {
  const values = {};
  for (const c of controlsOf(controls)) {
    if (c.parameter_name && c.default_value !== undefined && c.default_value !== null) values[c.parameter_name] = c.default_value;
  }
  return values;
}

function holds(condition, values) {
  const side = (s) => ("literal" in s ? s.literal : values[s.parameter_name]);
  const [a, b] = [side(condition.left), side(condition.right)];
  return { eq: a === b, ne: a !== b, gt: a > b, ge: a >= b, lt: a < b, le: a <= b }[condition.comparator];
}

function renderControls(current) {
  const values = studio.params[current.id];
  const conditional = JSON.stringify(current.controls ?? {}).includes('"condition"');
  const widget = (c) => {
    if (c.control === "divider") return el("hr");
    if (c.control === "condition") return holds(c.condition, values) ? el("div", {}, ...c.controls.map(widget)) : el("span");
    const set = (value) => {
      values[c.parameter_name] = value;
      if (conditional) renderControls(current); // a condition may show or hide controls
    };
    const value = values[c.parameter_name];
    let input;
    if (c.control === "drop_down") {
      input = el("select", { onchange: (e) => set(e.target.value) },
        ...c.options.map((o) => el("option", { value: o.value, textContent: o.name, selected: o.value === value })));
    } else if (c.control === "toggle_switch") {
      input = el("input", { type: "checkbox", role: "switch", checked: !!value, onchange: (e) => set(e.target.checked) });
    } else if (c.control === "slider") {
      input = el("span", { className: "slider" },
        el("input", { type: "range", dataset: { param: c.parameter_name }, min: c.min_value, max: c.max_value, step: c.step, value: value ?? c.min_value,
          oninput: (e) => { e.target.nextSibling.textContent = e.target.value; values[c.parameter_name] = Number(e.target.value); } }),
        el("output", { textContent: value ?? c.min_value }));
    } else if (c.control === "text_field") {
      input = el("input", { type: "text", value: value ?? "", placeholder: c.placeholder ?? "", oninput: (e) => set(e.target.value) });
    } else if (c.control === "text_area") {
      input = el("textarea", { value: value ?? "", placeholder: c.placeholder ?? "", oninput: (e) => set(e.target.value) });
    } else if (c.control === "aspect_ratio") {
      input = el("span", { className: "ratios" }, ...c.options.map((o) => {
        const name = o.value ?? `${o.width}:${o.height}`;
        const scale = 22 / Math.max(o.width, o.height);
        return el("button", { type: "button", className: name === value ? "on" : "", title: name,
          onclick: (e) => {
            for (const b of e.currentTarget.parentNode.children) b.classList.toggle("on", b === e.currentTarget);
            set(name);
          } },
          el("i", { style: `width:${o.width * scale}px;height:${o.height * scale}px` }), name);
      }));
    } else {
      return el("span", { textContent: `(${c.control})` });
    }
    input.dataset.param ??= c.parameter_name;
    return el("label", { className: `control ${c.control}`, title: c.description ?? "" }, el("span", { textContent: c.label }), input);
  };
  const sections = (current.controls?.sections ?? []).map((section) => {
    const body = el("div", { className: "section" }, ...(section.controls ?? []).map(widget));
    if (section.tabs) {
      const panes = section.tabs.map((tab, i) => el("div", { className: "pane", hidden: i > 0 }, ...tab.controls.map(widget)));
      const heads = section.tabs.map((tab, i) => el("button", { type: "button", textContent: tab.name ?? `Tab ${i + 1}`,
        className: i === 0 ? "on" : "",
        onclick: () => {
          panes.forEach((p, j) => { p.hidden = j !== i; });
          heads.forEach((h, j) => h.classList.toggle("on", j === i));
        } }));
      body.append(el("div", { className: "tabheads" }, ...heads), ...panes);
    }
    if (!section.name) return body;
    return el("details", { open: !section.collapsed_by_default }, el("summary", { textContent: section.name }), body);
  });
  $("controls").replaceChildren(...sections);
}

// --- a message, as Poe sends it, and its reply, as Poe shows it -------------------------

function markdown(text, files = []) {
  // inline pictures: the bot's text names a file by its inline_ref, as a Markdown reference
  const refs = files.filter((f) => f.inline_ref && fileUrl(f.url)).map((f) => `[${f.inline_ref}]: <${fileUrl(f.url)}>`);
  const source = refs.length ? `${text}\n\n${refs.join("\n")}\n` : text;
  const div = el("div", { className: "markdown" });
  div.innerHTML = DOMPurify.sanitize(marked.parse(source, { gfm: true, breaks: false }), {
    SANITIZE_NAMED_PROPS: true, // a bot's id="text" becomes id="user-content-text"
  });
  return div;
}

function fileUrl(url) {
  // a bot's file: on Poe (http, https) as it is; made on this machine (file:), through the
  // studio; anything else (javascript:, data:...) is not a file to show
  let parsed;
  try { parsed = new URL(url); } catch { return null; }
  if (parsed.protocol === "http:" || parsed.protocol === "https:") return parsed.href;
  if (parsed.protocol !== "file:") return null;
  try {
    return withToken(`/files?path=${encodeURIComponent(decodeURIComponent(parsed.pathname))}`);
  } catch { return null; } // a malformed %-escape
}

function fileView(file) {
  const href = fileUrl(file.url);
  if (href === null) return el("span", { className: "file", textContent: `📎 ${file.name} (not a file URL)` });
  if (file.content_type?.startsWith("image/")) {
    return el("a", { href, target: "_blank", rel: "noopener", className: "file picture" }, el("img", { src: href, alt: file.name }));
  }
  return el("a", { href, target: "_blank", rel: "noopener", className: "file", textContent: `📎 ${file.name}` });
}

async function send(text) {
  const botId = studio.bot;
  if (!botId || studio.busy.has(botId) || (!text.trim() && !studio.pending.length)) return false;
  studio.busy.add(botId);
  $("send").disabled = true;
  try {
    await converse(text);
  } finally { // whatever a reply held, the chat goes on
    studio.busy.delete(botId);
    if (studio.bot === botId) $("send").disabled = false;
  }
  return true;
}

async function converse(text) {
  $("suggestions").replaceChildren();
  const current = bot();
  const conversation = chat();
  const mode = $("mode").value;
  const caseIndex = mode === "scripted" ? $("case").value : "";
  const user = {
    role: "user",
    content: text,
    content_type: "text/markdown",
    message_id: newId(),
    parameters: { ...studio.params[current.id] },
    attachments: studio.pending,
  };
  studio.pending = [];
  $("pending").replaceChildren();
  const messageId = newId();
  const request = {
    version: "1.2",
    type: "query",
    query: [...conversation.history, user],
    user_id: "studio",
    conversation_id: conversation.conversation,
    message_id: messageId,
    access_key: "",
  };
  const userView = el("div", { className: "message user" }, el("div", { className: "plain", textContent: text }), ...user.attachments.map(fileView));
  const reply = { text: "", files: [], suggestions: [], metadata: null, error: null };
  const body = el("div", { className: "markdown" });
  const filesView = el("div", { className: "files" });
  const notice = el("div", { className: "notice", hidden: true });
  const replyView = el("div", { className: "message bot streaming", dataset: { message: messageId } }, body, filesView, notice);
  conversation.turns.push(userView, replyView);
  if (studio.bot === current.id) {
    $("messages").append(userView, replyView);
    $("messages").scrollTop = $("messages").scrollHeight;
  }
  let drawn = null; // one Markdown render per frame, however fast the text grows
  const redraw = () => {
    drawn ??= requestAnimationFrame(() => {
      body.replaceChildren(...markdown(reply.text, reply.files).childNodes);
      drawn = null;
      if (studio.bot === current.id) follow();
    });
  };
  const polling = setInterval(() => studio.bot === current.id && showRun(messageId), 250);
  const query = new URLSearchParams({ mode, message: messageId });
  if (caseIndex !== "") query.set("case", caseIndex);
  try {
    const response = await call(`/poe/${current.id}?${query}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(request),
    });
    if (!response.ok) {
      reply.error = { text: `HTTP ${response.status}: ${await response.text()}` };
    } else {
      const parser = createParser({ onEvent: (event) => onEvent(event, reply, redraw, filesView) });
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        parser.feed(value);
      }
    }
  } catch (e) {
    reply.error = { text: `the reply could not be read (${e.message})` };
  } finally {
    clearInterval(polling);
  }
  try {
    await finish(reply, { user, messageId, mode, conversation, body, notice, replyView, drawn });
  } finally {
    replyView.classList.remove("streaming");
    replyView.dataset.done = "true";
  }
}

async function finish(reply, { user, messageId, mode, conversation, body, notice, replyView, drawn }) {
  if (drawn) cancelAnimationFrame(drawn);
  body.replaceChildren(...markdown(reply.text, reply.files).childNodes);
  if (reply.error) {
    notice.hidden = false;
    const kind = reply.error.error_type ? ` (${reply.error.error_type})` : "";
    const retry = reply.error.allow_retry === false ? "; Poe offers no retry" : "";
    notice.textContent = `Error${kind}: ${reply.error.text}${retry}`;
    replyView.classList.add("failed");
  }
  $("suggestions").replaceChildren(
    ...reply.suggestions.map((s) => el("button", { type: "button", textContent: s, onclick: () => send(s) })),
  );
  if (!reply.error) {
    conversation.history.push(user, { role: "bot", content: reply.text, content_type: "text/markdown", message_id: messageId, metadata: reply.metadata });
  }
  await showRun(messageId);
  if (mode === "live") setTimeout(() => showRun(messageId), 1500); // the points, once Poe tells
}

function onEvent(event, reply, redraw, filesView) {
  let data = {};
  try { data = JSON.parse(event.data || "{}"); } catch { return; }
  switch (event.event) {
    case "text": reply.text += data.text; redraw(); break;
    case "replace_response": reply.text = data.text; redraw(); break;
    case "suggested_reply": reply.suggestions.push(data.text); break;
    case "file":
      reply.files.push(data);
      if (!data.inline_ref) filesView.append(fileView(data));
      redraw();
      break;
    case "data": reply.metadata = data.metadata; break;
    case "error": reply.error = data; break;
    default: break; // meta, done: nothing to show
  }
}

// --- inside a message: its trace, calls, what was sent and answered, the graph -----------

async function showRun(messageId) {
  const response = await call(`/api/runs/${messageId}`);
  if (!response.ok) return;
  studio.run = await response.json();
  renderRun(studio.run);
}

function renderRun(run) {
  renderTrace(run);
  renderCalls(run);
  renderSent(run);
  renderGraph();
}

function depth(run, entry) {
  let d = 0;
  for (let p = entry.parent; p !== null && p !== undefined; p = run.entries[p].parent) d += 1;
  return d;
}

function renderTrace(run) {
  const tries = {};
  for (const e of run.entries) if (e.kind === "try") tries[e.parent] = (tries[e.parent] ?? 0) + 1;
  // in tree order: each entry under its parent (a round above its steps), siblings by start
  const children = {};
  run.entries.forEach((e, i) => (children[e.parent ?? "root"] ??= []).push({ ...e, i }));
  const ordered = [];
  const walk = (key) => {
    for (const e of (children[key] ?? []).sort((a, b) => a.start - b.start)) {
      ordered.push(e);
      walk(e.i);
    }
  };
  walk("root");
  const rows = ordered.filter((e) => e.kind !== "try" || tries[e.parent] > 1);
  const total = Math.max(0.001, ...rows.map((e) => e.start + e.seconds));
  const table = el("table", { className: "waterfall" },
    el("tr", {}, ...["step", "kind", "bot", "time", "", "calls", "outcome"].map((h) => el("th", { textContent: h }))));
  for (const e of rows) {
    const bar = el("i", { style: `left:${(e.start / total) * 100}%;width:${Math.max(0.6, (e.seconds / total) * 100)}%` });
    table.append(el("tr", { className: `${e.running ? "running" : ""} ${e.outcome.startsWith("failed") ? "failed" : ""}`, dataset: { step: e.step, kind: e.kind } },
      el("td", { textContent: e.label, style: `padding-left:${0.4 + depth(run, e) * 0.9}em` }),
      el("td", { textContent: e.kind }),
      el("td", { textContent: e.bot ?? "" }),
      el("td", { className: "bar" }, bar),
      el("td", { textContent: `${e.seconds.toFixed(2)} s` }),
      el("td", { textContent: e.calls }),
      el("td", { textContent: e.running ? "running" : e.outcome + (e.detail ? ` (${e.detail})` : "") })));
  }
  const head = el("p", { className: "summary" }, `${run.test ? `test “${run.test}” · ` : ""}/${run.bot} · ${run.done ? (run.error ? "failed" : "done") : "running"} · ${run.seconds.toFixed(2)} s · ${run.calls} of ${run.worst_case} calls`);
  $("tab-trace").replaceChildren(head, table);
}

function renderCalls(run) {
  const rows = Object.entries(run.declared).map(([name, declared]) =>
    el("tr", {}, el("td", { textContent: name }), el("td", { textContent: run.per_bot[name] ?? 0 }), el("td", { textContent: declared })));
  const share = Math.min(100, (run.calls / Math.max(1, run.worst_case)) * 100);
  const points = run.points === null || run.points === undefined ? [] : [el("p", { className: "points", textContent: `${run.points} points spent (Poe's usage API)` })];
  $("tab-calls").replaceChildren(
    el("p", { className: "summary", id: "calls-used", textContent: `${run.calls} calls used of ${run.worst_case} (the worst case declared to Poe)` }),
    el("div", { className: "meter" }, el("i", { style: `width:${share}%` })),
    el("table", {}, el("tr", {}, ...["bot", "used", "declared"].map((h) => el("th", { textContent: h }))), ...rows),
    ...points);
}

function pre(label, text) {
  return el("div", {}, el("b", { textContent: label }), el("pre", { textContent: text }));
}

function renderSent(run) {
  const cards = run.entries.filter((e) => e.kind === "try").map((e) => {
    const sent = e.sent ?? {};
    const parts = [el("h4", { textContent: `${e.bot} · ${run.entries[e.parent]?.label ?? e.path} · ${e.label} · ${e.running ? "running" : e.outcome}` })];
    if (sent.system) parts.push(pre("system", sent.system));
    parts.push(pre("prompt", sent.prompt ?? ""));
    if (sent.parameters && Object.keys(sent.parameters).length) parts.push(pre("parameters", JSON.stringify(sent.parameters, null, 1)));
    if (sent.files?.length) parts.push(pre("files", sent.files.map((f) => `${f.name} (${f.content_type})`).join("\n")));
    if (sent.history) parts.push(pre(`history (${sent.history} earlier messages; the last shown)`, sent.recent.map((m) => `${m.role}: ${m.content}`).join("\n")));
    parts.push(pre("answered", e.answer ?? ""));
    return el("div", { className: "card", dataset: { bot: e.bot } }, ...parts);
  });
  $("tab-sent").replaceChildren(...(cards.length ? cards : [el("p", { className: "hint", textContent: "No dependency was called." })]));
}

function renderGraph() {
  const current = bot();
  if (!current) return;
  const run = studio.run && studio.run.bot === current.id ? studio.run : null;
  // a step run several times (rounds, items) shows the most telling of its states
  const rank = { skipped: 0, done: 1, failed: 2, running: 3 };
  const state = {};
  for (const e of run?.entries ?? []) {
    const now = e.running ? "running" : e.outcome.startsWith("failed") ? "failed" : ["skipped", "cancelled"].includes(e.outcome) ? "skipped" : "done";
    if (!(e.step in state) || rank[now] > rank[state[e.step]]) state[e.step] = now;
  }
  const box = (step) => {
    const name = step.id ? `${step.id}` : step.kind;
    const title = step.bot ? `${name} · ${step.bot}` : `${name} · ${step.kind}`;
    const node = el("div", { className: `box ${step.kind} ${state[step.path] ?? ""}`, dataset: { path: step.path } },
      el("div", { className: "title", textContent: title }),
      ...step.notes.map((n) => el("div", { className: "note", textContent: n })));
    if (step.branches.length) {
      node.append(el("div", { className: "branches" }, ...step.branches.map((b) =>
        el("div", { className: "branch" }, el("div", { className: "label", textContent: b.name }), ...b.steps.map(box)))));
    }
    return node;
  };
  $("tab-graph").replaceChildren(
    el("div", { className: "graph" },
      el("div", { className: "box start", textContent: `/${current.id}: the user's message` }),
      ...current.outline.steps.map(box),
      el("div", { className: "box end", textContent: `reply (${current.outline.worst_case} calls at most)` })));
}

// --- the pipeline tests ----------------------------------------------------------------

async function runTests() {
  $("run-tests").disabled = true;
  $("tests").replaceChildren(el("p", { className: "hint", textContent: "running…" }));
  const response = await call("/api/tests", { method: "POST" });
  const found = await response.json();
  $("run-tests").disabled = false;
  if (!response.ok) {
    $("tests").replaceChildren(el("p", { className: "notice", textContent: found.detail }));
    return;
  }
  if (found.missing) {
    $("tests").replaceChildren(el("p", { className: "hint", textContent: found.missing }));
    return;
  }
  const problems = found.problems.map((p) => el("li", { textContent: p.text }));
  const results = found.results.map((r) => el("div", { className: `result ${r.passed ? "pass" : "fail"}` },
    el("b", { textContent: `${r.passed ? "PASS" : "FAIL"}  ${r.bot}: ${r.name}` }),
    el("span", { className: "where", textContent: ` ${r.where} · ${r.run ? `${r.run.calls} calls` : ""}` }),
    ...r.failures.map((f) => el("div", { className: "failure", textContent: f })),
    el("button", { type: "button", textContent: "trace", onclick: () => {
      studio.run = { ...r.run, test: `${r.bot}: ${r.name}` };
      renderRun(studio.run);
      tab("trace");
    } }),
    el("button", { type: "button", textContent: "replay in chat", onclick: () => replay(r.case) })));
  const passed = found.results.filter((r) => r.passed).length;
  $("tests").replaceChildren(
    el("p", { className: "summary", textContent: `${passed} passed, ${found.results.length - passed} failed` }),
    ...(problems.length ? [el("ul", { className: "problems" }, ...problems)] : []),
    ...results);
}

function replay(index) {
  const found = studio.state.cases.find((c) => c.case === index);
  pick(found.bot);
  $("mode").value = "scripted";
  $("case").hidden = false;
  $("case").value = String(index);
  studio.chats[found.bot] = { conversation: newId(), history: [], turns: [] };
  for (const turn of found.history) {
    studio.chats[found.bot].history.push({ role: "user", content: turn.user, content_type: "text/markdown" }, { role: "bot", content: turn.bot, content_type: "text/markdown" });
  }
  Object.assign(studio.params[found.bot], found.params);
  showBot();
  send(found.message);
}

// --- the page's wiring -------------------------------------------------------------------

function tab(name) {
  for (const b of document.querySelectorAll(".tabs button")) b.classList.toggle("on", b.dataset.tab === name);
  for (const t of document.querySelectorAll(".tab")) t.classList.toggle("on", t.id === `tab-${name}`);
}

async function attach(files) {
  for (const file of files) {
    const query = new URLSearchParams({ name: file.name, mode: $("mode").value });
    const response = await call(`/api/upload?${query}`, {
      method: "POST", headers: { "content-type": file.type || "application/octet-stream" }, body: file,
    });
    let found;
    try { found = await response.json(); } catch { found = { detail: `HTTP ${response.status}` }; }
    if (!response.ok) {
      $("pending").append(el("span", { className: "chip failed", textContent: `${file.name}: ${found.detail}` }));
      continue;
    }
    studio.pending.push(found);
    $("pending").append(el("span", { className: "chip", textContent: `📎 ${found.name}` }));
  }
}

document.addEventListener("DOMContentLoaded", async () => {
  for (const b of document.querySelectorAll(".tabs button")) b.onclick = () => tab(b.dataset.tab);
  $("composer").onsubmit = (e) => {
    e.preventDefault();
    if (studio.busy.has(studio.bot)) return; // kept in the box until the reply has ended
    const text = $("text").value;
    $("text").value = "";
    send(text);
  };
  $("text").onkeydown = (e) => {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("composer").requestSubmit(); }
  };
  $("attach").onchange = (e) => { attach([...e.target.files]); e.target.value = ""; };
  $("reset").onclick = () => { studio.chats[studio.bot] = null; clearInside(); showBot(); };
  $("mode").onchange = () => {
    studio.pending = []; // a file is kept here for simulated bots, uploaded to Poe for live ones
    $("pending").replaceChildren();
    $("case").hidden = $("mode").value !== "scripted";
    $("live-warning").hidden = $("mode").value !== "live";
    document.body.classList.toggle("live", $("mode").value === "live");
  };
  $("case").onchange = () => {
    const found = studio.state.cases.find((c) => String(c.case) === $("case").value);
    if (!found) return;
    if (found.bot !== studio.bot) pick(found.bot); // a case scripts its own bot
    $("text").value = found.message;
  };
  $("run-tests").onclick = runTests;
  await loadState();
  new EventSource(withToken("/api/changes")).addEventListener("change", (event) => {
    if (JSON.parse(event.data).changes !== studio.state.changes) loadState();
  });
  document.body.dataset.ready = "true";
});
