// P(STOP) strip chart on a canvas: the line, the threshold (dashed), and red marks for ticks that sent STOP.
"use strict";
function drawChart(canvas, history, threshold, span) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, pad = 24, band = 10;
  const plotH = h - pad - band - 6;
  ctx.clearRect(0, 0, w, h);
  ctx.fillStyle = "#10151c";
  ctx.fillRect(0, 0, w, h);
  ctx.strokeStyle = "#2a3340";
  ctx.fillStyle = "#8a96a8";
  ctx.font = "11px sans-serif";
  ctx.lineWidth = 1;
  for (const v of [0, 0.5, 1]) {
    const y = 6 + (1 - v) * plotH;
    ctx.beginPath(); ctx.moveTo(pad, y); ctx.lineTo(w - 4, y); ctx.stroke();
    ctx.fillText(v.toFixed(1), 2, y + 4);
  }
  if (!history.length) return;
  const last = history[history.length - 1][0];
  const first = last - span + 1;
  const x = (seq) => pad + ((seq - first) / Math.max(span - 1, 1)) * (w - pad - 4);
  const y = (p) => 6 + (1 - p) * plotH;
  ctx.fillStyle = "#e5484d";
  for (const [seq, , stop] of history) {
    if (stop && seq >= first) ctx.fillRect(x(seq) - 1, h - band - 2, 2, band);
  }
  ctx.strokeStyle = "#f5a524";
  ctx.setLineDash([6, 4]);
  ctx.beginPath(); ctx.moveTo(pad, y(threshold)); ctx.lineTo(w - 4, y(threshold)); ctx.stroke();
  ctx.setLineDash([]);
  ctx.fillStyle = "#f5a524";
  ctx.fillText("threshold " + threshold.toFixed(2), w - 100, y(threshold) - 4);
  ctx.strokeStyle = "#4cc38a";
  ctx.lineWidth = 2;
  ctx.beginPath();
  let open = false;
  for (const [seq, p] of history) {
    if (seq < first || p === null) { open = false; continue; }
    if (!open) { ctx.moveTo(x(seq), y(p)); open = true; } else { ctx.lineTo(x(seq), y(p)); }
  }
  ctx.stroke();
}
