// Shared by report.html and compare.html: colors, formatting and the chart
// helpers around the Apache ECharts bundle embedded in the page (SVG
// renderer, no network). The page's own script follows this one and uses
// the names below; #render-status says how many charts were drawn.
var PP = (function () {
  'use strict';
  var FONT = 'system-ui, -apple-system, "Segoe UI", sans-serif';
  var LAYER = {
    A: 'VM stack', M: 'VM stack', F: 'VM stack', G: 'VM stack', H: 'VM stack',
    B: 'host forwarding', D: 'host forwarding', I: 'host forwarding', K: 'host forwarding',
    C: 'physical network', J: 'physical network', CJ: 'physical network',
    E: 'virtualization measured', L: 'virtualization measured', B_1: 'virtualization measured', I_1: 'virtualization measured',
    virt_unmeasured_sender: 'virtualization unmeasured', virt_unmeasured_receiver: 'virtualization unmeasured'
  };
  var LAYER_COLOR = {
    'VM stack': '#4e79a7', 'host forwarding': '#f28e2b', 'physical network': '#59a14f',
    'virtualization measured': '#b07aa1', 'virtualization unmeasured': '#9d9d9d'
  };
  var SEGMENT_COLOR = {
    A: '#4e79a7', M: '#2e5a87', F: '#76b7b2', G: '#5a9a95', H: '#3e7d78',
    B: '#f28e2b', K: '#d0701a', D: '#ffbe7d', I: '#e8a35e', C: '#59a14f', J: '#3f8a36', CJ: '#59a14f',
    E: '#b07aa1', L: '#8f5a80', B_1: '#d4a6c8', I_1: '#c08bb5',
    virt_unmeasured_sender: '#9d9d9d', virt_unmeasured_receiver: '#7f7f7f', RTT: '#222222', ping_RTT: '#888888'
  };
  var charts = [];
  var drawn = 0;

  function fmt(x) { return (Math.round(x * 10) / 10).toLocaleString('en-US', { maximumFractionDigits: 1 }); }
  function us(x) { return fmt(x) + ' µs'; }
  function esc(s) {
    return String(s).replace(/[&<>"]/g, function (c) { return { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' }[c]; });
  }
  function colorOf(name) { return SEGMENT_COLOR[name] || LAYER_COLOR[LAYER[name]] || '#555'; }
  function note(id, s) {
    var e = document.getElementById(id + '-note');
    if (e) e.textContent = s;
  }
  // empty replaces a chart's box by a sentence saying why there is no chart.
  function empty(id, why) {
    var host = document.getElementById(id);
    host.className = 'chart-empty';
    host.textContent = why;
  }

  // chart draws one ECharts chart into #id and counts it when rendered.
  function chart(id, height, option) {
    var host = document.getElementById(id);
    host.style.height = height + 'px';
    var c = echarts.init(host, null, { renderer: 'svg' });
    var counted = false;
    c.on('finished', function () {
      if (!counted) { counted = true; drawn++; status(); }
    });
    option.animation = false;
    option.textStyle = { fontFamily: FONT, fontSize: 12 };
    c.setOption(option, true);
    charts.push(c);
    return c;
  }

  // htmlLegend puts the series names as buttons above a chart (they wrap
  // like text, so none is ever cut off); a click hides or shows a series.
  function htmlLegend(id, c, names) {
    var host = document.getElementById(id + '-legend');
    host.textContent = '';
    names.forEach(function (n) {
      var b = document.createElement('button');
      b.type = 'button';
      b.className = 'legend-item';
      b.setAttribute('aria-pressed', 'true');
      var sw = document.createElement('span');
      sw.className = 'swatch';
      sw.style.background = colorOf(n);
      b.appendChild(sw);
      b.appendChild(document.createTextNode(n));
      b.addEventListener('click', function () {
        c.dispatchAction({ type: 'legendToggleSelect', name: n });
        b.setAttribute('aria-pressed', b.getAttribute('aria-pressed') === 'true' ? 'false' : 'true');
      });
      host.appendChild(b);
    });
  }

  function baseTooltip(extra) {
    var t = { confine: true, textStyle: { fontFamily: FONT, fontSize: 12 }, extraCssText: 'max-width: 420px; white-space: normal;' };
    for (var k in extra) { if (Object.prototype.hasOwnProperty.call(extra, k)) t[k] = extra[k]; }
    return t;
  }

  function status() {
    var st = document.getElementById('render-status');
    st.textContent = drawn === charts.length ? 'charts: ' + drawn + ' drawn' : 'charts: ' + drawn + ' of ' + charts.length + ' drawn';
    st.setAttribute('data-rendered', String(drawn));
    st.setAttribute('data-expected', String(charts.length));
  }

  window.addEventListener('resize', function () { charts.forEach(function (c) { c.resize(); }); });
  return { FONT: FONT, LAYER: LAYER, LAYER_COLOR: LAYER_COLOR, fmt: fmt, us: us, esc: esc, colorOf: colorOf, note: note,
    empty: empty, chart: chart, htmlLegend: htmlLegend, baseTooltip: baseTooltip, status: status };
})();
