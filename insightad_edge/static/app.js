// The operator's page: polls the server once a second and shows the last part, its verdict and the last hour.
// An API key, when the server wants one, comes from the page's address (#key=...) and stays in this browser.
// Every address is relative to the page's: behind a plant's proxy that offers each line's station under a path of
// its own (https://qa/line-3/), the page asks its own station, and keeps that station's key apart from the others'.
"use strict";

const KEY_NAME = location.pathname === "/" ? "insightad-key" : `insightad-key ${location.pathname}`;  // "/": as before
const keyFromHash = new URLSearchParams(location.hash.slice(1)).get("key");
if (keyFromHash) localStorage.setItem(KEY_NAME, keyFromHash);
const headers = localStorage.getItem(KEY_NAME) ? {"X-API-Key": localStorage.getItem(KEY_NAME)} : {};
const LABELS = {ok: "OK", defect: "DEFECT", not_inspectable: "NO VERDICT", error: "ERROR"};
const SOURCE_DOWN = {lost: "CAMERA LOST", stalled: "STATION STALLED", ended: "SOURCE ENDED"};
const ANSWER_MS = 5000;  // a station that takes longer to answer has hung: its last verdict no longer stands
const $ = (id) => document.getElementById(id);
let shown = null;

async function get(path) {
  let response;
  try {
    response = await fetch(path, {headers, cache: "no-store", signal: AbortSignal.timeout(ANSWER_MS)});
  } catch (error) {  // gone (stopped, crashed, the network cut), or hung: the system accepts, nobody answers
    throw new Error(error.name === "TimeoutError"
      ? `the station does not answer (${ANSWER_MS / 1000} s): no part is judged here until it answers again`
      : "cannot reach the station: no part is judged here until it answers again");
  }
  if (response.status === 401) throw new Error("this server wants an API key: open the page with #key=YOUR_KEY at the end of its address");
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}

function number(value, digits = 3) {
  return value === null || value === undefined ? "–" : Number(value).toPrecision(digits);
}

function clock(iso) {
  // The line's own time (the browser's zone and language) for people; the log keeps UTC for audits.
  return new Date(iso).toLocaleString(undefined, {dateStyle: "short", timeStyle: "medium"});
}

function showVerdict(last, down) {
  // `down` says why no verdict stands now: the camera is lost ("source_down"), or the station does not answer
  // ("unreachable"). The last verdict is of a part seen before then: it says nothing about the part there now.
  const verdict = $("verdict");
  verdict.textContent = down ? "NO VERDICT" : last ? LABELS[last.status] || last.status : "NO PART YET";
  verdict.className = `verdict ${down || !last ? "none" : last.status}`;
  verdict.dataset.status = down || (last ? last.status : "none");
}

function showLast(last, threshold) {
  // A verdict is known by its number and time: a restarted station numbers its parts from 1 again.
  if (!last || `${last.id} ${last.time}` === shown) return;
  shown = `${last.id} ${last.time}`;
  $("score").textContent = number(last.score);
  $("threshold").textContent = number(threshold);
  const share = last.score === null ? 0 : Math.min(last.score / (2 * threshold), 1);
  $("bar-fill").style.width = `${share * 100}%`;
  $("bar-fill").className = last.status === "defect" ? "over" : "";
  $("reason").textContent = last.error || "";
  // A verdict without a picture (bytes that are no image) must not stand beside the part before it.
  const picture = $("picture");
  picture.hidden = !last.overlay;
  if (last.overlay) picture.src = last.overlay;
  else picture.removeAttribute("src");
  $("caption").textContent = `part #${last.id} · ${clock(last.time)}`;
  $("caption").title = last.time;
}

function showSource(source) {
  const down = Boolean(source) && source.state !== "live";
  $("source").hidden = !down;
  if (down) $("source").textContent = `${SOURCE_DOWN[source.state] || source.state.toUpperCase()} since ${clock(source.since)}: ${source.message}`;
  return down;
}

function showSummary(summary) {
  const hour = summary.last_hour;
  $("parts").textContent = hour.parts;
  $("defects").textContent = hour.defects;
  $("rate").textContent = hour.defect_rate === null ? "–" : `${(hour.defect_rate * 100).toFixed(1)} %`;
  $("uninspectable").textContent = hour.not_inspectable;
  $("errors").textContent = hour.errors;
  $("skipped").textContent = hour.skipped;
  const drift = summary.drift;
  // "ok" on fewer parts than the monitor judges on would say more than it knows
  const watching = drift.level === "ok" && drift.parts < drift.min_parts;
  $("drift").textContent = watching ? `WATCHING (${drift.parts} of ${drift.min_parts} parts)`
    : drift.level.toUpperCase() + (drift.reference ? "" : " (no reference)");
  $("drift").className = `drift ${watching ? "none" : drift.level}`;
  $("drift-reasons").replaceChildren(...drift.reasons.map(listItem));
  // what the station's log or evidence cannot do now (a full disk): seen here, not only when it stops
  $("trouble").replaceChildren(...(summary.trouble || []).map(listItem));
}

function listItem(text) {
  const item = document.createElement("li");
  item.textContent = text;
  return item;
}

async function refresh() {
  try {
    const [last, summary] = await Promise.all([get("api/last"), get("api/summary")]);
    $("model").textContent = last.model;
    showVerdict(last.last, showSource(summary.source) ? "source_down" : null);
    showLast(last.last, summary.threshold);
    showSummary(summary);
    $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    $("problem").hidden = true;
  } catch (error) {
    showVerdict(null, "unreachable");
    $("problem").textContent = error.message;
    $("problem").hidden = false;
  }
}

async function follow() {  // one refresh at a time: a slow answer must not pile up requests behind it
  await refresh();
  setTimeout(follow, 1000);
}

follow();
