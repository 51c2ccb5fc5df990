// edgechain dashboard: a live view of one node's snapshot (src/edgechain/api/snapshot.py
// documents its keys). Server-sent events from /events; while they fail, a poll of
// /dashboard/snapshot every 2 s. Every text goes into the page as a text node.
'use strict';

(function () {
  const SVG_NS = 'http://www.w3.org/2000/svg';
  const POLL_MS = 2000;
  const RECONNECT_MS = 10000;
  const MAX_CELLS = 60;
  const GUTTER = 56; // the labels' column left of the strip and the chart (slots align)

  const $ = (id) => document.getElementById(id);

  // --- building DOM without innerHTML ------------------------------------------------

  function setAttrs(node, attrs) {
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === 'text') node.textContent = String(value);
      else if (key === 'data') {
        for (const [k, v] of Object.entries(value)) if (v !== null && v !== undefined) node.dataset[k] = String(v);
      } else if (key === 'style') {
        for (const [k, v] of Object.entries(value)) node.style.setProperty(k, String(v));
      } else node.setAttribute(key, String(value));
    }
    return node;
  }

  function append(node, children) {
    for (const child of [].concat(children === undefined ? [] : children)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  const h = (tag, attrs, children) => append(setAttrs(document.createElement(tag), attrs), children);
  const s = (tag, attrs, children) => append(setAttrs(document.createElementNS(SVG_NS, tag), attrs), children);

  // --- formatting --------------------------------------------------------------------

  const isNum = (v) => typeof v === 'number' && Number.isFinite(v);
  const pct = (bp) => (isNum(bp) ? (bp / 100).toFixed(bp < 1000 ? 1 : 0) + '%' : '–');

  function fmtMs(v) {
    if (!isNum(v)) return '–';
    if (v >= 10000) return (v / 1000).toFixed(1) + ' s';
    return (v < 10 ? v.toFixed(1) : String(Math.round(v))) + ' ms';
  }

  function fmtBytes(n) {
    if (!isNum(n)) return null;
    const units = ['B', 'kB', 'MB', 'GB'];
    let i = 0;
    while (n >= 1000 && i < units.length - 1) { n /= 1000; i += 1; }
    return (i === 0 ? String(n) : n.toFixed(1)) + ' ' + units[i];
  }

  // Colours per app: golden-angle hues in registry (app id) order, so that a few apps
  // are far apart; an app reported but gone from the registry gets its id's hash's hue.
  let colors = new Map();

  function assignColors(apps) {
    colors = new Map(apps.map((app, i) => [app.id, 'hsl(' + ((200 + i * 137.508) % 360).toFixed(0) + ' 70% ' + (i % 2 ? 66 : 58) + '%)']));
  }

  function appColor(id) {
    const known = colors.get(id);
    if (known) return known;
    let hash = 2166136261;
    for (const ch of String(id)) hash = Math.imul(hash ^ ch.charCodeAt(0), 16777619) >>> 0;
    return 'hsl(' + (hash % 360) + ' 70% 60%)';
  }

  // --- state -------------------------------------------------------------------------

  let last = null;
  let lastAt = 0;
  let seenMigrations = null; // keys of migrations already shown (null: first render)

  function appNames(snap) {
    const names = new Map();
    for (const app of snap.apps) names.set(app.id, app.name);
    return names;
  }

  function nodeLabel(snap, id) {
    if (!id) return '–';
    return id === snap.node.id ? id.slice(0, 8) + ' (this node)' : id.slice(0, 8);
  }

  // --- overview ----------------------------------------------------------------------

  function roleBadge(role) {
    if (role === 'producer') return h('span', { class: 'badge producer', title: 'block producer this slot', text: 'producer' });
    if (role === 'committee') return h('span', { class: 'badge committee', title: 'committee member this slot', text: 'committee' });
    return null;
  }

  function lastInterval(blocks) {
    for (let i = blocks.length - 1; i > 0; i -= 1) {
      const a = blocks[i - 1].accepted_ms;
      const b = blocks[i].accepted_ms;
      if (isNum(a) && isNum(b)) return b - a;
    }
    return null;
  }

  function renderOverview(snap) {
    const me = snap.node;
    $('chain-id').textContent = me.chain_id || '';
    $('current-slot').textContent = me.slot;
    $('head-slot').textContent = me.head_slot === null ? '–' : me.head_slot;
    $('head-hash').textContent = me.head || '–';
    $('block-time').textContent = fmtMs(lastInterval(snap.blocks));
    $('validators').textContent = me.validators;
    $('node-id').textContent = me.id;
    $('node-role').replaceChildren(...[roleBadge(me.role)].filter(Boolean));
    $('peers').textContent = me.peers;
    $('rss').textContent = isNum(me.rss_mb) ? me.rss_mb + ' MiB' : '–';
    document.title = 'edgechain · slot ' + me.slot;
  }

  // --- chain: the block strip and the block intervals ---------------------------------

  function chainSlots(snap) {
    // The last MAX_CELLS slots up to the current one; slots without a block are empty.
    const bySlot = new Map(snap.blocks.map((b) => [b.slot, b]));
    const end = Math.max(snap.node.slot, snap.node.head_slot || 0);
    const start = Math.max(1, end - MAX_CELLS + 1);
    const cells = [];
    for (let slot = start; slot <= end; slot += 1) cells.push({ slot, block: bySlot.get(slot) || null });
    return cells;
  }

  function renderStrip(snap, cells) {
    const strip = $('block-strip');
    const width = strip.clientWidth || 600;
    const cell = (width - GUTTER) / MAX_CELLS;
    const gap = cell > 6 ? 2 : 1;
    const parts = [];
    cells.forEach(({ slot, block }, i) => {
      const x = GUTTER + i * cell;
      const g = s('g', { data: { slot, kind: block ? (block.skip ? 'skip' : 'block') : 'empty' } });
      let title;
      if (!block) {
        title = 'slot ' + slot + (slot >= snap.node.slot ? ': in progress' : ': no block');
        g.append(s('rect', { class: 'empty', x: x + 0.5, y: 0.5, width: Math.max(cell - gap - 1, 1), height: 38, rx: 2 }));
      } else {
        const kind = block.skip ? 'skip block' : 'block';
        const by = block.by ? (block.skip ? ' · excluded ' : ' · by ') + nodeLabel(snap, block.by) : '';
        title = 'slot ' + slot + ' · ' + kind + ' ' + block.hash + by + ' · votes ' + block.signers + '/' + block.committee;
        g.append(s('rect', { class: block.skip ? 'skip' : 'block', x, y: 0, width: Math.max(cell - gap, 1), height: 39, rx: 2 }));
        if (block.hash === snap.node.head) {
          g.append(s('rect', { class: 'head', x: x - 1, y: -1, width: Math.max(cell - gap, 1) + 2, height: 41, rx: 3 }));
        }
        const share = block.committee > 0 ? Math.min(block.signers / block.committee, 1) : 0;
        g.append(s('rect', { class: 'vote-bg', x, y: 43, width: Math.max(cell - gap, 1), height: 6 }));
        g.append(s('rect', { class: 'vote', x, y: 43, width: Math.max((cell - gap) * share, 0), height: 6 }));
      }
      g.prepend(s('title', { text: title }));
      parts.push(g);
      if (slot % 10 === 0) parts.push(s('text', { x: x, y: 62, text: slot }));
    });
    parts.push(s('text', { x: 0, y: 23, text: 'blocks' }), s('text', { x: 0, y: 50, text: 'votes' }));
    strip.setAttribute('viewBox', '0 -2 ' + width + ' 66');
    strip.replaceChildren(...parts);
  }

  function renderTimes(snap, cells) {
    const chart = $('block-times');
    const width = chart.clientWidth || 600;
    const height = 90;
    const cell = (width - GUTTER) / MAX_CELLS;
    const index = new Map(cells.map((c, i) => [c.slot, i]));
    const slotMs = snap.node.slot_duration_ms || 1000;
    const points = [];
    for (let i = 1; i < snap.blocks.length; i += 1) {
      const a = snap.blocks[i - 1];
      const b = snap.blocks[i];
      if (isNum(a.accepted_ms) && isNum(b.accepted_ms) && index.has(b.slot)) {
        points.push({ slot: b.slot, dt: b.accepted_ms - a.accepted_ms, x: GUTTER + index.get(b.slot) * cell + cell / 2 });
      }
    }
    const top = Math.max(2 * slotMs, ...points.map((p) => p.dt));
    const y = (v) => height - 12 - (Math.max(v, 0) / top) * (height - 22);
    const parts = [
      s('line', { class: 'grid-line', x1: GUTTER, x2: width, y1: y(0), y2: y(0) }),
      s('line', { class: 'slot-line', x1: GUTTER, x2: width, y1: y(slotMs), y2: y(slotMs) }),
      s('text', { x: 0, y: y(slotMs) + 3, text: fmtMs(slotMs) }),
      s('text', { x: 0, y: y(top) + 3, text: fmtMs(top) }),
      s('text', { x: 0, y: y(0) + 3, text: '0' }),
    ];
    if (points.length > 1) {
      parts.push(s('polyline', { class: 'series', points: points.map((p) => p.x.toFixed(1) + ',' + y(p.dt).toFixed(1)).join(' ') }));
    }
    for (const p of points) {
      parts.push(s('circle', { class: p.dt > 1.5 * slotMs ? 'point late' : 'point', cx: p.x, cy: y(p.dt), r: 2.5 },
        [s('title', { text: 'slot ' + p.slot + ': ' + fmtMs(p.dt) + ' after the previous block' })]));
    }
    chart.setAttribute('viewBox', '0 0 ' + width + ' ' + height);
    chart.replaceChildren(...parts);
  }

  function renderChain(snap) {
    const cells = chainSlots(snap);
    const blocks = snap.blocks.filter((b) => !b.skip).length;
    $('chain-note').textContent = 'slots ' + (cells.length ? cells[0].slot + '–' + cells[cells.length - 1].slot : '–') +
      ' · ' + blocks + ' blocks, ' + (snap.blocks.length - blocks) + ' skip';
    renderStrip(snap, cells);
    renderTimes(snap, cells);
  }

  // --- nodes: load, apps as stacked bars, roles --------------------------------------

  function renderNode(snap, node, names, placedOn) {
    const placedHere = placedOn.get(node.id) || [];
    const placement = new Map(snap.apps.map((a) => [a.id, a.node]));
    const segments = [];
    const chips = [];
    let used = 0;
    for (const app of node.apps) {
      const name = names.get(app.id) || app.id;
      const leaving = placement.get(app.id) !== node.id;
      const width = Math.min(app.cpu_bp, 10000 - used);
      used += width;
      segments.push(h('span', {
        class: leaving ? 'seg leaving' : 'seg',
        data: { appId: app.id, reported: 'yes' },
        style: { width: width / 100 + '%', background: appColor(app.id) },
        title: name + ' · cpu ' + pct(app.cpu_bp) + ' · ram ' + pct(app.ram_bp) + (leaving ? ' · placed elsewhere now' : ''),
      }));
      chips.push(h('span', { data: { appId: app.id } }, [
        h('i', { class: 'swatch', style: { background: appColor(app.id) } }), name + ' ' + pct(app.cpu_bp),
      ]));
    }
    const reported = new Set(node.apps.map((a) => a.id));
    for (const app of placedHere) {
      if (reported.has(app.id)) continue;
      segments.push(h('span', {
        class: 'seg placed',
        data: { appId: app.id, reported: 'no' },
        style: { width: '0%', background: appColor(app.id) },
        title: app.name + ' · placed here, not in a report yet',
      }));
      chips.push(h('span', { data: { appId: app.id } }, [
        h('i', { class: 'swatch', style: { background: appColor(app.id) } }), app.name + ' (starting)',
      ]));
    }
    if (isNum(node.cpu_bp) && node.cpu_bp > used) {
      segments.push(h('span', {
        class: 'seg other',
        style: { width: (node.cpu_bp - used) / 100 + '%' },
        title: 'the node itself and other processes · ' + pct(node.cpu_bp - used),
      }));
    }
    const figures = isNum(node.cpu_bp)
      ? 'cpu ' + pct(node.cpu_bp) + ' · ram ' + pct(node.ram_bp) + (node.pressure_bp ? ' · psi ' + pct(node.pressure_bp) : '')
      : 'no report';
    const isSelf = node.id === snap.node.id;
    return h('li', { class: 'node', data: { nodeId: node.id, status: node.status, role: node.role } }, [
      h('div', { class: 'node-head' }, [
        h('span', { class: 'status-dot', title: node.status }),
        h('span', { class: 'mono', title: 'node ' + node.id, text: node.id }),
        isSelf ? h('span', { class: 'badge self', text: 'this node' }) : null,
        roleBadge(node.role),
        node.status !== 'active' ? h('span', { class: 'status-text', text: node.status }) : null,
        h('span', { class: 'figures', text: figures }),
      ]),
      h('div', { class: 'bar', data: { bar: node.id }, title: 'cpu ' + pct(node.cpu_bp) }, segments),
      h('div', { class: 'ram', title: 'ram ' + pct(node.ram_bp) }, [
        h('span', { style: { width: (isNum(node.ram_bp) ? node.ram_bp / 100 : 0) + '%' } }),
      ]),
      chips.length ? h('div', { class: 'node-apps' }, chips) : null,
    ]);
  }

  function renderNodes(snap) {
    const names = appNames(snap);
    const placedOn = new Map();
    for (const app of snap.apps) {
      if (!app.node || app.state === 'stopped') continue;
      if (!placedOn.has(app.node)) placedOn.set(app.node, []);
      placedOn.get(app.node).push(app);
    }
    $('node-list').replaceChildren(...snap.nodes.map((n) => renderNode(snap, n, names, placedOn)));
  }

  // --- migrations, newest first --------------------------------------------------------

  function renderMigration(snap, m, names, fresh) {
    const name = names.get(m.app) || m.name || m.app;
    const route = m.from ? nodeLabel(snap, m.from) + ' → ' + nodeLabel(snap, m.to) : 'on ' + nodeLabel(snap, m.to);
    let timings = null;
    if (m.outcome !== undefined) {
      const ok = m.outcome === 'completed' || m.outcome === 'already_there';
      const size = fmtBytes(m.bytes);
      timings = h('div', { class: 'timings' }, [
        h('span', { class: ok ? 'outcome-ok' : 'outcome-bad', text: m.outcome }),
        m.attempts > 1 ? ' (' + m.attempts + ' attempts)' : '',
        ' · ', h('span', {}, ['save ', h('b', { text: fmtMs(m.save_ms) })]),
        ' · ', h('span', {}, ['transmit ', h('b', { text: fmtMs(m.transmit_ms) })]),
        ' · ', h('span', {}, ['resume ', h('b', { text: fmtMs(m.resume_ms) })]),
        size ? ' · ' + size : '',
        m.live ? ' · live' : '',
      ]);
    } else if (m.action === 'migrate') {
      timings = h('div', { class: 'timings muted', text: 'timings: measured by the origin node' });
    }
    return h('li', {
      class: fresh ? 'migration fresh' : 'migration',
      data: { appId: m.app, slot: m.slot, action: m.action, from: m.from, to: m.to },
    }, [
      h('span', { class: 'slot', text: 'slot ' + m.slot }),
      h('span', { class: 'what' }, [h('span', { class: 'name', title: m.app, text: name }), ' ']),
      h('span', { class: 'action ' + m.action, text: m.action }),
      h('div', { class: 'route mono', text: route }),
      timings,
    ]);
  }

  function renderMigrations(snap) {
    const names = appNames(snap);
    const first = seenMigrations === null;
    const seen = new Set();
    const items = [];
    for (const m of snap.migrations.slice().reverse()) {
      const key = [m.slot, m.action, m.app, m.to].join(':');
      seen.add(key);
      items.push(renderMigration(snap, m, names, !first && !seenMigrations.has(key)));
    }
    seenMigrations = seen;
    $('migrations').replaceChildren(...items);
    $('migrations-empty').hidden = items.length > 0;
  }

  // --- apps (the bars' legend) -----------------------------------------------------------

  function renderApps(snap) {
    const items = snap.apps.map((app) => {
      let where = app.node ? 'on ' + nodeLabel(snap, app.node) : 'waiting for a node';
      if (app.move_to) where += ' → ' + nodeLabel(snap, app.move_to) + ' (move requested)';
      return h('li', { class: 'app', data: { appId: app.id, state: app.state, node: app.node } }, [
        h('i', { class: 'swatch', style: { background: appColor(app.id) } }),
        h('span', { class: 'name', title: app.id }, [app.name, h('span', { class: 'mono', text: app.id.slice(0, 8) })]),
        h('span', { class: 'where mono', text: where }),
        h('span', { class: 'state ' + app.state, text: app.state + ' · ' + app.runtime }),
      ]);
    });
    $('apps').replaceChildren(...items);
    $('apps-empty').hidden = items.length > 0;
    $('apps-count').textContent = items.length ? String(items.length) : '';
  }

  // --- applying a snapshot -----------------------------------------------------------------

  function render(snap) {
    assignColors(snap.apps);
    for (const part of [renderOverview, renderChain, renderNodes, renderMigrations, renderApps]) {
      try {
        part(snap);
      } catch (err) {
        console.error('dashboard: ' + part.name + ' failed', err);
      }
    }
  }

  function apply(text) {
    const snap = JSON.parse(text);
    last = snap;
    lastAt = Date.now();
    render(snap);
  }

  function showAge() {
    if (!lastAt) return;
    const age = Math.round((Date.now() - lastAt) / 1000);
    $('updated').textContent = age < 2 ? 'just now' : age + ' s ago';
  }

  // --- connection: events, else polling -------------------------------------------------------

  let source = null;
  let pollTimer = null;
  let reconnectTimer = null;

  function setConnection(state, text) {
    const badge = $('connection');
    badge.dataset.state = state;
    $('connection-text').textContent = text;
  }

  async function poll() {
    try {
      const reply = await fetch('/dashboard/snapshot', { cache: 'no-store' });
      if (!reply.ok) throw new Error('HTTP ' + reply.status);
      apply(await reply.text());
      if (pollTimer !== null) setConnection('polling', 'polling every 2 s');
    } catch (err) {
      if (pollTimer !== null) setConnection('disconnected', 'disconnected');
    }
  }

  function startPolling() {
    if (pollTimer !== null) return;
    setConnection('polling', 'polling every 2 s');
    pollTimer = setInterval(poll, POLL_MS);
    poll();
  }

  function stopPolling() {
    if (pollTimer === null) return;
    clearInterval(pollTimer);
    pollTimer = null;
  }

  function connect() {
    reconnectTimer = null;
    if (!('EventSource' in window)) {
      startPolling();
      return;
    }
    source = new EventSource('/events');
    source.addEventListener('snapshot', (event) => {
      stopPolling();
      setConnection('live', 'live');
      apply(event.data);
    });
    source.onerror = () => {
      // The browser retries an interrupted stream itself; a refused one is closed.
      if (source.readyState === EventSource.CLOSED && reconnectTimer === null) {
        source = null;
        reconnectTimer = setTimeout(connect, RECONNECT_MS);
      }
      startPolling();
    };
  }

  window.addEventListener('resize', () => {
    if (last) {
      try { renderChain(last); } catch (err) { console.error(err); }
    }
  });
  setInterval(showAge, 1000);
  connect();
})();
