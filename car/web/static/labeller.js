// The labeller: keyboard-first; every action is one POST, run strictly in order (a promise chain).
"use strict";
const TOKEN = document.querySelector('meta[name="car-token"]').content;
const $ = (id) => document.getElementById(id);
const lab = { items: [], cur: 0, anchor: 0, pending: 0, threshold: null, hasModel: false, counts: null };
window.carLabel = lab;
let chain = Promise.resolve();

function post(path, body) {
  return fetch(path, {
    method: "POST", credentials: "same-origin", cache: "no-store",
    headers: { "X-Car-Token": TOKEN, "Content-Type": "application/json" },
    body: JSON.stringify(body || {}),
  }).then((r) => r.json());
}
function enqueue(work) {
  lab.pending += 1;
  chain = chain.then(work).catch((e) => console.error(e)).finally(() => { lab.pending -= 1; });
}
function nextOpen(from) {
  for (let i = from; i < lab.items.length; i++) if (lab.items[i].label === null) return i;
  for (let i = 0; i < from; i++) if (lab.items[i].label === null) return i;
  return Math.min(from, lab.items.length - 1);
}
function name(label) { return label === 0 ? "GO" : label === 1 ? "STOP" : label === "skip" ? "skipped" : "not labelled"; }
function fmt(p) { return p === null || p === undefined ? "—" : p.toFixed(2); }

function show() {
  const it = lab.items[lab.cur];
  if (!it) return;
  $("frame").src = "/api/frame/" + it.i;
  if (lab.items[lab.cur + 1]) new Image().src = "/api/frame/" + lab.items[lab.cur + 1].i;
  $("where").textContent = (lab.cur + 1) + " / " + lab.items.length + "   " + it.log + "  tick " + it.seq;
  $("label").textContent = "label: " + name(it.label);
  $("label").className = "suggest big " + (it.label === 0 ? "go" : it.label === 1 ? "stop" : "");
  $("logged").textContent = "the car's network said " + it.network + " (P(STOP) " + fmt(it.p_logged) +
    "), the car did " + it.decision;
  if (lab.hasModel && it.p_model !== null) {
    const says = it.p_model > lab.threshold ? "STOP" : "GO";
    $("suggestion").textContent = "model suggests " + says + " (P(STOP) " + fmt(it.p_model) + ", threshold " +
      fmt(lab.threshold) + ")" + (says !== it.network ? "  — disagrees with the car's network" : "");
  } else {
    $("suggestion").textContent = "";
  }
  const c = lab.counts;
  if (c) $("counts").textContent = c.go + " GO · " + c.stop + " STOP · " + c.skip + " skipped · " + c.left + " left";
  const strip = $("strip");
  strip.replaceChildren();
  const lo = Math.max(0, lab.cur - 20), hi = Math.min(lab.items.length, lo + 40);
  for (let i = lo; i < hi; i++) {
    const s = document.createElement("span");
    const l = lab.items[i].label;
    s.className = (l === 0 ? "go" : l === 1 ? "stop" : l === "skip" ? "skip" : "") + (i === lab.cur ? " here" : "");
    s.title = lab.items[i].log + " tick " + lab.items[i].seq;
    strip.appendChild(s);
  }
}

function label(value, range) {
  // Positions are read when the action runs (after every earlier key's action), not when the key is hit.
  enqueue(async () => {
    const from = range ? Math.min(lab.anchor, lab.cur) : lab.cur;
    const to = range ? Math.max(lab.anchor, lab.cur) : lab.cur;
    const positions = [];
    for (let p = from; p <= to; p++) positions.push(p);
    const done = await post("/api/label", { indices: positions.map((p) => lab.items[p].i), label: value });
    if (done.error) { console.warn(done.error); return; }
    const byIndex = new Map(lab.items.map((it, p) => [it.i, p]));
    const v = value === "go" ? 0 : value === "stop" ? 1 : "skip";
    for (const i of done.changed) lab.items[byIndex.get(i)].label = v;
    lab.counts = done.counts;
    lab.cur = nextOpen(to + 1);
    lab.anchor = lab.cur;
    show();
  });
}
function undo() {
  enqueue(async () => {
    const done = await post("/api/undo");
    const byIndex = new Map(lab.items.map((it, p) => [it.i, p]));
    for (const i of done.restored) lab.items[byIndex.get(i)].label = null;
    lab.counts = done.counts;
    if (done.restored.length) lab.cur = byIndex.get(done.restored[0]);
    lab.anchor = lab.cur;
    show();
  });
}
function move(step) {
  enqueue(async () => { lab.cur = Math.max(0, Math.min(lab.items.length - 1, lab.cur + step)); show(); });
}

document.addEventListener("keydown", (e) => {
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  const key = e.key.toLowerCase();
  if (key === "g") { e.preventDefault(); label("go", e.shiftKey); }
  else if (key === "s") { e.preventDefault(); label("stop", e.shiftKey); }
  else if (e.code === "Space") { e.preventDefault(); label("skip", false); }
  else if (e.key === "Backspace") { e.preventDefault(); undo(); }
  else if (e.key === "ArrowRight") { e.preventDefault(); move(1); }
  else if (e.key === "ArrowLeft") { e.preventDefault(); move(-1); }
});
$("go").addEventListener("click", () => label("go", false));
$("stop").addEventListener("click", () => label("stop", false));
$("skip").addEventListener("click", () => label("skip", false));
$("undo").addEventListener("click", undo);

enqueue(async () => {
  const r = await fetch("/api/items", { cache: "no-store", credentials: "same-origin" });
  const doc = await r.json();
  lab.items = doc.items; lab.counts = doc.counts; lab.threshold = doc.threshold; lab.hasModel = doc.has_model;
  $("out").textContent = "→ " + doc.out;
  $("order").textContent = doc.has_model
    ? "Order: frames where the model disagrees with the car's network first, then the least certain."
    : "Order: as logged.";
  lab.cur = nextOpen(0);
  lab.anchor = lab.cur;
  show();
  lab.ready = true;
});
