// pingpath report charts: plain SVG built from the JSON embedded in the
// page. No libraries, no network. Each chart draws into its own <div>;
// at the end the page records that rendering finished.
(function () {
  'use strict';
  var D = JSON.parse(document.getElementById('data').textContent);
  var NS = 'http://www.w3.org/2000/svg';
  var PATH = ['A', 'B_1', 'B', 'C', 'CJ', 'D', 'E', 'F', 'G', 'H', 'I_1', 'I', 'J', 'K', 'L', 'M',
    'virt_unmeasured_sender', 'virt_unmeasured_receiver'];
  var COLORS = {
    A: '#4e79a7', M: '#4e79a7', F: '#76b7b2', G: '#76b7b2', H: '#76b7b2',
    B: '#f28e2b', K: '#f28e2b', D: '#ffbe7d', I: '#ffbe7d',
    C: '#59a14f', J: '#59a14f', CJ: '#59a14f',
    E: '#e15759', L: '#e15759', B_1: '#ff9d9a', I_1: '#ff9d9a',
    virt_unmeasured_sender: '#bab0ac', virt_unmeasured_receiver: '#9c755f',
    RTT: '#222', ping_RTT: '#888'
  };
  var LAYER_COLORS = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#bab0ac'];
  var charts = 0;

  function el(tag, attrs, parent) {
    var e = document.createElementNS(NS, tag);
    for (var k in attrs) { if (Object.prototype.hasOwnProperty.call(attrs, k)) e.setAttribute(k, attrs[k]); }
    if (parent) parent.appendChild(e);
    return e;
  }
  function text(parent, x, y, s, attrs) {
    var a = attrs || {};
    a.x = x; a.y = y;
    if (!a['font-size']) a['font-size'] = 11;
    var t = el('text', a, parent);
    t.textContent = s;
    return t;
  }
  function svg(host, w, h) {
    var s = el('svg', { width: '100%', viewBox: '0 0 ' + w + ' ' + h, role: 'img', preserveAspectRatio: 'xMinYMin meet' });
    host.appendChild(s);
    charts++;
    return s;
  }
  function fmt(x) { return (Math.round(x * 10) / 10).toString(); }
  function title(node, s) { el('title', {}, node).textContent = s; }

  // Layers: one stacked bar of the mean RTT.
  function layers() {
    var host = document.getElementById('layers');
    if (!host || !D.layers || D.layers.length === 0) return;
    var W = 1000, H = 70, s = svg(host, W, H);
    var total = 0;
    D.layers.forEach(function (l) { total += Math.max(l.mean_us, 0); });
    if (total <= 0) return;
    var x = 0;
    D.layers.forEach(function (l, i) {
      var w = Math.max(l.mean_us, 0) / total * W;
      var r = el('rect', { x: x, y: 10, width: w, height: 30, fill: LAYER_COLORS[i % LAYER_COLORS.length] }, s);
      title(r, l.name + ': ' + fmt(l.mean_us) + ' µs (' + fmt(l.share * 100) + ' %)');
      if (w > 60) text(s, x + 4, 30, l.name, { fill: '#fff' });
      if (w > 40) text(s, x + 2, 58, fmt(l.share * 100) + ' %');
      x += w;
    });
  }

  // Waterfall: one ping's segments along the path.
  function waterfall() {
    var host = document.getElementById('waterfall');
    var pick = document.getElementById('wf-pick');
    var rows = (D.per_ping || []).filter(function (p) { return p.complete; });
    if (!host || !pick) return;
    if (rows.length === 0) { host.textContent = 'No complete ping.'; return; }
    var rttOf = function (p) { var v = p.values_us; return v.RTT !== undefined ? v.RTT : (v.ping_RTT || 0); };
    var sorted = rows.slice().sort(function (a, b) { return rttOf(a) - rttOf(b); });
    var choices = [['median', sorted[Math.floor((sorted.length - 1) / 2)]], ['fastest', sorted[0]], ['slowest', sorted[sorted.length - 1]]];
    rows.slice(0, 500).forEach(function (p) { choices.push(['id ' + p.id + ' seq ' + p.seq, p]); });
    choices.forEach(function (c, i) {
      var o = document.createElement('option');
      o.value = i;
      o.textContent = c[0] + ' (id ' + c[1].id + ' seq ' + c[1].seq + ', ' + fmt(rttOf(c[1])) + ' µs)';
      pick.appendChild(o);
    });
    function draw(p) {
      while (host.firstChild) host.removeChild(host.firstChild);
      var v = p.values_us, ex = p.excluded || [];
      var segs = PATH.filter(function (k) {
        if (v[k] === undefined) return false;
        if (k === 'CJ' && v.C !== undefined) return false;
        return true;
      });
      var total = 0;
      segs.forEach(function (k) { if (ex.indexOf(k) < 0) total += Math.max(v[k], 0); });
      if (total <= 0) { host.textContent = 'Nothing to draw for this ping.'; return; }
      var W = 1000, L = 190, rowH = 18, H = segs.length * rowH + 30;
      var s = svg(host, W, H);
      var scale = (W - L - 80) / total, x = 0;
      segs.forEach(function (k, i) {
        var y = 5 + i * rowH, val = v[k], bad = ex.indexOf(k) >= 0;
        text(s, 4, y + 12, k + (bad ? ' (refused)' : ''), bad ? { fill: '#b00020' } : {});
        var w = bad ? 0 : Math.max(val, 0) * scale;
        var r = el('rect', { x: L + x, y: y + 2, width: Math.max(w, 1), height: rowH - 5, fill: bad ? '#b00020' : (COLORS[k] || '#999') }, s);
        title(r, k + ': ' + fmt(val) + ' µs');
        text(s, L + x + w + 4, y + 12, fmt(val) + ' µs');
        x += w;
      });
      text(s, L, H - 6, 'sum ' + fmt(total) + ' µs; RTT ' + fmt(rttOf(p)) + ' µs', { fill: '#666' });
    }
    pick.addEventListener('change', function () { draw(choices[+pick.value][1]); });
    draw(choices[0][1]);
  }

  // Distributions: a box per segment from the summary statistics.
  function distributions() {
    var host = document.getElementById('dist');
    if (!host) return;
    // RTT is left out: on its scale the segments would be invisible.
    var names = PATH.filter(function (k) { return k !== 'virt_unmeasured_sender' && k !== 'virt_unmeasured_receiver'; });
    var stats = [];
    names.forEach(function (k) {
      var st = (D.segments || {})[k];
      if (st && st.n > 0) stats.push([k, st]);
    });
    ['sender', 'receiver'].forEach(function (side) {
      var st = (D.residuals || {})[side];
      if (st && st.n > 0) stats.push(['unmeasured ' + side, st]);
    });
    if (stats.length === 0) { host.textContent = 'No data.'; return; }
    var lo = 0, hi = 0;
    // Scale to the p99s; a larger max is drawn at the edge.
    stats.forEach(function (e) { lo = Math.min(lo, e[1].min_us); hi = Math.max(hi, e[1].p99_us); });
    var W = 1000, L = 150, rowH = 20, H = stats.length * rowH + 30, s = svg(host, W, H);
    var sx = function (x) { return L + (x - lo) / ((hi - lo) || 1) * (W - L - 20); };
    stats.forEach(function (e, i) {
      var k = e[0], st = e[1], y = 5 + i * rowH, c = COLORS[k] || '#999';
      text(s, 4, y + 13, k + ' (n=' + st.n + ')');
      el('line', { x1: sx(st.min_us), x2: sx(st.p99_us), y1: y + 9, y2: y + 9, stroke: c }, s);
      var b = el('rect', { x: sx(st.p50_us), y: y + 3, width: Math.max(sx(st.p90_us) - sx(st.p50_us), 1), height: 12, fill: c, opacity: 0.7 }, s);
      title(b, k + ': p50 ' + fmt(st.p50_us) + ', p90 ' + fmt(st.p90_us) + ', p99 ' + fmt(st.p99_us) + ', max ' + fmt(st.max_us) + ' µs');
      el('line', { x1: sx(st.mean_us), x2: sx(st.mean_us), y1: y + 1, y2: y + 17, stroke: '#000' }, s);
      el('circle', { cx: sx(Math.min(st.max_us, hi)), cy: y + 9, r: 2.5, fill: st.max_us > hi ? '#b00020' : c }, s);
    });
    el('line', { x1: sx(0), x2: sx(0), y1: 0, y2: H - 20, stroke: '#ccc' }, s);
    text(s, L, H - 5, fmt(lo) + ' µs', { fill: '#666' });
    text(s, W - 80, H - 5, fmt(hi) + ' µs', { fill: '#666' });
  }

  // Over time: RTT and the three segments with the largest mean contribution.
  function overTime() {
    var host = document.getElementById('time');
    var rows = D.per_ping || [];
    if (!host) return;
    if (rows.length === 0) { host.textContent = 'No data.'; return; }
    var contrib = D.contrib_mean_us || {};
    var top = Object.keys(contrib).filter(function (k) { return k !== 'unattributed'; })
      .sort(function (a, b) { return contrib[b] - contrib[a]; }).slice(0, 3);
    var series = ['RTT', 'ping_RTT'].concat(top);
    var step = Math.max(1, Math.ceil(rows.length / 1500));
    var pts = [];
    for (var i = 0; i < rows.length; i += step) pts.push([i, rows[i]]);
    var hi = 0;
    series.forEach(function (k) {
      pts.forEach(function (p) {
        var v = p[1].values_us[k];
        if (v !== undefined && (p[1].excluded || []).indexOf(k) < 0) hi = Math.max(hi, v);
      });
    });
    if (hi <= 0) { host.textContent = 'No data.'; return; }
    var W = 1000, H = 300, L = 60, B = 30, s = svg(host, W, H);
    var sx = function (i) { return L + i / Math.max(rows.length - 1, 1) * (W - L - 130); };
    var sy = function (v) { return H - B - v / hi * (H - B - 10); };
    el('line', { x1: L, x2: L, y1: 10, y2: H - B, stroke: '#999' }, s);
    el('line', { x1: L, x2: W - 130, y1: H - B, y2: H - B, stroke: '#999' }, s);
    text(s, 4, 16, fmt(hi) + ' µs');
    text(s, 4, H - B, '0');
    text(s, L, H - 8, 'ping #1');
    text(s, W - 200, H - 8, 'ping #' + rows.length);
    series.forEach(function (k, si) {
      var d = '';
      pts.forEach(function (p) {
        var v = p[1].values_us[k];
        if (v === undefined || (p[1].excluded || []).indexOf(k) >= 0) return;
        d += (d === '' ? 'M' : 'L') + sx(p[0]).toFixed(1) + ' ' + sy(v).toFixed(1);
      });
      if (d === '') return;
      var c = COLORS[k] || '#999';
      el('path', { d: d, fill: 'none', stroke: c, 'stroke-width': k === 'RTT' ? 2 : 1.2, 'stroke-dasharray': k === 'ping_RTT' ? '4 3' : '' }, s);
      el('rect', { x: W - 120, y: 14 + si * 18, width: 12, height: 4, fill: c }, s);
      text(s, W - 104, 20 + si * 18, k);
    });
  }

  layers();
  waterfall();
  distributions();
  overTime();
  var status = document.getElementById('render-status');
  status.textContent = 'charts rendered: ' + charts;
  status.setAttribute('data-rendered', String(charts));
})();
