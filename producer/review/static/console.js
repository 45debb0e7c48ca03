// The review console: plain JavaScript, no build step, nothing from another origin.
// Keys: Enter/j open the oldest free scan; g / c / n record genuine / counterfeit / not a banknote;
// u undoes the last review (within its minute); Esc leaves the note field.
"use strict";
(function () {
  const CSRF = document.body.dataset.csrfHeader;
  const $ = (id) => document.getElementById(id);
  let current = null;      // the scan open now: the claim's answer
  let queue = [];          // the last queue answer's items
  let lastReview = null;   // {scan_id, until}: what `u` takes back
  let busy = false;

  async function call(method, path, body) {
    const headers = {};
    if (method === "POST") { headers[CSRF] = "1"; }
    if (body !== undefined) { headers["Content-Type"] = "application/json"; }
    const res = await fetch(path, {method, headers, credentials: "same-origin",
                                   body: body === undefined ? undefined : JSON.stringify(body)});
    const data = await res.json().catch(() => ({}));
    if (res.status === 401) { location.reload(); }
    if (!res.ok) { throw new Error((data.error && data.error.detail) || res.statusText); }
    return data;
  }

  function status(text, isError) {
    $("status").textContent = text;
    $("status").className = isError ? "error" : "";
  }

  function age(s) {
    if (s < 120) { return Math.round(s) + " s"; }
    if (s < 7200) { return Math.round(s / 60) + " min"; }
    return (s / 3600).toFixed(1) + " h";
  }

  function cell(tr, text) {
    const td = document.createElement("td");
    td.textContent = text;
    tr.appendChild(td);
  }

  async function refresh() {
    let data;
    try { data = await call("GET", "/review/api/queue"); } catch (e) { status(e.message, true); return; }
    queue = data.items;
    const body = $("queue").querySelector("tbody");
    body.replaceChildren();
    for (const item of queue) {
      const tr = document.createElement("tr");
      tr.dataset.scanId = item.scan_id;
      if (item.overdue) { tr.classList.add("overdue"); }
      if (item.claimed_by) { tr.classList.add("held"); }
      cell(tr, item.scan_id.slice(0, 8));
      cell(tr, item.tenant);
      cell(tr, item.why || "");
      cell(tr, age(item.age_s) + (item.overdue ? " (over SLA " + age(item.sla_s) + ")" : ""));
      cell(tr, item.claimed_by || "");
      tr.addEventListener("click", () => open(item.scan_id));
      body.appendChild(tr);
    }
    const total = data.total === undefined ? queue.length : data.total;
    $("queue-count").textContent = total > queue.length ? "(oldest " + queue.length + " of " + total + ")"
                                                        : "(" + queue.length + ")";
  }

  async function open(scanId) {
    if (busy) { return; }
    busy = true;
    try {
      if (current && current.scan_id !== scanId) {
        await call("POST", "/review/api/scans/" + current.scan_id + "/release").catch(() => {});
      }
      current = await call("POST", "/review/api/scans/" + scanId + "/claim");
      current.claimedAt = Date.now();
      show(current);
      status("Reviewing " + scanId.slice(0, 8) + ": g genuine, c counterfeit, n not a banknote.");
    } catch (e) {
      status(e.message, true);
      current = null;
      $("scan-pane").hidden = true;
    } finally {
      busy = false;
    }
    refresh();
  }

  function show(scan) {
    $("scan-pane").hidden = false;
    $("scan-id").textContent = scan.scan_id;
    $("scan-tenant").textContent = "tenant " + scan.tenant;
    $("scan-source").textContent = scan.source === "qc_sample" ? "QC sample" : "model unsure";
    $("scan-image").src = scan.image_url;
    $("scan-canonical").src = scan.canonical_url;
    $("model-decision").textContent = scan.decision;
    $("model-reason").textContent = scan.reason ? "(" + scan.reason + ")" : "";
    $("model-confidence").textContent = scan.confidence == null ? "n/a" : scan.confidence.toFixed(3);
    $("model-p").textContent = scan.p_counterfeit == null ? "n/a" : scan.p_counterfeit.toFixed(3);
    $("model-version").textContent = scan.model ? "model " + scan.model : "";
    const body = $("signs").querySelector("tbody");
    body.replaceChildren();
    const names = Object.keys(scan.signs).sort((a, b) => scan.signs[b] - scan.signs[a]);
    for (const name of names) {
      const tr = document.createElement("tr");
      const td = document.createElement("td");
      const box = document.createElement("input");
      box.type = "checkbox";
      box.value = name;
      box.id = "sign-" + name;
      td.appendChild(box);
      tr.appendChild(td);
      cell(tr, name + (scan.signs_detected.includes(name) ? " *" : ""));
      const score = document.createElement("td");
      const bar = document.createElement("span");
      bar.className = "bar";
      bar.style.width = Math.round(scan.signs[name] * 120) + "px";
      score.appendChild(bar);
      score.appendChild(document.createTextNode(" " + scan.signs[name].toFixed(3)));
      tr.appendChild(score);
      body.appendChild(tr);
    }
    $("note").value = "";
  }

  async function label(value) {
    if (!current || busy) { return; }
    busy = true;
    const signs = Array.from(document.querySelectorAll("#signs input:checked")).map((b) => b.value);
    const scanId = current.scan_id;
    try {
      const res = await call("POST", "/review/api/scans/" + scanId + "/review",
                             {label: value, signs_seen: signs, note: $("note").value});
      lastReview = {scan_id: scanId, until: Date.now() + res.undo_s * 1000};
      $("undo-what").textContent = scanId.slice(0, 8) + " as " + value;
      $("undo-bar").hidden = false;
      status("Recorded " + scanId.slice(0, 8) + " as " + value + ".");
      current = null;
      $("scan-pane").hidden = true;
    } catch (e) {
      status(e.message, true);
    } finally {
      busy = false;
    }
    await refresh();
    next();
  }

  async function undo() {
    if (!lastReview || Date.now() > lastReview.until) { return; }
    const scanId = lastReview.scan_id;
    try {
      await call("POST", "/review/api/scans/" + scanId + "/undo");
      lastReview = null;
      $("undo-bar").hidden = true;
      if (current) {
        await call("POST", "/review/api/scans/" + current.scan_id + "/release").catch(() => {});
        current = null;
      }
      await open(scanId);
      status("Took back the review of " + scanId.slice(0, 8) + ": judge it again.");
    } catch (e) {
      status(e.message, true);
    }
  }

  function next() {
    const free = queue.find((item) => !item.claimed_by);
    if (free) { open(free.scan_id); } else { status("Nothing awaits review."); }
  }

  function tick() {
    if (lastReview) {
      const left = Math.round((lastReview.until - Date.now()) / 1000);
      if (left <= 0) { lastReview = null; $("undo-bar").hidden = true; }
      else { $("undo-left").textContent = left + " s left"; }
    }
  }

  document.addEventListener("keydown", (ev) => {
    if (ev.target === $("note")) {
      if (ev.key === "Escape") { $("note").blur(); }
      return;
    }
    if (ev.ctrlKey || ev.metaKey || ev.altKey) { return; }
    const keys = {g: "genuine", c: "counterfeit", n: "not_a_banknote"};
    if (keys[ev.key]) { ev.preventDefault(); label(keys[ev.key]); }
    else if (ev.key === "u") { ev.preventDefault(); undo(); }
    else if (ev.key === "j" || ev.key === "Enter") { ev.preventDefault(); if (!current) { next(); } }
  });
  for (const button of document.querySelectorAll(".actions button[data-label]")) {
    button.addEventListener("click", () => label(button.dataset.label));
  }
  $("release").addEventListener("click", async () => {
    if (!current) { return; }
    await call("POST", "/review/api/scans/" + current.scan_id + "/release").catch(() => {});
    current = null;
    $("scan-pane").hidden = true;
    refresh();
  });
  $("undo").addEventListener("click", undo);
  // an API installed without the model extra cannot render the canonical view: say so, keep the scan
  $("scan-canonical").addEventListener("error", () => {
    $("scan-canonical").hidden = true;
    $("scan-canonical").nextElementSibling.textContent = "the model's canonical view is not available here";
  });
  $("scan-canonical").addEventListener("load", () => {
    $("scan-canonical").hidden = false;
    $("scan-canonical").nextElementSibling.textContent = "the model's canonical view";
  });
  // keep the claim while the reviewer looks: renewed at a third of its lifetime (the claim call renews
  // a claim its holder already has)
  setInterval(() => {
    if (current && !busy && Date.now() - (current.claimedAt || 0) > current.claim_ttl_s * 1000 / 3) {
      current.claimedAt = Date.now();
      call("POST", "/review/api/scans/" + current.scan_id + "/claim").catch((e) => status(e.message, true));
    }
  }, 5000);
  setInterval(refresh, 10000);
  setInterval(tick, 1000);
  refresh();
}());
