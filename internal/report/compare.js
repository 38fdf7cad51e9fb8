// compare.html's chart (helpers in chartlib.js): the change of each
// segment's median, for the segments both runs measured. A segment that is
// not comparable gets no bar: it is named under the chart instead.
(function () {
  'use strict';
  var D = JSON.parse(document.getElementById('data').textContent);
  var fmt = PP.fmt, us = PP.us, esc = PP.esc;
  var rows = [['RTT', D.rtt]].concat((D.segment_order || []).map(function (k) { return [k, D.segments[k]]; }));
  var comparable = rows.filter(function (r) { return r[1] && r[1].comparable !== false && r[1].a_n > 0 && r[1].b_n > 0 && r[1].p_value !== null; });
  var left = rows.filter(function (r) { return r[1] && (r[1].a_n > 0 || r[1].b_n > 0) && comparable.indexOf(r) < 0; });
  if (comparable.length === 0) {
    PP.empty('deltas', 'No segment was measured in both runs: nothing to compare.');
  } else {
    // Room on both sides of the bars for their labels.
    var lo = 0, hi = 0;
    comparable.forEach(function (r) { lo = Math.min(lo, r[1].delta_p50_us); hi = Math.max(hi, r[1].delta_p50_us); });
    var pad = (hi - lo || 1) * 0.3;
    var color = function (d) { return d.significant ? (d.delta_p50_us > 0 ? '#cf222e' : '#1a7f37') : '#a0a0a0'; };
    PP.chart('deltas', 40 + comparable.length * 30, {
      grid: { left: 10, right: 40, top: 10, bottom: 40, containLabel: true },
      tooltip: PP.baseTooltip({ trigger: 'item', formatter: function (p) {
        var r = comparable[p.dataIndex], d = r[1];
        return '<b>' + esc(r[0]) + '</b>: median ' + us(d.a_p50_us) + ' → ' + us(d.b_p50_us) + ' (' + (d.delta_p50_us > 0 ? '+' : '') +
          us(d.delta_p50_us) + ')<br>p = ' + (d.p_value < 1e-6 ? '< 1e-6' : d.p_value.toPrecision(2)) +
          (d.significant ? ', significant' : ', not significant (needs |Δ| ≥ ' + us(d.min_effect_us) + ' and p < ' + D.significance.alpha + ')');
      } }),
      xAxis: { type: 'value', min: lo < 0 ? Math.floor(lo - pad) : 0, max: hi > 0 ? Math.ceil(hi + pad) : 0,
        axisLabel: { hideOverlap: true }, name: 'change of the median, compared − baseline (µs)', nameLocation: 'middle', nameGap: 26, splitLine: { show: true } },
      yAxis: { type: 'category', data: comparable.map(function (r) { return r[0]; }), inverse: true, axisTick: { show: false } },
      series: [{
        type: 'bar', barWidth: 16,
        data: comparable.map(function (r) {
          return { value: r[1].delta_p50_us, itemStyle: { color: color(r[1]) }, label: { position: r[1].delta_p50_us < 0 ? 'left' : 'right' } };
        }),
        label: { show: true, position: 'right', formatter: function (p) {
          var d = comparable[p.dataIndex][1];
          return (d.delta_p50_us > 0 ? '+' : '') + fmt(d.delta_p50_us) + ' µs' + (d.significant ? ' ✱' : '');
        } }
      }]
    });
  }
  PP.note('deltas', left.length ? 'Not comparable (no bar): ' + left.map(function (r) {
    return r[0] + (r[1].not_comparable ? ' (' + r[1].not_comparable + ')' : r[1].a_n === 0 ? ' (only in the compared run)' : r[1].b_n === 0 ? ' (only in the baseline)' : '');
  }).join(', ') + '.' : '');
  PP.status();
})();
