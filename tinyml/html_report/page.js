"use strict";
// Draws the report from the JSON in #report-data. Every model-derived string reaches the page
// as a text node or an attribute value set through the DOM, never as markup.
(function () {
  const R = JSON.parse(document.getElementById("report-data").textContent);
  const SVGNS = "http://www.w3.org/2000/svg";
  const main = document.getElementById("main");
  const tip = document.getElementById("tip");

  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    for (const k of kids) if (k !== null && k !== undefined) e.append(k instanceof Node ? k : String(k));
    return e;
  }
  function sv(tag, attrs, text) {
    const e = document.createElementNS(SVGNS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  // numbers as the CLI prints them: 1,234 for integers, a few decimals otherwise
  function fmt(v, digits) {
    if (v === null || v === undefined) return "-";
    if (typeof v === "boolean") return v ? "yes" : "no";
    if (typeof v !== "number") return String(v);
    if (Number.isInteger(v)) return v.toLocaleString("en-US");
    return v.toFixed(digits === undefined ? 2 : digits);
  }
  const shape = (s) => (s && s.length ? s.join("x") : "scalar");
  // converters build long hierarchical names; the last component says enough in running text
  function short(name) {
    const parts = String(name).split(/[;/]/).filter((p) => p);
    const last = parts.length ? parts[parts.length - 1] : String(name);
    return last.length > 40 ? last.slice(0, 39) + "\u2026" : last;
  }

  function hover(node, text) {
    node.addEventListener("mousemove", (ev) => {
      tip.textContent = typeof text === "function" ? text() : text;
      tip.hidden = false;
      const x = Math.min(ev.clientX + 14, window.innerWidth - tip.offsetWidth - 8);
      const y = ev.clientY + 16 + tip.offsetHeight > window.innerHeight ? ev.clientY - tip.offsetHeight - 10 : ev.clientY + 16;
      tip.style.left = x + "px";
      tip.style.top = y + "px";
    });
    node.addEventListener("mouseleave", () => { tip.hidden = true; });
  }

  function section(id, title, ...kids) {
    const s = el("section", { id: id }, el("h2", {}, title), ...kids);
    main.append(s);
    document.getElementById("toc").append(el("a", { href: "#" + id }, title));
    return s;
  }

  // Marks a layer's step on the memory timeline (set by S.timeline), so a table row shows where it runs.
  let markStep = () => {};

  // A table whose numeric and text columns sort on a click of their header; rows with an `index`
  // (layers) mark their step on the timeline when hovered.
  // columns: {key, label, num, digits, get(row), show(row), cls}
  function sortable(columns, rows, rowClass) {
    const body = el("tbody");
    const head = el("tr");
    let sorted = { key: null, dir: 1 };
    function fill(list) {
      body.replaceChildren(...list.map((r) => {
        const tr = el("tr", rowClass ? { class: rowClass(r) } : {});
        if (r.index !== undefined && R.model) tr.addEventListener("mouseenter", () => markStep(r.index));
        for (const c of columns) {
          const v = c.get ? c.get(r) : r[c.key];
          const cell = el("td", { "data-col": c.key, class: (c.num ? "num " : "") + (c.cls || "") });
          const shown = c.show ? c.show(r) : fmt(v, c.digits);
          cell.append(shown instanceof Node ? shown : String(shown));
          if (c.cls === "name") cell.title = String(shown);
          tr.append(cell);
        }
        return tr;
      }));
    }
    for (const c of columns) {
      const th = el("th", { class: "sortable" + (c.num ? " num" : ""), "data-col": c.key, "aria-sort": "none" }, c.label);
      th.addEventListener("click", () => {
        sorted = { key: c.key, dir: sorted.key === c.key ? -sorted.dir : (c.num ? -1 : 1) };
        const get = c.get || ((r) => r[c.key]);
        const list = rows.slice().sort((a, b) => {
          const x = get(a), y = get(b);
          if (x === y) return 0;
          if (x === null || x === undefined) return 1;
          if (y === null || y === undefined) return -1;
          return (x < y ? -1 : 1) * sorted.dir;
        });
        for (const h of head.children) h.setAttribute("aria-sort", "none");
        th.setAttribute("aria-sort", sorted.dir > 0 ? "ascending" : "descending");
        fill(list);
      });
      head.append(th);
    }
    fill(rows);
    return el("div", { class: "tablewrap" }, el("table", {}, el("thead", {}, head), body));
  }

  // Vertical bars, one per item {label, value, tip, fill}; the largest items are named below the chart,
  // with their share of the total when the values add up (share false: ratios do not).
  function bars(title, items, unit, share) {
    const wrap = el("div", {}, el("h3", {}, title));
    const few = items.length <= 16;
    const W = Math.max(few ? 120 * items.length : 900, items.length * 6), H = 170, left = 70, bottom = few ? 30 : 18;
    const max = Math.max(1, ...items.map((i) => i.value || 0));
    const svg = sv("svg", { width: W + left + 10, height: H + bottom + 10, class: "bars", "data-chart": title });
    svg.append(sv("line", { x1: left, y1: 5, x2: left, y2: H + 5, class: "axis" }));
    for (const f of [0, 0.5, 1]) {
      const y = 5 + H - f * H;
      svg.append(sv("line", { x1: left, y1: y, x2: left + W, y2: y, class: "grid" }));
      svg.append(sv("text", { x: left - 6, y: y + 4, "text-anchor": "end" }, fmt(Math.round(f * max))));
    }
    const bw = W / Math.max(1, items.length);
    items.forEach((it, k) => {
      const h = ((it.value || 0) / max) * H;
      const r = sv("rect", { class: "bar", x: left + k * bw + bw * 0.1, y: 5 + H - h, width: Math.max(1, bw * 0.8), height: Math.max(h, 0.5) });
      if (it.fill) r.style.fill = it.fill;
      hover(r, it.tip);
      svg.append(r);
      if (few) svg.append(sv("text", { x: left + (k + 0.5) * bw, y: H + 20, "text-anchor": "middle" }, short(it.label).slice(0, 22)));
    });
    wrap.append(el("div", { class: "scroll" }, svg));
    const total = items.reduce((s, i) => s + (i.value || 0), 0);
    const top = items.slice().sort((a, b) => (b.value || 0) - (a.value || 0)).slice(0, 3).filter((i) => i.value);
    if (top.length && total)
      wrap.append(el("p", { class: "note" }, "largest: " + top.map((i) =>
        `${i.label} ${fmt(i.value, 3)}${unit || ""}` + (share === false ? "" : ` (${Math.round((100 * i.value) / total)}%)`)).join("; ")));
    return wrap;
  }

  // ---- sections: one renderer per name in R.sections (a new verb adds its own) ----

  const S = {};

  S.summary = function () {
    const res = R.result;
    const figs = el("div", { class: "figs" });
    for (const f of R.key_figures) {
      figs.append(el("div", { class: "fig" }, el("span", { class: "label" }, f.label),
        el("span", { class: "value", "data-key": f.key }, f.unit === "%" ? fmt(100 * res[f.key], 1) : fmt(res[f.key])),
        f.unit ? " " + f.unit : ""));
    }
    const s = section("summary", "Summary", figs);
    const p = res.patches;
    if (p && p.chosen) {
      s.append(el("p", { class: "note" }, `patch schedule ${p.schedule}: arena ${fmt(p.arena_bytes)} B instead of ` +
        `${fmt(p.arena_bytes_layer_by_layer)} B layer by layer; MACs +${fmt(100 * p.mac_overhead, 1)}%` +
        (p.input === "streamed" ? `; input streamed (${fmt(p.streamed_input_bytes)} B outside the arena)` : "")));
    } else if (p) {
      s.append(el("p", { class: "note" }, `patches ${p.mode}: layer by layer (arena ${fmt(p.arena_bytes_layer_by_layer)} B)`));
    }
    if (R.model) {
      const m = R.model.memory;
      const peak = R.model.layers[m.peak_step];
      const live = m.buffers.filter((b) => b.first <= m.peak_step && m.peak_step <= b.last).sort((a, b) => b.bytes - a.bytes);
      s.append(el("p", { class: "note", id: "peak-note" }, `peak: ${fmt(m.live_bytes[m.peak_step])} B live at step ${m.peak_step}` +
        (peak ? ` (#${peak.index} ${peak.op})` : " (graph outputs)") + "; largest buffers then: " +
        live.slice(0, 3).map((b) => `${b.kind === "scratch" ? "scratch" : short(m.buffers[b.head].tensors[0])} ${fmt(b.bytes)} B`).join(", ") +
        `. Arena ${fmt(m.arena_bytes)} B, placed by ${m.strategy}.`));
    }
  };

  S.validation = function () {
    const r = R.result;
    const verdict = el("div", { class: "verdict " + (r.bit_exact ? "good" : "bad"), id: "verdict" },
      r.bit_exact ? `bit-exact with TensorFlow Lite Micro over ${r.inputs} inputs`
        : `${r.mismatched_outputs} of ${r.inputs} output sets differ from TensorFlow Lite Micro`);
    const rows = [
      ["target", r.target + (r.board ? ` (${r.board})` : "")], ["inputs compared", fmt(r.inputs)],
      ["differing output sets", fmt(r.mismatched_outputs)], ["differing elements", fmt(r.mismatched_elements)],
      ["largest difference", fmt(r.max_abs_diff)],
      ["first divergent layer", r.first_divergence ? `#${r.first_divergence.layer} ${r.first_divergence.op} (${r.first_divergence.tensor})` : "-"],
    ];
    if (r.tflm_arena_bytes)
      rows.push(["arena: ours / TFLite Micro", `${fmt(r.arena_bytes)} B / ${fmt(r.tflm_arena_bytes)} B (${fmt(r.arena_bytes / r.tflm_arena_bytes)}x)`]);
    const t = el("table", {}, el("tbody", {}, ...rows.map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, v)))));
    const s = section("validation", "Validation against TensorFlow Lite Micro", verdict, t);
    for (const d of r.mismatch_details || []) s.append(el("p", { class: "note" }, d));
  };

  S.budget = function () {
    if (!R.budgets) {
      section("budget", "Board budgets", el("p", { class: "note" }, "No board given: pass --board to see RAM and flash against the board's."));
      return;
    }
    const s = section("budget", `Budgets of ${R.board.title}`);
    for (const b of R.budgets) {
      const frac = b.used / b.budget;
      s.append(el("div", { class: "bar-row" }, el("strong", {}, b.what),
        el("div", { class: "bar-track" }, el("div", { class: "bar-fill" + (frac > 1 ? " over" : ""), style: `width:${Math.min(100, 100 * frac)}%` })),
        el("span", {}, el("span", { "data-key": b.key }, fmt(b.used)), ` of ${fmt(b.budget)} B (${fmt(100 * frac, 1)}%)`)));
      s.append(el("p", { class: "note" }, b.what + ": " + b.source));
    }
  };

  S.timeline = function () {
    const m = R.model.memory, layers = R.model.layers;
    const W = Math.max(1000, m.steps * 3), H = 380, left = 80, top = 24;
    const lane = m.streamed.length ? 34 : 0, bottom = 34 + lane;
    // the layer-by-layer arena of a patch schedule is drawn only when it does not squash the plan
    const base = m.arena_layer_by_layer, baseShown = base && base <= 1.6 * m.arena_bytes;
    const ymax = Math.max(m.arena_bytes, baseShown ? base : 0, 1) * 1.06;
    const X = (s) => left + ((s + 0.5) / m.steps) * W, Y = (b) => top + H - (b / ymax) * H;
    const sw = W / m.steps;
    const svg = sv("svg", { width: left + W + 20, height: top + H + bottom, id: "timeline" });
    const defs = sv("defs");
    const hatch = sv("pattern", { id: "hatch", width: 6, height: 6, patternUnits: "userSpaceOnUse", patternTransform: "rotate(45)" });
    hatch.append(sv("rect", { width: 6, height: 6, fill: "#e4e4e4" }), sv("line", { x1: 0, y1: 0, x2: 0, y2: 6, stroke: "#999", "stroke-width": 2 }));
    defs.append(hatch);
    svg.append(defs);
    for (const st of m.stages) {
      const r = sv("rect", { class: "stage", x: X(st.first) - sw / 2, y: top, width: (st.last - st.first + 1) * sw, height: H, fill: "#dde8fb", opacity: 0.6 });
      hover(r, `patch stage ${st.label}: steps ${st.first}-${st.last}`);
      svg.append(r, sv("text", { x: X(st.first) - sw / 2 + 3, y: top - 6 }, `patch stage ${st.label}`));
    }
    for (let k = 0; k <= 4; k++) {
      const b = Math.round((ymax / 1.06) * k / 4), y = Y(b);
      svg.append(sv("line", { x1: left, y1: y, x2: left + W, y2: y, class: "grid" }), sv("text", { x: left - 6, y: y + 4, "text-anchor": "end" }, fmt(b)));
    }
    m.buffers.forEach((b, i) => {
      const r = sv("rect", {
        class: "buf", "data-i": i, x: X(b.first) - sw * 0.45, width: (b.last - b.first + 0.9) * sw,
        y: Y(b.offset + b.bytes), height: Math.max(0.5, Y(b.offset) - Y(b.offset + b.bytes)),
        fill: b.kind === "scratch" ? "url(#hatch)" : `hsl(${(b.head * 47) % 360},55%,72%)`,
      });
      const names = b.kind === "scratch" ? [`scratch of layer #${b.first} ${layers[b.first] ? layers[b.first].op : ""}`] : m.buffers[b.head].tensors;
      const op = (s) => (layers[s] ? `#${s} ${layers[s].op}` : "graph outputs");
      hover(r, () => names.slice(0, 4).join("\n") + (names.length > 4 ? `\n+${names.length - 4} more tensors` : "") +
        `\n${fmt(b.bytes)} B at offset ${fmt(b.offset)}` + (b.kind === "segment" ? " (part of this tensor group's bytes)" : "") +
        `\nlive steps ${b.first}-${b.last}: ${op(b.first)} to ${op(b.last)}`);
      svg.append(r);
    });
    const pts = m.live_bytes.map((v, s) => `${X(s) - sw / 2},${Y(v)} ${X(s) + sw / 2},${Y(v)}`).join(" ");
    svg.append(sv("polyline", { points: pts, fill: "none", stroke: "#000", "stroke-width": 1.2, id: "live-line" }));
    const ya = Y(m.arena_bytes);
    svg.append(sv("line", { x1: left, y1: ya, x2: left + W, y2: ya, stroke: "#c62828", "stroke-dasharray": "6 4", "stroke-width": 1.5 }),
      sv("text", { x: left + W - 4, y: ya - 5, "text-anchor": "end", fill: "#c62828" }, `arena ${fmt(m.arena_bytes)} B`));
    if (baseShown) {
      const yb = Y(base);
      svg.append(sv("line", { x1: left, y1: yb, x2: left + W, y2: yb, stroke: "#777", "stroke-dasharray": "2 3" }),
        sv("text", { x: left + 4, y: yb - 5 }, `layer by layer ${fmt(base)} B`));
    } else if (base) {
      svg.append(sv("text", { x: left + 4, y: top + 12 }, `layer by layer: ${fmt(base)} B (above this scale)`));
    }
    const cursor = sv("rect", { id: "step-cursor", y: top, width: Math.max(sw, 2), height: H, fill: "#2760c4", opacity: 0.25, visibility: "hidden", "pointer-events": "none" });
    svg.append(cursor);
    markStep = (s) => {
      cursor.setAttribute("x", X(s) - Math.max(sw, 2) / 2);
      cursor.setAttribute("data-step", s);
      cursor.setAttribute("visibility", "visible");
    };
    const px = X(m.peak_step), pv = m.live_bytes[m.peak_step];
    const peak = sv("g", { id: "peak" });
    peak.append(sv("line", { x1: px, y1: top, x2: px, y2: top + H, stroke: "#c62828", "stroke-width": 1 }),
      sv("circle", { cx: px, cy: Y(pv), r: 4, fill: "#c62828" }),
      sv("text", { x: px + 6, y: top + 12, fill: "#c62828" }, `peak ${fmt(pv)} B live (step ${m.peak_step})`));
    svg.append(peak);
    svg.append(sv("line", { x1: left, y1: top + H, x2: left + W, y2: top + H, class: "axis" }));
    const every = Math.max(1, Math.ceil(m.steps / (W / 40)));
    for (let s = 0; s < m.steps; s += every) svg.append(sv("text", { x: X(s), y: top + H + 14, "text-anchor": "middle" }, s));
    for (const st of m.streamed) {
      const y = top + H + 22;
      const r = sv("rect", { class: "streamed", x: X(st.first) - sw / 2, y: y, width: (st.last - st.first + 1) * sw, height: 14, fill: "url(#hatch)", stroke: "#b77d00" });
      hover(r, `${st.tensor}\nstreamed input: ${fmt(st.bytes)} B read window by window through tinyml_read_input(), outside the arena\nread at steps ${st.first}-${st.last}`);
      svg.append(r, sv("text", { x: X(st.last) + sw, y: y + 11 }, "streamed input (outside the arena)"));
    }
    svg.append(sv("text", { x: 12, y: top + H / 2, transform: `rotate(-90 12 ${top + H / 2})`, "text-anchor": "middle" }, "arena offset (bytes)"));
    section("memory", "Memory timeline",
      el("p", { class: "note" }, `Each rectangle is one arena buffer (${m.buffers.length}): x = the steps it is live, y = its bytes in the arena. ` +
        "Hover for the tensor, its bytes and lifetime; hover a table row below to mark its step here. Black line: bytes live at each step (no placement can use less than its top); " +
        "red: the arena and the peak step. Hatched: layer scratch" + (m.streamed.length ? " and the streamed input." : ".")),
      el("div", { class: "scroll" }, svg));
  };

  function layerLabel(l) { return `#${l.index} ${l.op} ${l.tensor || l.name || ""}`; }

  S.costs = function () {
    const L = R.model.layers;
    const measured = R.model.instructions_source;  // where per-layer instructions come from, if any
    const cols = [
      { key: "index", label: "#", num: true },
      { key: "op", label: "op" },
      { key: "tensor", label: "output tensor", cls: "name" },
      { key: "macs", label: "MACs", num: true },
      { key: "weight_bytes", label: "weights B", num: true },
      { key: "live_bytes", label: "live B", num: true },
    ];
    if (measured) {
      cols.push({ key: "instructions", label: "instructions", num: true },
        { key: "instructions_per_mac", label: "instr/MAC", num: true, get: (l) => (l.macs && l.instructions !== null ? l.instructions / l.macs : null) });
    }
    const s = section("costs", "Per-layer costs", el("p", { class: "note" },
      "MACs and weight bytes follow from the graph; live bytes are the arena bytes in use at that step" +
      (measured ? `; instructions: ${measured}.` : "; no per-layer instructions in this run (bench --per-layer measures them).")),
      sortable(cols, L));
    const item = (l, v) => ({ label: `#${l.index} ${l.op}`, value: v, tip: `${layerLabel(l)}\n${fmt(v)}` });
    s.append(bars("MACs per layer", L.map((l) => item(l, l.macs))));
    if (measured) s.append(bars(`Instructions per layer (${measured})`, L.map((l) => item(l, l.instructions))));
    s.append(bars("Weight bytes per layer", L.map((l) => item(l, l.weight_bytes)), " B"));
  };

  S.graph = function () {
    const L = R.model.layers;
    const cols = [
      { key: "index", label: "#", num: true },
      { key: "op", label: "op" },
      { key: "name", label: "layer", cls: "name" },
      { key: "from", label: "from", show: (l) => l.from.map((i) => (i === null ? "input" : "#" + i)).join(", "), get: (l) => Math.min(...l.from.map((i) => (i === null ? -1 : i))) },
      { key: "inputs", label: "inputs", show: (l) => l.inputs.map(shape).join(", "), get: (l) => l.inputs.length },
      { key: "output", label: "output", show: (l) => shape(l.output), get: (l) => l.output.reduce((a, b) => a * b, 1) },
      { key: "bits", label: "bits (out / weights)", show: (l) => `${l.bits ?? "-"} / ${l.weight_bits.length ? l.weight_bits.join(",") : "-"}` },
      { key: "marks", label: "marks", get: (l) => (l.in_place ? 1 : 0) + (l.patch ? 2 : 0), show: (l) => {
        const span = el("span");
        if (l.in_place) span.append(el("span", { class: "badge inplace" }, "in place"));
        if (l.patch) span.append(el("span", { class: "badge patch" }, `stage ${l.patch.stage} patch ${l.patch.row},${l.patch.col}`));
        if (l.streamed_input) span.append(el("span", { class: "badge stream" }, "streamed input"));
        return span;
      } },
    ];
    section("graph", "Model graph (execution order)", el("p", { class: "note" },
      `${L.length} layers as the firmware runs them. In place: the output overwrites an input's bytes. ` +
      "Patch-stage layers run once per patch of the stage's grid."), sortable(cols, L, (l) => (l.patch ? "stage" : "")));
  };

  S.bench = function () {
    const res = R.result, runs = res.runs;
    const cols = R.bench.columns.map((c) => ({
      key: c.key, label: c.label, num: !["model", "board", "kernels", "bit_exact", "error"].includes(c.key),
      digits: c.key.includes("_vs_") || c.key.includes("per_mac") ? 3 : 2, cls: c.key === "error" ? "name" : "",
    }));
    const figs = el("div", { class: "figs" },
      el("div", { class: "fig" }, el("span", { class: "label" }, "all runs bit-exact"), el("span", { class: "value", "data-key": "bit_exact" }, fmt(res.bit_exact))),
      el("div", { class: "fig" }, el("span", { class: "label" }, "runs"), el("span", { class: "value" }, fmt(runs.length))),
      el("div", { class: "fig" }, el("span", { class: "label" }, "inputs per run"), el("span", { class: "value" }, fmt(res.inputs_per_run))));
    const s = section("bench", "Benchmark: ours vs TensorFlow Lite Micro", figs,
      el("p", { class: "note" }, "Instructions are exact QEMU counts per inference; RAM is arena + stack + model data. anchor: " + (R.bench.anchor_source || "-")),
      sortable(cols, runs));
    const lab = (r) => `${r.model} ${r.board} ${r.kernels}`;
    s.append(bars("Instructions per MAC", runs.map((r) => ({ label: lab(r), value: r.instructions_per_mac, tip: `${lab(r)}\n${fmt(r.instructions_per_mac, 3)} instructions per MAC` })), "", false));
    const ram = [];
    for (const r of runs) {
      ram.push({ label: lab(r) + " RAM", value: r.ram_bytes, tip: `${lab(r)}\nRAM ${fmt(r.ram_bytes)} B` });
      ram.push({ label: lab(r) + " TFLM arena", value: r.tflm_arena_bytes, tip: `${r.model}\nTFLite Micro arena ${fmt(r.tflm_arena_bytes)} B`, fill: "#9aa3b2" });
    }
    s.append(bars("RAM (ours, blue) beside TFLite Micro's arena (grey), bytes", ram, " B", false));
    for (const r of runs.filter((x) => x.per_layer)) {
      const d = el("details", {}, el("summary", {}, `per layer: ${lab(r)} (profiled build)`));
      d.append(sortable([
        { key: "index", label: "#", num: true }, { key: "op", label: "op" }, { key: "name", label: "layer", cls: "name" },
        { key: "macs", label: "MACs", num: true }, { key: "instructions", label: "instructions", num: true },
        { key: "instructions_per_mac", label: "instr/MAC", num: true },
      ], r.per_layer));
      d.append(bars("Instructions per layer", r.per_layer.map((l) => ({ label: `#${l.index} ${l.op}`, value: l.instructions, tip: `#${l.index} ${l.op} ${l.name}\n${fmt(l.instructions)} instructions` }))));
      s.append(d);
    }
  };

  const kind = { analyze: "planned figures (no firmware run)", validate: "measured on the target",
    demo: "default model measured in QEMU", bench: "measured in QEMU" }[R.kind] || "";
  document.getElementById("subtitle").textContent = `${R.generator} · ${R.kind}: ${kind}`;
  for (const name of R.sections) if (S[name] && (R.model || !["timeline", "costs", "graph"].includes(name))) S[name]();
})();
