// The technician's status page: the published state (polled, and live over the OSCQuery websocket: LISTEN, values
// arrive as binary OSC messages), the newest picture, the journey, events, log and files, and buttons that post the
// same actions as OSC into the installation's inbox. Plain JS, no build step, nothing fetched from elsewhere.
"use strict";

const STATE = "/uncanny/state/";
const LISTENED = ["iteration", "status", "paused", "phase", "cycle", "fps", "steps_per_second", "device",
                  "recording", "recording_path", "loss", "d", "diversity", "uptime", "disk_free", "last_error"];
const CONTROLS = {"/uncanny/view/blackout": "blackout"};  // echoed controls the buttons show
const state = {controls: {}};
let tokenRequired = false;

const $ = (selector) => document.querySelector(selector);
const number = (digits) => (v) => (v === null || v === undefined ? "–" : Number(v).toFixed(digits));
const FORMAT = {
  fps: number(1), steps_per_second: number(2), d: number(3), loss: number(3), diversity: number(3),
  uptime: duration, disk_free: bytes, last_error: (v) => v || "none",
  recording: (v) => (v ? (state.recording_path || "yes") : "no"),
};

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Math.floor(seconds), d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
  return d ? `${d} d ${h} h` : h ? `${h} h ${String(m).padStart(2, "0")} min` : m ? `${m} min ${s % 60} s` : `${s} s`;
}

function bytes(size) {
  if (!size && size !== 0) return "–";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let unit = 0;
  while (size >= 1024 && unit < units.length - 1) { size /= 1024; unit += 1; }
  return `${size.toFixed(unit ? 1 : 0)} ${units[unit]}`;
}

function show() {
  for (const element of document.querySelectorAll("[data-field]")) {
    const name = element.dataset.field, value = state[name];
    element.textContent = (FORMAT[name] || ((v) => (v === null || v === undefined || v === "" ? "–" : v)))(value);
  }
  const status = $("#status");
  status.textContent = state.status || "…";
  status.className = `pill ${state.status || ""}`;
  $("[data-field=last_error]").classList.toggle("error", Boolean(state.last_error));
  const dark = Number(state.controls.blackout || 0) > 0;
  $("#blackout").textContent = dark ? "Back from black" : "Blackout";
  $("#blackout").classList.toggle("on", dark);
  $("#pause").textContent = state.paused ? "Resume training" : "Pause training";
  $("#pause").classList.toggle("on", Boolean(state.paused));
  $("#record").textContent = state.recording ? "Stop recording" : "Record";
  $("#record").classList.toggle("on", Boolean(state.recording));
}

async function getJson(url) {
  const response = await fetch(url, {cache: "no-store"});
  if (!response.ok) throw new Error(`${url}: ${response.status}`);
  return response.json();
}

async function pollState() {
  try {
    const reply = await getJson("/ui/api/state");
    Object.assign(state, reply.state);
    tokenRequired = reply.token;
    $("#token-row").hidden = !tokenRequired;
    show();
  } catch (error) {
    $("#status").textContent = "unreachable";
    $("#status").className = "pill error";
  }
}

// ------------------------------------------------------------------------------------------------ live values
function readString(bytes, offset) {
  let end = offset;
  while (end < bytes.length && bytes[end] !== 0) end += 1;
  return [new TextDecoder().decode(bytes.subarray(offset, end)), (end + 4) & ~3];
}

function decodeOsc(buffer) {
  const bytes = new Uint8Array(buffer), view = new DataView(buffer);
  let [address, index] = readString(bytes, 0);
  let tags;
  [tags, index] = readString(bytes, index);
  const args = [];
  for (const tag of tags.slice(1)) {
    if (tag === "i") { args.push(view.getInt32(index)); index += 4; }
    else if (tag === "f") { args.push(view.getFloat32(index)); index += 4; }
    else if (tag === "h") { args.push(Number(view.getBigInt64(index))); index += 8; }
    else if (tag === "d") { args.push(view.getFloat64(index)); index += 8; }
    else if (tag === "s") { let text; [text, index] = readString(bytes, index); args.push(text); }
    else if (tag === "T" || tag === "F") { args.push(tag === "T" ? 1 : 0); }
    else break;  // nothing else is sent
  }
  return {address, args};
}

function listen() {
  const socket = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/`);
  socket.binaryType = "arraybuffer";
  socket.onopen = () => {
    for (const name of LISTENED) socket.send(JSON.stringify({COMMAND: "LISTEN", DATA: STATE + name}));
    for (const address of Object.keys(CONTROLS)) socket.send(JSON.stringify({COMMAND: "LISTEN", DATA: address}));
    $("#link").textContent = "live";
    $("#link").className = "link live";
  };
  socket.onmessage = (event) => {
    if (!(event.data instanceof ArrayBuffer)) return;
    const {address, args} = decodeOsc(event.data);
    if (address.startsWith(STATE)) state[address.slice(STATE.length)] = args[0];
    else if (address in CONTROLS) state.controls[CONTROLS[address]] = args[0];
    show();
  };
  socket.onclose = () => {
    $("#link").textContent = "polling";
    $("#link").className = "link";
    setTimeout(listen, 3000);
  };
}

// ------------------------------------------------------------------------------------------------ actions
async function act(name, args = []) {
  const headers = {"Content-Type": "application/json"};
  const token = localStorage.getItem("uncanny-token");
  if (token) headers.Authorization = `Bearer ${token}`;
  const note = $("#action-note");
  try {
    const response = await fetch("/ui/api/action", {method: "POST", headers, body: JSON.stringify({action: name, args})});
    const reply = await response.json();
    if (response.status === 403 && tokenRequired) {
      $("#token-row").hidden = false;
      note.textContent = "This installation needs its token ([http] token): type it above, then press again.";
    } else {
      note.textContent = response.ok ? `${name}: sent` : `${name}: ${reply.error}`;
    }
  } catch (error) {
    note.textContent = `${name}: the installation did not answer`;
  }
}

$("#token").value = localStorage.getItem("uncanny-token") || "";
$("#token").addEventListener("change", (event) => localStorage.setItem("uncanny-token", event.target.value));
$("#blackout").addEventListener("click", () => act("blackout", [Number(state.controls.blackout || 0) > 0 ? 0 : 1, 1]));
$("#pause").addEventListener("click", () => act("toggle_pause"));
$("#snapshot").addEventListener("click", () => act("snapshot"));
$("#record").addEventListener("click", () => act(state.recording ? "record_stop" : "record_start"));
$("#reset").addEventListener("click", () => {
  if (confirm("Reset to realism: training starts again from iteration 0?")) act("reset");
});

// ------------------------------------------------------------------------------------------------ the run folder
const PANELS = [["probe_d", "D score (lower = more fake)", "#5aa0ff"], ["loss", "loss", "#ff8c3c"],
                ["diversity", "diversity (1 - MS-SSIM)", "#6ad48a"]];

function plot(journey) {
  const canvas = $("#journey"), ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth, height = canvas.clientHeight || 320;
  canvas.width = width * ratio;
  canvas.height = height * ratio;
  const context = canvas.getContext("2d");
  context.scale(ratio, ratio);
  context.font = "12px system-ui, sans-serif";
  const iterations = journey.iteration || [];
  if (iterations.length < 2) {
    context.fillStyle = "#9a9aa8";
    context.fillText("the journey appears after the first training steps", 10, 20);
    return;
  }
  const left = 8, right = width - 8, first = iterations[0], last = iterations[iterations.length - 1];
  const x = (iteration) => left + (right - left) * (iteration - first) / Math.max(1, last - first);
  const panel = height / PANELS.length;
  PANELS.forEach(([name, label, colour], row) => {
    const values = journey[name] || [], known = values.filter((v) => v !== null);
    const top = row * panel + 18, bottom = (row + 1) * panel - 6;
    const low = Math.min(...known), high = Math.max(...known), span = high - low || 1;
    const y = (value) => bottom - (bottom - top) * (value - low) / span;
    context.fillStyle = "#9a9aa8";
    context.fillText(`${label}: ${known.length ? known[known.length - 1].toFixed(3) : "–"}` +
                     `   (${low.toFixed(3)} … ${high.toFixed(3)}, iterations ${first}–${last})`, left, top - 5);
    context.strokeStyle = "#2c2c35";
    context.strokeRect(left, top, right - left, bottom - top);
    context.strokeStyle = context.fillStyle = colour;
    context.beginPath();
    let started = false;
    values.forEach((value, index) => {  // a measure taken every few steps: the line joins the measured points
      if (value === null) return;
      if (started) context.lineTo(x(iterations[index]), y(value));
      else context.moveTo(x(iterations[index]), y(value));
      started = true;
    });
    if (known.length === 1) context.fillRect(x(iterations[values.indexOf(known[0])]) - 2, y(known[0]) - 2, 4, 4);
    context.stroke();
  });
}

async function pollJourney() {
  try { plot(await getJson("/ui/api/journey")); } catch (error) { /* the next poll tries again */ }
}

async function pollEvents() {
  try {
    const reply = await getJson("/ui/api/events");
    const list = $("#events");
    list.replaceChildren(...reply.events.reverse().map((event) => {
      const item = document.createElement("li"), stamp = document.createElement("time");
      stamp.textContent = event.time ? new Date(event.time * 1000).toLocaleString() : "";
      const {time, event: kind, iteration, branch, ...rest} = event;
      const extra = Object.entries(rest).map(([k, v]) => `${k} ${typeof v === "object" ? JSON.stringify(v) : v}`);
      item.append(stamp, `${kind} at ${iteration}${extra.length ? ": " + extra.join(", ") : ""}`);
      return item;
    }));
    const log = $("#log");
    log.textContent = reply.log.join("\n") || "(no log lines yet)";
    log.scrollTop = log.scrollHeight;
  } catch (error) { /* the next poll tries again */ }
}

async function pollFiles() {
  try {
    const reply = await getJson("/ui/api/files");
    const rows = reply.files.map((file) => {
      const row = document.createElement("tr"), link = document.createElement("a");
      link.href = file.url;
      link.textContent = file.folder === "run" ? file.name : `${file.folder}/${file.name}`;
      link.download = file.name;
      const cells = [link, bytes(file.size), new Date(file.modified * 1000).toLocaleString()];
      row.append(...cells.map((content) => { const cell = document.createElement("td"); cell.append(content); return cell; }));
      return row;
    });
    $("#files tbody").replaceChildren(...rows);
    if (!rows.length) $("#files tbody").innerHTML = "<tr><td colspan=3>none yet</td></tr>";
  } catch (error) { /* the next poll tries again */ }
}

function refreshPicture() {
  $("#picture").src = `/ui/picture.jpg?${Date.now()}`;
}
$("#picture").onerror = () => { $("#picture-note").textContent = "no picture yet"; };
$("#picture").onload = () => { $("#picture-note").textContent = `at ${new Date().toLocaleTimeString()}`; };

function every(seconds, poll) {
  poll();
  setInterval(poll, seconds * 1000);
}

every(5, pollState);
every(3, refreshPicture);
every(15, pollJourney);
every(5, pollEvents);
every(15, pollFiles);
listen();
window.addEventListener("resize", pollJourney);
