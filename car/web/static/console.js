// The live console: newest snapshot + frame over one WebSocket; controls by POST (STOP, Resume) and by
// socket messages (teleop heartbeats, every 50 ms while "drive" is held; the car's dead-man is 250 ms).
"use strict";
const TOKEN = document.querySelector('meta[name="car-token"]').content;
const $ = (id) => document.getElementById(id);
const car = { state: null, frames: 0, snapshots: 0, ws: null, keyHeld: false, buttonHeld: false, padHeld: false };
window.carConsole = car;

function post(path, body) {
  return fetch(path, {
    method: "POST", credentials: "same-origin", cache: "no-store",
    headers: { "X-Car-Token": TOKEN, "Content-Type": "application/json" },
    body: JSON.stringify(body || {}),
  });
}
function sendSocket(message) {
  if (car.ws && car.ws.readyState === WebSocket.OPEN) { car.ws.send(JSON.stringify(message)); return true; }
  return false;
}
function estop() { sendSocket({ type: "stop" }); post("/api/stop"); $("latched").hidden = false; }
function resume() { post("/api/resume"); }

// -- teleop -----------------------------------------------------------------------------------------------
let heartbeat = null;
function speed() { return parseFloat($("speed").value); }
function teleop(drive) {
  const message = { type: "teleop", drive: drive, speed: speed() };
  if (!sendSocket(message)) post("/api/teleop", message);
}
function updateDrive() {
  const held = car.keyHeld || car.buttonHeld || car.padHeld;
  $("drive").classList.toggle("held", held);
  if (held && heartbeat === null) {
    teleop(true);
    heartbeat = setInterval(() => teleop(true), 50);
  } else if (!held && heartbeat !== null) {
    clearInterval(heartbeat); heartbeat = null;
    teleop(false);
  }
}
function releaseAll() { car.keyHeld = car.buttonHeld = car.padHeld = false; updateDrive(); }
const DRIVE_KEYS = new Set(["ArrowUp", "KeyW"]);
const STOP_KEYS = new Set(["ArrowDown", "KeyS"]);
document.addEventListener("keydown", (e) => {
  if (e.code === "Space") { e.preventDefault(); if (!e.repeat) estop(); return; }
  if (!manual()) return;
  if (DRIVE_KEYS.has(e.code)) { e.preventDefault(); car.keyHeld = true; updateDrive(); }
  if (STOP_KEYS.has(e.code)) { e.preventDefault(); releaseAll(); }
});
document.addEventListener("keyup", (e) => {
  if (DRIVE_KEYS.has(e.code)) { car.keyHeld = false; updateDrive(); }
});
window.addEventListener("blur", releaseAll);
document.addEventListener("visibilitychange", () => { if (document.hidden) releaseAll(); });
function manual() { return !!(car.state && car.state.operator && car.state.operator.manual); }

function pollGamepad() {
  const pads = navigator.getGamepads ? Array.from(navigator.getGamepads()).filter(Boolean) : [];
  if (pads.length) {
    const p = pads[0];
    $("pad").textContent = "gamepad: " + p.id.slice(0, 40);
    if (p.buttons[1] && p.buttons[1].pressed) estop();
    const held = (p.buttons[0] && p.buttons[0].pressed) || (p.buttons[7] && p.buttons[7].value > 0.2);
    if (held !== car.padHeld && manual()) { car.padHeld = held; updateDrive(); }
  }
  requestAnimationFrame(pollGamepad);
}

// -- rendering --------------------------------------------------------------------------------------------
function fmt(x, digits) { return x === null || x === undefined ? "—" : Number(x).toFixed(digits); }
function render(s) {
  car.state = s;
  car.snapshots += 1;
  const op = s.operator || {};
  $("mode").textContent = op.manual ? "manual (teleop)" : "auto";
  $("teleop").hidden = !op.manual;
  $("latched").hidden = !op.latched;
  $("info").textContent = s.info && s.info.title ? s.info.title : "";
  if (op.manual) $("speed").max = op.max_speed;
  $("speedval").textContent = speed().toFixed(2);
  drawChart($("chart"), s.history, s.threshold, 300);
  const r = s.record;
  if (!r) return;
  const stop = r.decision === "STOP";
  $("badge").textContent = r.decision + (r.p_stop === null ? "" : "  P(STOP) " + fmt(r.p_stop, 2));
  $("badge").className = "badge " + (stop ? "stop" : "go");
  $("decision").textContent = r.decision;
  $("decision").className = stop ? "stop" : "go";
  $("reason").textContent = r.reason + (r.go_streak ? " (GO streak " + r.go_streak + ")" : "");
  $("pstop").textContent = fmt(r.p_stop, 3) + "  (threshold " + fmt(s.threshold, 2) + ")";
  $("command").textContent = r.command ? r.command.kind + " " + fmt(r.command.speed, 2) : "not sent";
  $("firmware").textContent = r.ack ? r.ack.state + ", motor " + fmt(r.ack.motor, 2) : "no ack";
  $("rtt").textContent = r.ack && r.ack.rtt_ms !== null ? fmt(r.ack.rtt_ms, 2) + " ms" : "—";
  $("tick").textContent = r.seq + "  (" + s.ticks + " published)";
  const faults = $("faults");
  faults.replaceChildren();
  for (const [kind, detail] of r.faults) {
    const li = document.createElement("li");
    li.textContent = kind + ": " + detail;
    faults.appendChild(li);
  }
  if (!r.faults.length) { const li = document.createElement("li"); li.className = "muted"; li.textContent = "none"; faults.appendChild(li); }
  const stages = $("stages");
  stages.replaceChildren();
  for (const [name, value] of Object.entries(r.stages_ms)) {
    const tr = document.createElement("tr");
    const th = document.createElement("th"); th.textContent = name;
    const td = document.createElement("td"); td.textContent = fmt(value, 2);
    tr.append(th, td); stages.appendChild(tr);
  }
}

let frameUrl = null;
function connect() {
  const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
  ws.binaryType = "blob";
  car.ws = ws;
  ws.onopen = () => { $("conn").textContent = "live"; $("conn").className = "pill on"; };
  ws.onmessage = (ev) => {
    if (typeof ev.data === "string") {
      const doc = JSON.parse(ev.data);
      if (doc.error) { console.warn(doc.error); return; }
      render(doc);
    } else {
      const url = URL.createObjectURL(ev.data);
      $("frame").src = url;
      if (frameUrl) URL.revokeObjectURL(frameUrl);
      frameUrl = url;
      car.frames += 1;
    }
  };
  ws.onclose = () => {
    $("conn").textContent = "disconnected"; $("conn").className = "pill off";
    releaseAll();
    setTimeout(connect, 1000);
  };
}

$("stop").addEventListener("click", estop);
$("resume").addEventListener("click", resume);
const driveButton = $("drive");
driveButton.addEventListener("pointerdown", (e) => { e.preventDefault(); car.buttonHeld = true; updateDrive(); });
for (const ev of ["pointerup", "pointerleave", "pointercancel"]) {
  driveButton.addEventListener(ev, () => { car.buttonHeld = false; updateDrive(); });
}
$("speed").addEventListener("input", () => { $("speedval").textContent = speed().toFixed(2); });
connect();
requestAnimationFrame(pollGamepad);
