// StatsYard's page: a series tree, graphs drawn by /render, a time range,
// auto-refresh. Plain JavaScript, no dependencies.
"use strict";

const graphs = [];  // targets shown, in order
let refreshTimer = null;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

async function getJSON(path, params) {
  const response = await fetch(path + "?" + new URLSearchParams(params));
  if (!response.ok) throw new Error(path + ": " + response.status + " " + (await response.text()));
  return response.json();
}

// -- the tree ------------------------------------------------------------------

async function loadBranch(list, query) {
  const nodes = await getJSON("/metrics/find", { query: query });
  list.replaceChildren();
  for (const node of nodes) {
    const label = el("span", { class: "node " + (node.leaf ? "leaf" : "branch"), "data-id": node.id }, node.text);
    const item = el("li", {}, label);
    if (node.leaf) {
      label.title = "add a graph of " + node.id;
      label.addEventListener("click", () => addGraph(node.id));
    } else {
      const children = el("ul", { hidden: "" });
      item.append(children);
      label.addEventListener("click", async () => {
        const open = label.classList.toggle("open");
        children.hidden = !open;
        if (open && !children.childElementCount) await loadBranch(children, node.id + ".*");
      });
    }
    list.append(item);
  }
}

async function loadTagged() {
  const names = await getJSON("/metrics/index.json", {});
  const list = document.getElementById("tagged");
  list.replaceChildren();
  for (const name of names.filter((n) => n.includes(";"))) {
    const [metric, ...tags] = name.split(";");
    const exprs = ["name=" + metric, ...tags].map((t) => "'" + t + "'").join(",");
    const label = el("span", { class: "node leaf", "data-id": name }, name);
    label.addEventListener("click", () => addGraph("seriesByTag(" + exprs + ")"));
    list.append(el("li", {}, label));
  }
}

// -- graphs ----------------------------------------------------------------------

function timeRange() {
  const range = document.getElementById("range").value;
  if (range !== "custom") return { from: range, until: "now" };
  return {
    from: document.getElementById("from").value || "-1h",
    until: document.getElementById("until").value || "now",
  };
}

function renderURL(target, figure) {
  const width = Math.max(300, Math.min(800, figure.parentElement.clientWidth - 40));
  const params = new URLSearchParams({
    target: target, format: "png", width: String(width), height: "300",
    title: target, _t: String(Date.now()), ...timeRange(),
  });
  return "/render?" + params;
}

function drawAll() {
  for (const figure of document.querySelectorAll("#graphs figure")) {
    figure.querySelector("img").src = renderURL(figure.dataset.target, figure);
  }
}

function addGraph(target) {
  target = target.trim();
  if (!target) return;
  graphs.push(target);
  const img = el("img", { alt: target });
  const figure = el("figure", { "data-target": target },
    el("figcaption", {}, target,
      el("button", { type: "button", title: "remove", onclick: () => removeGraph(figure) }, "✕")),
    img);
  document.getElementById("graphs").append(figure);
  img.src = renderURL(target, figure);
  saveState();
}

function removeGraph(figure) {
  const index = graphs.indexOf(figure.dataset.target);
  if (index >= 0) graphs.splice(index, 1);
  figure.remove();
  saveState();
}

// -- state in the URL's hash, so a page can be bookmarked -------------------------

function saveState() {
  const params = new URLSearchParams();
  for (const target of graphs) params.append("target", target);
  params.set("range", document.getElementById("range").value);
  params.set("refresh", document.getElementById("refresh").value);
  history.replaceState(null, "", "#" + params);
}

function loadState() {
  const params = new URLSearchParams(location.hash.slice(1));
  if (params.get("range")) document.getElementById("range").value = params.get("range");
  if (params.get("refresh")) document.getElementById("refresh").value = params.get("refresh");
  for (const target of params.getAll("target")) addGraph(target);
}

function setRefresh() {
  if (refreshTimer !== null) clearInterval(refreshTimer);
  const seconds = Number(document.getElementById("refresh").value);
  refreshTimer = seconds > 0 ? setInterval(drawAll, seconds * 1000) : null;
  saveState();
}

document.getElementById("range").addEventListener("change", (event) => {
  document.getElementById("custom").hidden = event.target.value !== "custom";
  drawAll();
  saveState();
});
document.getElementById("from").addEventListener("change", drawAll);
document.getElementById("until").addEventListener("change", drawAll);
document.getElementById("refresh").addEventListener("change", setRefresh);
document.getElementById("add-target").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = document.getElementById("target");
  addGraph(input.value);
  input.value = "";
});
document.getElementById("clear").addEventListener("click", () => {
  for (const figure of [...document.querySelectorAll("#graphs figure")]) removeGraph(figure);
});

loadState();
setRefresh();
loadBranch(document.getElementById("tree"), "*").catch((error) => console.error(error));
loadTagged().catch((error) => console.error(error));
