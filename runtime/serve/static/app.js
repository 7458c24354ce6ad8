// edge-search's page: pick, drop or paste a photo -> POST /api/query -> a grid of thumbnails.
// Clicking a result asks /api/similar/{id} (the URL becomes #similar/{id}). Every view is a history entry:
// an upload's results live in history.state, so Back and Forward redraw each view as it was.
// Before any search, the start page shows what the library holds and the photos added last.
// Everything the server sends is set with textContent: file names never become markup.
"use strict";

const $ = (id) => document.getElementById(id);
const els = {
  file: $("file"), k: $("k"), results: $("results"), message: $("message"), status: $("status"),
  warning: $("warning"), query: $("query"), queryImage: $("query-image"), queryName: $("query-name"),
  overlay: $("drop-overlay"), groups: $("groups"), words: $("words"), text: $("text"), picker: $("picker"),
  logout: $("logout"), after: $("after"), before: $("before"),
  viewer: $("viewer"), viewerImage: $("viewer-image"), viewerVideo: $("viewer-video"), viewerPath: $("viewer-path"), viewerDetail: $("viewer-detail"),
  viewerCount: $("viewer-count"), viewerPrev: $("viewer-prev"), viewerNext: $("viewer-next"),
  viewerSimilar: $("viewer-similar"), viewerOriginal: $("viewer-original"), viewerClose: $("viewer-close"),
};
let shownHits = []; // the results on screen, in order: what the photo view moves through
let viewing = -1;
let searchId = 0; // only the newest search may draw its results
// Object URLs of uploaded photos stay valid for the page's life: history entries show them again.
const uploads = new Map(); // object URL -> the uploaded File, to search with it again ("Show")

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

function humanSize(bytes) {
  const units = ["B", "KB", "MB", "GB"];
  let size = bytes, unit = 0;
  while (size >= 1000 && unit < units.length - 1) { size /= 1000; unit++; }
  return unit ? `${size.toFixed(1)} ${units[unit]}` : `${size} B`;
}

function say(text, isError = false) {
  els.message.textContent = text;
  els.message.classList.toggle("error", isError);
}

// Control and bidirectional-formatting characters in a name are shown as ⟨U+202E⟩, never obeyed: a name
// cannot reverse what follows it ("photo\u202Egpj.png") or hide part of itself.
const INVISIBLE = /[\u0000-\u001f\u007f-\u009f\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff]/g;
function visible(text) {
  return text.replace(INVISIBLE, (c) => `⟨U+${c.codePointAt(0).toString(16).toUpperCase().padStart(4, "0")}⟩`);
}

function baseName(path) {
  const parts = path.split(/[\\/]/);
  return visible(parts[parts.length - 1] || path);
}

// "holiday 2024/IMG_0001.jpg": the parent folder tells apart the many "IMG_0001.jpg" and "screenshot.png".
function shortName(path) {
  const parts = path.split(/[\\/]/).filter(Boolean);
  if (parts.length < 2) return baseName(path);
  const folder = parts[parts.length - 2];
  return visible(`${folder.length > 24 ? folder.slice(0, 23) + "…" : folder}/${parts[parts.length - 1]}`);
}

// A name shown in a tile: folder/name while both fit a tile's line, else the file name alone (the whole path on
// hover): a long path shows the file, not its folder. It may break after / _ - . and spaces (a <wbr> there), never
// inside a word, where a phone wraps it.
const TILE_CHARACTERS = 32;
function setName(element, path, suffix = "") {
  let shown = shortName(path) + suffix;
  let cut = shown.lastIndexOf("/");
  if (cut >= 0 && shown.length > TILE_CHARACTERS) { shown = shown.slice(cut + 1); cut = -1; }
  const parts = cut >= 0 ? [shown.slice(0, cut + 1), shown.slice(cut + 1)] : [shown];
  element.replaceChildren(...parts.map((text, i) => {
    const part = document.createElement("span");
    part.className = i === parts.length - 1 ? "file" : "folder";
    for (const piece of text.split(/(?<=[\/_\-. ])/)) part.append(piece, document.createElement("wbr"));
    return part;
  }));
}

function showResultsView() {
  els.groups.hidden = true;
  els.groups.replaceChildren();
  els.results.hidden = false;
}

// A query picture the browser cannot show (a text file uploaded as a photo) is hidden, not a broken-image icon
// beside the service's clear error.
els.queryImage.addEventListener("error", () => { els.queryImage.hidden = true; });

// `name`: an indexed photo's path (shown as folder/name, the whole path on hover), or an upload's own label.
function showQuery(src, name) {
  showResultsView();
  els.query.hidden = false;
  els.queryImage.hidden = !src;
  if (src) els.queryImage.src = src; else els.queryImage.removeAttribute("src");
  const isPath = /[\\/]/.test(name);
  els.queryName.textContent = isPath ? shortName(name) : visible(name);
  els.queryName.title = visible(name);
}

// A thumbnail that asks for photos like this one, and a link to the original file.
function thumbLink(id, path) {
  const link = document.createElement("a");
  link.className = "similar";
  link.href = `#similar/${id}`;
  link.title = "Find photos like this one";
  link.dataset.name = path;
  link.append(thumbnail(id, path));
  return link;
}

function thumbnail(id, path) {
  const img = document.createElement("img");
  img.src = `/api/thumb/${id}`;
  img.alt = shortName(path);
  img.loading = "lazy";
  return img;
}

// A moment of a video as people read it: 01:23, or 1:02:03 past an hour.
function formatTime(seconds) {
  const whole = Math.floor(seconds);
  const hours = Math.floor(whole / 3600), minutes = Math.floor((whole % 3600) / 60), secs = whole % 60;
  const two = (n) => String(n).padStart(2, "0");
  return hours ? `${hours}:${two(minutes)}:${two(secs)}` : `${two(minutes)}:${two(secs)}`;
}

function isVideo(hit) { return hit.type === "video"; }

// The file at the hit's moment: a video plays from its best-matching frame (a media fragment).
function fileAt(hit) {
  return isVideo(hit) && hit.at !== undefined ? `/api/image/${hit.id}#t=${hit.at}` : `/api/image/${hit.id}`;
}

// A result's picture: opens the photo view (a plain link to the original, for a new tab or without scripts). A
// video shows its matching frame with the moment on it.
function photoLink(hit, index) {
  const link = document.createElement("a");
  link.className = "photo";
  link.href = fileAt(hit);
  link.title = isVideo(hit) ? "Play the video from this moment" : "View this photo";
  link.addEventListener("click", (event) => { event.preventDefault(); openViewer(index); });
  link.append(thumbnail(hit.id, hit.path));
  if (isVideo(hit)) {
    const time = document.createElement("span");
    time.className = "time";
    time.textContent = hit.at !== undefined ? `▶ ${formatTime(hit.at)}` : "▶ video";
    link.append(time);
  }
  return link;
}

function similarLink(id, path) {
  const link = document.createElement("a");
  link.className = "similar";
  link.href = `#similar/${id}`;
  link.dataset.name = path;
  link.textContent = "more like this";
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

function render(results, summary) {
  shownHits = results;
  els.results.replaceChildren(...results.map((hit, index) => {
    const item = document.createElement("li");
    item.className = "hit";
    const meta = document.createElement("div");
    meta.className = "meta";
    const name = document.createElement("span");
    name.className = "name";
    setName(name, hit.path, isVideo(hit) && hit.at !== undefined ? ` @ ${formatTime(hit.at)}` : "");
    name.title = visible(hit.path);
    if (hit.score !== undefined) {
      const score = document.createElement("span");
      score.className = "score";
      score.textContent = hit.score.toFixed(3);
      meta.append(score);
    }
    meta.append(name);
    const links = document.createElement("div");
    links.className = "links";
    links.append(similarLink(hit.id, hit.path), originalLink(hit.id));
    item.append(photoLink(hit, index), meta, links);
    return item;
  }));
  say(summary || (results.length ? `${results.length} photo${results.length === 1 ? "" : "s"}` : "No similar photos found."));
}

// `remember`: keep the results in this history entry's state, so Back/Forward can redraw them.
async function search(request, remember) {
  const mine = ++searchId;
  say("Searching…");
  try {
    const body = await request();
    if (mine !== searchId) return;
    render(body.results);
    if (remember) history.replaceState({ ...remember, results: body.results }, "", window.location.href);
  } catch (error) {
    if (mine === searchId) { els.results.replaceChildren(); say(error.message, true); }
  }
}

// A new search is a new history entry (its URL: the page itself), drawn now and remembered with its results.
function newEntry(view) {
  history.pushState(view, "", window.location.pathname);
  shown = routeKey();
}

// The date range and the count, as the API takes them (a form for /api/query, a query string for the rest).
function options() {
  const asked = { k: els.k.value };
  if (els.after.value.trim()) asked.after = els.after.value.trim();
  if (els.before.value.trim()) asked.before = els.before.value.trim();
  return asked;
}

function queryForm(fields) {
  const form = new FormData();
  for (const [name, value] of Object.entries({ ...options(), ...fields })) form.append(name, value);
  return form;
}

function searchFile(file) {
  if (!file) return;
  const view = { view: "search", image: URL.createObjectURL(file), name: file.name || "pasted image" };
  uploads.set(view.image, file);
  newEntry(view);
  showQuery(view.image, view.name);
  const form = queryForm({});
  form.append("image", file, file.name || "pasted.png");
  search(() => api("/api/query", { method: "POST", body: form }), view);
}

// Words alone, or with the uploaded photo on screen: both go in one query (the API adds their embeddings).
function searchText(words) {
  if (!words.trim()) return;
  const shown = history.state && history.state.view === "search" && uploads.has(history.state.image)
    ? history.state : null;
  const photo = shown ? (shown.photoName || shown.name) : null;
  const view = { view: "search", image: shown ? shown.image : "", text: words.trim(), photoName: photo,
                 name: photo ? `${photo} + “${words.trim()}”` : `“${words.trim()}”` };
  newEntry(view);
  showQuery(view.image, view.name);
  search(() => api("/api/query", { method: "POST", body: viewForm(view) }), view);
}

// The form that searches for `view` (an upload, words, or both) with the options set now.
function viewForm(view) {
  const form = queryForm(view.text ? { text: view.text } : {});
  if (uploads.has(view.image)) form.append("image", uploads.get(view.image), view.photoName || view.name);
  return form;
}

function searchSimilar(id, name) {
  showQuery(`/api/thumb/${id}`, name || `photo ${id}`);
  window.scrollTo(0, 0); // the new results from their header and best matches, not where the last list was
  search(() => api(`/api/similar/${id}?${new URLSearchParams(options())}`));
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
      const pixels = document.createElement("div");
      pixels.className = "pixels";
      if (i === 0) pixels.textContent = `kept: ${group.kept_because}`;
      else if (group.kind === "exact") pixels.textContent = "identical bytes";
      else if (file.pixels_to_keep) {
        const check = file.pixels_to_keep;
        pixels.textContent = `pixels ${check.same ? "match" : "differ"}${check.mirrored ? " (mirrored)" : ""}` +
          ` · ${check.distance.toFixed(1)} apart`;
        if (check.mirrored) pixels.classList.add("mirrored");
      }
      const name = document.createElement("div");
      name.className = "name";
      name.textContent = shortName(file.path);
      name.title = visible(file.path);
      const detail = document.createElement("div");
      detail.className = "detail";
      const size = file.width ? `${file.width}×${file.height}` : "size unknown";
      detail.textContent = `${size} · ${humanSize(file.size)} · ${file.taken || file.modified}`;
      card.append(thumbLink(file.id, file.path), badge, pixels, name, detail, originalLink(file.id));
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

// The start page: what the library holds, and the photos added last (each leads to photos like it).
async function showStart(note) {
  const mine = ++searchId;
  els.query.hidden = true;
  showResultsView();
  try {
    const [info, latest] = await Promise.all([api("/api/info"), api(`/api/latest?k=${encodeURIComponent(els.k.value)}`)]);
    if (mine !== searchId) return;
    const folders = info.roots.map((r) => visible(r.path));
    const where = folders.length ? ` in ${folders.length === 1 ? folders[0] : `${folders.length} folders`}` : "";
    render(latest.results, (note ? note + " " : "") + (info.count
      ? `${libraryCount(info.count, info.videos)}${where}. Added last:`
      : "The library is empty: index a folder with `edge-search index DIR`."));
  } catch (error) {
    if (mine === searchId) say(error.message, true);
  }
}

let shown = null; // the view on screen: popstate and hashchange both fire on one navigation
function routeKey() {
  return `${window.location.hash}|${history.state ? JSON.stringify(history.state.name || "") + history.state.image : ""}`;
}

function route() {
  if (routeKey() === shown) return;
  shown = routeKey();
  if (window.location.hash === "#dupes") { showDupes(); return; }
  const match = /^#similar\/(\d+)$/.exec(window.location.hash);
  if (match) {
    const link = document.querySelector(`a[href="#similar/${match[1]}"]`);
    searchSimilar(match[1], link ? link.dataset.name : null);
    return;
  }
  const state = history.state;
  if (state && state.view === "search") {
    searchId++; // a search still running for another entry must not draw over this one
    if (!state.results) { // it failed, or the page was reloaded meanwhile: its photo is gone with the old page
      history.replaceState(null, "", window.location.pathname);
      shown = routeKey();
      showStart("That search did not finish: choose the photo again.");
      return;
    }
    showQuery(state.image, state.name);
    render(state.results);
    return;
  }
  showStart();
}

// "CPU", "CUDA", "TensorRT", "OpenVINO": what a person calls the engine (the exact provider is in the tooltip)
function engineName(provider) {
  const names = { CPUExecutionProvider: "CPU", CUDAExecutionProvider: "CUDA", TensorrtExecutionProvider: "TensorRT" };
  return names[provider] || (provider || "").replace(/ CPU$/, "");
}

// "51 photos and 1 video": the files the library holds (a video counts once, however many frames it has)
function libraryCount(files, videos) {
  const photos = files - (videos || 0);
  const plural = (n, word) => `${n.toLocaleString()} ${word}${n === 1 ? "" : "s"}`;
  return videos ? `${plural(photos, "photo")} and ${plural(videos, "video")}` : plural(photos, "photo");
}

async function refreshStatus() {
  try {
    const health = await api("/api/health");
    const watch = health.watch;
    let text = `${libraryCount(health.count, health.videos)} · ${engineName(health.provider)} · ${health.precision}`;
    if (watch && watch.indexing) text += " · indexing new photos…";
    else if (watch && watch.mode === "events") text += ` · watching ${watch.roots.length} folder${watch.roots.length === 1 ? "" : "s"}`;
    els.status.textContent = text;
    els.status.title = `${health.provider}, ${health.precision} graph`;
    els.words.hidden = !health.text;
    els.logout.hidden = !health.login;
    els.warning.hidden = !health.random_weights;
    els.warning.textContent = health.random_weights
      ? "This model has random weights (a test bundle): the results are not meaningful." : "";
  } catch (error) {
    els.status.textContent = error.message;
  }
}

// The photo view: the photo large, its folder and name in full, when it was taken, its size and score; arrows,
// ← / → and swipes move through the results on screen, Esc (or ✕) closes it.
function openViewer(index) {
  viewing = index;
  drawViewer();
  if (!els.viewer.open) els.viewer.showModal();
}

function drawViewer() {
  const hit = shownHits[viewing];
  if (!hit) return;
  els.viewerVideo.pause();
  els.viewerImage.hidden = isVideo(hit);
  els.viewerVideo.hidden = !isVideo(hit);
  els.viewerOriginal.href = fileAt(hit);
  if (isVideo(hit)) { drawVideo(hit); return; }
  els.viewerVideo.removeAttribute("src");
  els.viewerImage.src = `/api/thumb/${hit.id}`; // at once; the original replaces it once loaded
  els.viewerImage.alt = shortName(hit.path);
  const full = new Image();
  full.onload = () => {
    if (shownHits[viewing] !== hit) return;
    els.viewerImage.src = full.src;
    details(hit, `${full.naturalWidth}×${full.naturalHeight}`);
  };
  full.src = `/api/image/${hit.id}`;
  els.viewerPath.textContent = visible(hit.path);
  details(hit, "");
  fetch(`/api/image/${hit.id}`, { method: "HEAD", credentials: "same-origin" }).then((response) => {
    const bytes = Number(response.headers.get("content-length"));
    if (shownHits[viewing] === hit && bytes) { hit.bytes = bytes; details(hit, els.viewerDetail.dataset.pixels || ""); }
  }).catch(() => {});
  drawViewerBar(hit);
}

function drawViewerBar(hit) {
  els.viewerCount.textContent = `${viewing + 1} / ${shownHits.length}`;
  els.viewerPrev.disabled = viewing === 0;
  els.viewerNext.disabled = viewing === shownHits.length - 1;
  els.viewerSimilar.href = `#similar/${hit.id}`;
  els.viewerSimilar.dataset.name = hit.path;
}

// A video plays in the view from its best-matching moment; its frame shows until it starts.
function drawVideo(hit) {
  els.viewerPath.textContent = visible(hit.path);
  els.viewerVideo.poster = `/api/thumb/${hit.id}`;
  els.viewerVideo.src = fileAt(hit);
  els.viewerVideo.onloadedmetadata = () => {
    if (shownHits[viewing] !== hit) return;
    if (hit.at !== undefined && Math.abs(els.viewerVideo.currentTime - hit.at) > 0.5) els.viewerVideo.currentTime = hit.at;
    details(hit, `${els.viewerVideo.videoWidth}×${els.viewerVideo.videoHeight}`);
  };
  els.viewerVideo.play().catch(() => {}); // a browser may refuse to play sound unasked: the controls are there
  details(hit, "");
  drawViewerBar(hit);
}

function details(hit, pixels) {
  els.viewerDetail.dataset.pixels = pixels;
  const parts = [hit.taken ? `taken ${hit.taken}` : "date unknown"];
  if (isVideo(hit) && hit.at !== undefined) {
    const also = (hit.moments || []).slice(1).map((moment) => formatTime(moment.at));
    parts.unshift(`video at ${formatTime(hit.at)}` + (also.length ? ` (also ${also.join(", ")})` : ""));
  }
  if (pixels) parts.push(pixels);
  if (hit.bytes) parts.push(humanSize(hit.bytes));
  if (hit.score !== undefined) parts.push(`score ${hit.score.toFixed(4)}`);
  els.viewerDetail.textContent = parts.join(" · ");
}

function step(delta) {
  const next = viewing + delta;
  if (next >= 0 && next < shownHits.length) { viewing = next; drawViewer(); }
}

els.viewerPrev.addEventListener("click", () => step(-1));
els.viewerNext.addEventListener("click", () => step(1));
els.viewerClose.addEventListener("click", () => els.viewer.close());
els.viewer.addEventListener("close", () => els.viewerVideo.pause());
els.viewerSimilar.addEventListener("click", () => els.viewer.close());
els.viewer.addEventListener("keydown", (event) => {
  if (event.key === "ArrowLeft") { event.preventDefault(); step(-1); }
  if (event.key === "ArrowRight") { event.preventDefault(); step(1); }
});
let touchX = null;
els.viewer.addEventListener("touchstart", (event) => { touchX = event.changedTouches[0].clientX; }, { passive: true });
els.viewer.addEventListener("touchend", (event) => {
  if (touchX === null) return;
  const moved = event.changedTouches[0].clientX - touchX;
  touchX = null;
  if (Math.abs(moved) > 50) step(moved < 0 ? 1 : -1); // swipe left: the next photo
});

// Back to the start page from any view: a new history entry, so Back returns to the view left.
document.querySelector("header h1 a").addEventListener("click", (event) => {
  event.preventDefault();
  history.pushState(null, "", "/");
  shown = routeKey();
  showStart();
});

// "Show": the view on screen again, with that many photos.
function rerun() {
  const state = history.state;
  const similar = /^#similar\/(\d+)$/.exec(window.location.hash);
  if (window.location.hash === "#dupes") return;
  if (similar) { searchSimilar(similar[1], els.queryName.title); return; }
  if (!state || state.view !== "search") { showStart(); return; }
  if (state.text || uploads.has(state.image)) {
    search(() => api("/api/query", { method: "POST", body: viewForm(state) }), state);
  }
}

els.k.addEventListener("change", rerun);
els.after.addEventListener("change", rerun);
els.before.addEventListener("change", rerun);
els.picker.addEventListener("submit", (event) => { event.preventDefault(); searchText(els.text.value); });
els.file.addEventListener("change", () => { searchFile(els.file.files[0]); els.file.value = ""; });
window.addEventListener("hashchange", route);
window.addEventListener("popstate", route);

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
