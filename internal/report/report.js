// report.html's charts (helpers in chartlib.js). Every number comes from
// the JSON the page carries (report.json's document): values the
// plausibility gates refused are never drawn, and what a chart leaves out
// is said under it.
(function () {
  'use strict';
  var D = JSON.parse(document.getElementById('data').textContent);
  var FONT = PP.FONT, LAYER = PP.LAYER, LAYER_COLOR = PP.LAYER_COLOR, fmt = PP.fmt, us = PP.us, esc = PP.esc, colorOf = PP.colorOf,
    note = PP.note, empty = PP.empty, chart = PP.chart, htmlLegend = PP.htmlLegend, baseTooltip = PP.baseTooltip, status = PP.status;
  var PATH = ['A', 'B_1', 'B', 'C', 'CJ', 'D', 'E', 'F', 'G', 'H', 'I_1', 'I', 'J', 'K', 'L', 'M',
    'virt_unmeasured_sender', 'virt_unmeasured_receiver'];

  // The values of one series over the pings the statistics use (complete
  // pings), without refused ones. Returns {x: [...], seq: [...], v: [...]}.
  function series(name) {
    var out = { t: [], seq: [], v: [], negative: 0 };
    var t0 = null;
    (D.per_ping || []).forEach(function (p) { if (p.time_ns && (t0 === null || p.time_ns < t0)) t0 = p.time_ns; });
    (D.per_ping || []).forEach(function (p, i) {
      if (!p.in_stats) return;
      if (p.excluded && p.excluded.indexOf(name) >= 0) return;
      var v = p.values_us[name];
      if (v === undefined) return;
      out.t.push(t0 !== null && p.time_ns ? (p.time_ns - t0) / 1e9 : i);
      out.seq.push(p.seq);
      out.v.push(v);
    });
    out.byTime = t0 !== null;
    return out;
  }

  // 1. Layers: where the mean RTT goes.
  function layers() {
    if (!D.layers || D.layers.length === 0) { empty('layers', 'No ping has every value needed to split its RTT into layers.'); return; }
    var ls = D.layers.slice().reverse();
    chart('layers', 40 + ls.length * 38, {
      grid: { left: 10, right: 150, top: 10, bottom: 30, containLabel: true },
      tooltip: baseTooltip({ trigger: 'item', formatter: function (p) {
        var l = ls[p.dataIndex];
        return '<b>' + esc(l.name) + '</b>: ' + fmt(l.share * 100) + ' % of the mean RTT, ' + us(l.mean_us) +
          '<br>segments: ' + esc(l.segments.join(' ')) + (l.flag ? '<br>⚠ ' + esc(l.flag) : '');
      } }),
      xAxis: { type: 'value', name: 'share of the mean RTT (%)', nameLocation: 'middle', nameGap: 22,
        axisLabel: { formatter: '{value} %' }, splitLine: { show: true } },
      yAxis: { type: 'category', data: ls.map(function (l) { return l.name; }), axisTick: { show: false } },
      series: [{
        type: 'bar', barWidth: 22,
        data: ls.map(function (l) {
          return { value: Math.round(l.share * 1000) / 10, itemStyle: { color: LAYER_COLOR[l.name] || '#555',
            decal: l.flag ? { symbol: 'rect', dashArrayX: [1, 0], dashArrayY: [2, 4], rotation: -Math.PI / 4 } : null } };
        }),
        label: { show: true, position: 'right', formatter: function (p) {
          var l = ls[p.dataIndex];
          return fmt(l.share * 100) + ' % · ' + us(l.mean_us) + (l.flag ? ' ⚠' : '');
        } }
      }]
    });
  }

  // The ping picker shared by the waterfall and the swim lanes.
  var pick = document.getElementById('ping-pick');
  function timelineOf() { return D.timelines[Math.max(0, pick.selectedIndex)]; }

  function rowName(s, n) {
    if (s.name.indexOf('virt_unmeasured') === 0) return 'unmeasured ' + s.name.slice(16) + (n > 1 ? ' (reply)' : ' (request)');
    return s.name;
  }

  function sliceTooltip(s) {
    return '<b>' + esc(s.name) + '</b> on ' + esc(s.lane) + '<br>' + us(s.value_us) + ' from ' + us(s.start_us) + ' to ' +
      us(s.start_us + s.dur_us) + '<br>' + esc(s.kind === 'estimated' ? 'estimated: the clocks of the two machines are not shared, so this is placed (and split) evenly' :
        s.kind === 'unmeasured' ? 'inside the path, outside every tracer' : s.kind) +
      (D.descriptions && D.descriptions[s.name] ? '<br>' + esc(D.descriptions[s.name]) : '');
  }

  function rectStyle(s, base) {
    var c = colorOf(s.name);
    if (s.kind === 'outer') return { fill: '#f3f3f3', stroke: '#bbb', lineWidth: 1 };
    if (s.kind === 'unmeasured') return { fill: '#d9d9d9', stroke: '#8a8a8a', lineWidth: 1, lineDash: [3, 2] };
    if (s.kind === 'estimated') return { fill: c, opacity: 0.55, stroke: '#555', lineWidth: 1, lineDash: [4, 2] };
    return base || { fill: c };
  }

  // renderRect is a custom series' renderItem: value = [start, end, row, height fraction].
  function renderRect(getSlice) {
    return function (params, api) {
      var s = getSlice(params.dataIndex);
      var start = api.coord([api.value(0), api.value(2)]);
      var end = api.coord([api.value(1), api.value(2)]);
      var band = api.size([0, 1])[1];
      var h = band * api.value(3);
      var rect = echarts.graphic.clipRectByRect({ x: start[0], y: start[1] - h / 2, width: Math.max(end[0] - start[0], 1), height: h },
        { x: params.coordSys.x, y: params.coordSys.y, width: params.coordSys.width, height: params.coordSys.height });
      if (!rect) return null;
      var children = [{ type: 'rect', shape: rect, style: rectStyle(s) }];
      // A label only where it fits: never a clipped word.
      var label = s.name.indexOf('virt_unmeasured') === 0 ? 'unmeasured' : s.name;
      if (s.kind !== 'outer' && rect.width > label.length * 7 + 8 && h >= 14) {
        children.push({ type: 'text', style: { text: label, x: rect.x + rect.width / 2, y: rect.y + rect.height / 2,
          align: 'center', verticalAlign: 'middle', fill: s.kind === 'unmeasured' ? '#333' : '#fff', fontSize: 11, fontFamily: FONT } });
      }
      return { type: 'group', children: children };
    };
  }

  // drawSlices draws slices (one ping's timeline) as rectangles on a µs
  // axis, one category row each per rowOf(slice) of rowNames, into the
  // chart held in charts[id] (made on first use, updated when the picked
  // ping changes).
  var sliceCharts = {};
  function drawSlices(id, t, slices, rowNames, rowOf, heightOf, rowPx) {
    var option = {
      grid: { left: 10, right: 30, top: 10, bottom: 60, containLabel: true },
      tooltip: baseTooltip({ trigger: 'item', formatter: function (p) { return sliceTooltip(slices[p.dataIndex]); } }),
      xAxis: { type: 'value', name: 'µs since the echo request entered the sender VM\'s IP output', nameLocation: 'middle', nameGap: 26,
        min: 0, max: Math.ceil(t.rtt_us), splitLine: { show: true } },
      yAxis: { type: 'category', data: rowNames, inverse: true, axisTick: { show: false } },
      dataZoom: [{ type: 'inside', xAxisIndex: 0, filterMode: 'weakFilter' }],
      series: [{
        type: 'custom', renderItem: renderRect(function (i) { return slices[i]; }),
        encode: { x: [0, 1], y: 2 },
        data: slices.map(function (s, i) { return [s.start_us, s.start_us + s.dur_us, rowOf(s, i), heightOf(s)]; })
      }]
    };
    var height = 60 + rowNames.length * rowPx;
    var c = sliceCharts[id];
    if (!c) { sliceCharts[id] = chart(id, height, option); return; }
    c.getDom().style.height = height + 'px';
    c.resize();
    c.setOption(option, true);
  }

  // 2. Waterfall: one row per segment in path order, on a µs time axis.
  function waterfall() {
    var t = timelineOf();
    var rows = t.slices.filter(function (s) { return s.kind !== 'outer'; })
      .sort(function (a, b) { return a.start_us - b.start_us; });
    var seen = {};
    var names = rows.map(function (s) { seen[s.name] = (seen[s.name] || 0) + 1; return rowName(s, seen[s.name]); });
    drawSlices('waterfall', t, rows, names, function (s, i) { return i; }, function () { return 0.7; }, 24);
  }

  // 3. Swim lanes: the same ping on one lane per vantage point; outer
  // intervals full height, what they contain narrower.
  function swimlanes() {
    var t = timelineOf();
    var lanes = D.lanes.filter(function (l) { return t.slices.some(function (s) { return s.lane === l; }); });
    var items = t.slices.slice().sort(function (a, b) { return a.depth - b.depth; });
    var heights = [0.9, 0.62, 0.38];
    drawSlices('lanes', t, items, lanes, function (s) { return lanes.indexOf(s.lane); },
      function (s) { return heights[Math.min(s.depth, 2)]; }, 44);
  }

  function timelines() {
    if (!D.timelines || D.timelines.length === 0) {
      empty('waterfall', 'No ping has the sender VM\'s A, Inter-Path, M and RTT accepted: nothing to lay out.');
      empty('lanes', 'No ping to lay out.');
      pick.disabled = true;
      return;
    }
    D.timelines.forEach(function (t) {
      var o = document.createElement('option');
      o.textContent = t.label;
      pick.appendChild(o);
    });
    pick.addEventListener('change', function () { waterfall(); swimlanes(); });
    waterfall();
    swimlanes();
  }

  // The segments and residuals with values, in report order.
  function measured() {
    var names = ['RTT'].concat(PATH).filter(function (n) {
      var s = n === 'RTT' ? D.rtt : (D.segments[n] || (n.indexOf('virt_unmeasured') === 0 ? D.residuals[n.slice(16)] : null));
      return s && s.n > 0;
    });
    return names;
  }

  // 4. CDF per segment, log µs axis.
  function cdf() {
    var names = measured();
    if (names.length === 0) { empty('cdf', 'No segment was measured on a complete ping.'); return; }
    var dropped = 0;
    var ser = names.map(function (n) {
      var v = series(n).v.filter(function (x) { if (x > 0) return true; dropped++; return false; }).sort(function (a, b) { return a - b; });
      return { name: n, type: 'line', step: 'end', showSymbol: false, color: colorOf(n),
        lineStyle: { width: n === 'RTT' ? 3 : 1.5, type: LAYER[n] === 'virtualization unmeasured' ? 'dashed' : 'solid' },
        data: v.map(function (x, i) { return [x, (i + 1) / v.length]; }) };
    });
    var c = chart('cdf', 440, {
      grid: { left: 50, right: 30, top: 20, bottom: 60, containLabel: true },
      legend: { show: false },
      tooltip: baseTooltip({ trigger: 'item', formatter: function (p) {
        return '<b>' + esc(p.seriesName) + '</b>: ' + fmt(p.value[1] * 100) + ' % of pings ≤ ' + us(p.value[0]);
      } }),
      xAxis: { type: 'log', name: 'µs (log scale)', nameLocation: 'middle', nameGap: 26, splitLine: { show: true },
        minorTick: { show: true }, minorSplitLine: { show: true, lineStyle: { color: '#f0f0f0' } } },
      yAxis: { type: 'value', min: 0, max: 1, name: 'share of pings ≤ x', nameLocation: 'middle', nameGap: 44,
        axisLabel: { formatter: function (v) { return Math.round(v * 100) + ' %'; } } },
      dataZoom: [{ type: 'inside', xAxisIndex: 0 }],
      series: ser
    });
    htmlLegend('cdf', c, names);
    note('cdf', dropped > 0 ? dropped + ' value(s) ≤ 0 µs (negative residuals) cannot be drawn on the log axis; the tables have them.' : '');
  }

  // 5. Histogram of one segment, log-spaced bins.
  var hist = null;
  var histPick = document.getElementById('hist-pick');
  function histogram() {
    var names = measured();
    if (names.length === 0) { empty('hist', 'No segment was measured on a complete ping.'); histPick.disabled = true; return; }
    if (histPick.options.length === 0) {
      names.forEach(function (n) { var o = document.createElement('option'); o.textContent = n; histPick.appendChild(o); });
      histPick.addEventListener('change', histogram);
    }
    var name = histPick.value || names[0];
    var all = series(name).v;
    var v = all.filter(function (x) { return x > 0; });
    var lo = Math.min.apply(null, v), hi = Math.max.apply(null, v);
    var bins = Math.max(1, Math.min(30, Math.ceil(Math.sqrt(v.length)) + 3));
    var llo = Math.log10(lo), step = (Math.log10(hi) - llo) / bins || 1;
    var counts = [];
    for (var b = 0; b < bins; b++) counts.push(0);
    v.forEach(function (x) { counts[Math.min(bins - 1, Math.floor((Math.log10(x) - llo) / step))]++; });
    var data = counts.map(function (c, b) { return [Math.pow(10, llo + (b + 0.5) * step), c, Math.pow(10, llo + b * step), Math.pow(10, llo + (b + 1) * step)]; });
    var option = {
      grid: { left: 50, right: 30, top: 20, bottom: 60, containLabel: true },
      tooltip: baseTooltip({ trigger: 'item', formatter: function (p) {
        return '<b>' + esc(name) + '</b>: ' + p.value[1] + ' ping(s) in ' + us(p.value[2]) + ' – ' + us(p.value[3]);
      } }),
      xAxis: { type: 'log', name: name + ', µs (log scale, log-spaced bins)', nameLocation: 'middle', nameGap: 30, splitLine: { show: true },
        axisLabel: { margin: 12 } },
      yAxis: { type: 'value', name: 'pings', nameLocation: 'middle', nameGap: 34, minInterval: 1 },
      series: [{
        type: 'custom', encode: { x: [2, 3], y: 1 }, data: data,
        renderItem: function (params, api) {
          var a = api.coord([api.value(2), api.value(1)]), b = api.coord([api.value(3), 0]);
          var cs = params.coordSys;
          var rect = echarts.graphic.clipRectByRect({ x: a[0] + 1, y: a[1], width: Math.max(b[0] - a[0] - 2, 1), height: b[1] - a[1] },
            { x: cs.x, y: cs.y, width: cs.width, height: cs.height });
          return rect ? { type: 'rect', shape: rect, style: { fill: colorOf(name) } } : null;
        }
      }]
    };
    if (!hist) hist = chart('hist', 320, option); else hist.setOption(option, true);
    note('hist', (all.length - v.length > 0 ? (all.length - v.length) + ' value(s) ≤ 0 µs not drawn on the log axis. ' : '') +
      v.length + ' ping(s).');
  }

  // 6. Over time: the RTT and the segments that grow most in the slow tail.
  function overTime() {
    var rtt = series('RTT');
    if (rtt.v.length === 0) { empty('time', 'No complete ping has an accepted RTT.'); return; }
    var picks = [];
    var why = '';
    if (D.tail && D.tail.segments) {
      picks = D.tail.segments.filter(function (g) { return g.growth_us > 0; }).slice(0, 3).map(function (g) { return g.segment; });
      why = 'the segments that grow most in the slowest 10 % of pings (tail attribution)';
    }
    if (picks.length === 0) {
      picks = Object.keys(D.contrib_mean_us || {}).filter(function (k) { return k !== 'unattributed'; })
        .sort(function (a, b) { return D.contrib_mean_us[b] - D.contrib_mean_us[a]; }).slice(0, 3);
      why = 'the segments with the largest mean';
    }
    var dropped = 0;
    var ser = ['RTT'].concat(picks).map(function (n) {
      var s = series(n);
      var data = [];
      s.v.forEach(function (x, i) { if (x > 0) data.push([s.t[i], x, s.seq[i]]); else dropped++; });
      return { name: n, type: 'line', showSymbol: data.length <= 200, symbolSize: 4, color: colorOf(n),
        lineStyle: { width: n === 'RTT' ? 2.5 : 1.5 }, data: data };
    });
    var lost = (D.drops || []).filter(function (d) { return d.status === 'lost'; });
    var c = chart('time', 400, {
      grid: { left: 50, right: 40, top: 20, bottom: 90, containLabel: true },
      legend: { show: false },
      tooltip: baseTooltip({ trigger: 'axis', formatter: function (ps) {
        var head = rtt.byTime ? 't = ' + fmt(ps[0].value[0]) + ' s' : 'ping #' + ps[0].value[0];
        return head + ' (seq ' + ps[0].value[2] + ')<br>' + ps.map(function (p) { return esc(p.seriesName) + ': ' + us(p.value[1]); }).join('<br>');
      } }),
      xAxis: { type: 'value', name: rtt.byTime ? 'seconds since the first ping' : 'ping number (no wall time in the input)',
        nameLocation: 'middle', nameGap: 26, splitLine: { show: true }, axisLabel: { hideOverlap: true } },
      yAxis: { type: 'log', name: 'µs (log scale)', nameLocation: 'middle', nameGap: 48, splitLine: { show: true }, minorTick: { show: true } },
      dataZoom: [{ type: 'inside', xAxisIndex: 0 }, { type: 'slider', xAxisIndex: 0, height: 18, bottom: 8 }],
      series: ser
    });
    htmlLegend('time', c, ['RTT'].concat(picks));
    note('time', 'Drawn: RTT and ' + (picks.length ? picks.join(', ') + ' — ' + why : 'no segment') + '. Complete pings only' +
      (lost.length ? '; ' + lost.length + ' lost ping(s) are in the drops table' : '') +
      (dropped ? '; ' + dropped + ' value(s) ≤ 0 µs not drawn on the log axis' : '') + '.');
  }


  layers();
  timelines();
  cdf();
  histogram();
  overTime();
  status();
})();
