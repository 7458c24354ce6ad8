// edge-search's page: pick, drop or paste a photo -> POST /api/query -> a grid of thumbnails.
// Clicking a result asks /api/similar/{id} (the URL becomes #similar/{id}, so Back works).
// Everything the server sends is set with textContent: file names never become markup.
"use strict";

const $ = (id) => document.getElementById(id);
const els = {
  file: $("file"), k: $("k"), results: $("results"), message: $("message"), status: $("status"),
  warning: $("warning"), query: $("query"), queryImage: $("query-image"), queryName: $("query-name"),
  overlay: $("drop-overlay"), groups: $("groups"), words: $("words"), text: $("text"), picker: $("picker"),
};
let queryUrl = null; // object URL of the uploaded photo, revoked when replaced
let searchId = 0; // only the newest search may draw its results

async function api(path, options) {
  const response = await fetch(path, { credentials: "same-origin", ...options });
  if (response.status === 401) {
    window.location.href = "/login";
    throw new Error("Sign in first.");
  }
  let body = null;
  try { body = await response.json(); } catch (_) { /* not JSON */ }
  if (!response.ok) throw new Error((body && body.error) || `The server answered ${response.status}.`);
  return body;
}

function say(text, isError = false) {
  els.message.textContent = text;
  els.message.classList.toggle("error", isError);
}

function baseName(path) {
  const parts = path.split(/[\\/]/);
  return parts[parts.length - 1] || path;
}

function showResultsView() {
  els.groups.hidden = true;
  els.groups.replaceChildren();
  els.results.hidden = false;
}

function showQuery(src, name) {
  showResultsView();
  els.query.hidden = false;
  els.queryImage.hidden = !src;
  if (src) els.queryImage.src = src; else els.queryImage.removeAttribute("src");
  els.queryName.textContent = name;
  els.queryName.title = name;
}

// A thumbnail that asks for photos like this one, and a link to the original file.
function thumbLink(id, path) {
  const link = document.createElement("a");
  link.className = "similar";
  link.href = `#similar/${id}`;
  link.title = "Find photos like this one";
  link.dataset.name = path;
  const img = document.createElement("img");
  img.src = `/api/thumb/${id}`;
  img.alt = baseName(path);
  img.loading = "lazy";
  link.append(img);
  return link;
}

function originalLink(id) {
  const original = document.createElement("a");
  original.className = "original";
  original.href = `/api/image/${id}`;
  original.target = "_blank";
  original.rel = "noopener";
  original.textContent = "open original";
  return original;
}

function render(results) {
  els.results.replaceChildren(...results.map((hit) => {
    const item = document.createElement("li");
    item.className = "hit";
    const meta = document.createElement("div");
    meta.className = "meta";
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = hit.score.toFixed(3);
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = baseName(hit.path);
    name.title = hit.path;
    meta.append(score, name);
    item.append(thumbLink(hit.id, hit.path), meta, originalLink(hit.id));
    return item;
  }));
  say(results.length ? `${results.length} photo${results.length === 1 ? "" : "s"}` : "No similar photos found.");
}

async function search(request) {
  const mine = ++searchId;
  say("Searching…");
  try {
    const body = await request();
    if (mine === searchId) render(body.results);
  } catch (error) {
    if (mine === searchId) { els.results.replaceChildren(); say(error.message, true); }
  }
}

function searchFile(file) {
  if (!file) return;
  if (queryUrl) URL.revokeObjectURL(queryUrl);
  queryUrl = URL.createObjectURL(file);
  showQuery(queryUrl, file.name || "pasted image");
  if (window.location.hash) history.pushState(null, "", window.location.pathname);
  const form = new FormData();
  form.append("image", file, file.name || "pasted.png");
  form.append("k", els.k.value);
  search(() => api("/api/query", { method: "POST", body: form }));
}

function searchText(words) {
  if (!words.trim()) return;
  showQuery("", `“${words.trim()}”`);
  if (window.location.hash) history.pushState(null, "", window.location.pathname);
  const form = new FormData();
  form.append("text", words);
  form.append("k", els.k.value);
  search(() => api("/api/query", { method: "POST", body: form }));
}

function searchSimilar(id, name) {
  showQuery(`/api/thumb/${id}`, name || `photo ${id}`);
  search(() => api(`/api/similar/${id}?k=${encodeURIComponent(els.k.value)}`));
}

function renderGroups(report) {
  els.query.hidden = true;
  els.results.hidden = true;
  els.results.replaceChildren();
  els.groups.hidden = false;
  els.groups.replaceChildren(...report.groups.map((group) => {
    const item = document.createElement("li");
    item.className = "group";
    const title = document.createElement("h2");
    title.textContent = `${group.files.length} ${group.kind === "exact" ? "identical files" : "near-duplicates"}`;
    const members = document.createElement("div");
    members.className = "members";
    members.append(...group.files.map((file, i) => {
      const card = document.createElement("div");
      card.className = i === 0 ? "member keep" : "member";
      const badge = document.createElement("div");
      badge.className = "badge";
      badge.textContent = i === 0 ? "suggested keeper" : `${file.score_to_keep.toFixed(4)} to keeper`;
      const name = document.createElement("div");
      name.className = "name";
      name.textContent = baseName(file.path);
      name.title = file.path;
      const detail = document.createElement("div");
      detail.className = "detail";
      const size = file.width ? `${file.width}×${file.height}` : "size unknown";
      detail.textContent = `${size} · ${(file.size / 1e6).toFixed(2)} MB · ${file.taken || file.modified}`;
      card.append(thumbLink(file.id, file.path), badge, name, detail, originalLink(file.id));
      return card;
    }));
    item.append(title, members);
    return item;
  }));
  const note = report.random_weights ? " (random weights: near-duplicate groups mean nothing)" : "";
  say(report.groups.length
    ? `${report.groups.length} group${report.groups.length === 1 ? "" : "s"}, ${report.redundant_files} file${report.redundant_files === 1 ? "" : "s"} beside their keepers, threshold ${report.threshold}${note}. Nothing is deleted.`
    : `No duplicates among ${report.files} photos at threshold ${report.threshold}.`);
}

async function showDupes() {
  const mine = ++searchId;
  say("Looking for duplicates…");
  try {
    const report = await api("/api/dupes");
    if (mine === searchId) renderGroups(report);
  } catch (error) {
    if (mine === searchId) say(error.message, true);
  }
}

function route() {
  if (window.location.hash === "#dupes") { showDupes(); return; }
  const match = /^#similar\/(\d+)$/.exec(window.location.hash);
  if (match) {
    const link = document.querySelector(`a[href="#similar/${match[1]}"]`);
    searchSimilar(match[1], link ? link.dataset.name : null);
  }
}

async function refreshStatus() {
  try {
    const health = await api("/api/health");
    const watch = health.watch;
    let text = `${health.count.toLocaleString()} photos · ${health.provider} ${health.precision}`;
    if (watch && watch.indexing) text += " · indexing new photos…";
    else if (watch && watch.mode === "events") text += ` · watching ${watch.roots.length} folder${watch.roots.length === 1 ? "" : "s"}`;
    els.status.textContent = text;
    els.words.hidden = !health.text;
    els.warning.hidden = !health.random_weights;
    els.warning.textContent = health.random_weights
      ? "This model has random weights (a test bundle): the results are not meaningful." : "";
  } catch (error) {
    els.status.textContent = error.message;
  }
}

els.picker.addEventListener("submit", (event) => { event.preventDefault(); searchText(els.text.value); });
els.file.addEventListener("change", () => { searchFile(els.file.files[0]); els.file.value = ""; });
window.addEventListener("hashchange", route);

let dragDepth = 0;
window.addEventListener("dragenter", (event) => { event.preventDefault(); dragDepth++; els.overlay.hidden = false; });
window.addEventListener("dragleave", () => { if (--dragDepth <= 0) { dragDepth = 0; els.overlay.hidden = true; } });
window.addEventListener("dragover", (event) => event.preventDefault());
window.addEventListener("drop", (event) => {
  event.preventDefault();
  dragDepth = 0;
  els.overlay.hidden = true;
  const file = [...event.dataTransfer.files].find((f) => f.type.startsWith("image/")) || event.dataTransfer.files[0];
  if (file) searchFile(file);
});
window.addEventListener("paste", (event) => {
  const item = [...event.clipboardData.items].find((i) => i.kind === "file" && i.type.startsWith("image/"));
  if (item) searchFile(item.getAsFile());
});

refreshStatus();
setInterval(refreshStatus, 10000);
route();
