// The pose check's sparse points and camera path on a canvas ("what Teleport will see"):
// an orthographic view turned by dragging. No library: a few thousand points at most.
"use strict";

function centreAndScale(points) {
  const mean = [0, 1, 2].map((k) => points.reduce((s, p) => s + p[k], 0) / points.length);
  // The 90th percentile distance: a few stray points must not shrink the scene to a dot.
  const far = points.map((p) => Math.hypot(p[0] - mean[0], p[1] - mean[1], p[2] - mean[2]));
  far.sort((a, b) => a - b);
  return { mean, radius: far[Math.floor(far.length * 0.9)] || 1 };
}

function project(p, frame, yaw, pitch) {
  const x = p[0] - frame.mean[0], y = p[1] - frame.mean[1], z = p[2] - frame.mean[2];
  const cy = Math.cos(yaw), sy = Math.sin(yaw), cp = Math.cos(pitch), sp = Math.sin(pitch);
  const x1 = cy * x + sy * z, z1 = -sy * x + cy * z;
  const y2 = cp * y - sp * z1;
  return [x1 / frame.radius, y2 / frame.radius];
}

function draw(canvas, data, view) {
  const ctx = canvas.getContext("2d");
  const half = Math.min(canvas.width, canvas.height) / 2.4;
  ctx.fillStyle = "#111";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  const at = (p) => {
    const [u, v] = project(p, view.frame, view.yaw, view.pitch);
    return [canvas.width / 2 + u * half, canvas.height / 2 + v * half];
  };
  for (const p of data.points) {
    const [u, v] = at(p);
    ctx.fillStyle = `rgb(${p[3]},${p[4]},${p[5]})`;
    ctx.fillRect(u, v, 2, 2);
  }
  ctx.strokeStyle = "#f90";
  ctx.lineWidth = 2;
  ctx.beginPath();
  data.path.forEach((p, i) => {
    const [u, v] = at(p);
    if (i === 0) ctx.moveTo(u, v); else ctx.lineTo(u, v);
  });
  ctx.stroke();
}

async function start(canvas) {
  const response = await fetch(canvas.dataset.pose);
  if (!response.ok) return;
  const data = await response.json();
  // COLMAP's y points down in its first camera: start upright, looking from slightly above.
  const view = { frame: centreAndScale(data.points), yaw: 0, pitch: Math.PI + 0.4 };
  draw(canvas, data, view);
  let last = null;
  canvas.addEventListener("pointerdown", (e) => { last = [e.clientX, e.clientY]; });
  window.addEventListener("pointerup", () => { last = null; });
  canvas.addEventListener("pointermove", (e) => {
    if (!last) return;
    view.yaw += (e.clientX - last[0]) * 0.01;
    view.pitch += (e.clientY - last[1]) * 0.01;
    last = [e.clientX, e.clientY];
    draw(canvas, data, view);
  });
}

for (const canvas of document.querySelectorAll("canvas.pose-view")) start(canvas);
