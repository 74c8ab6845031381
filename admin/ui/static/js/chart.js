// chart.js: a small line chart on a <canvas>, for the overview's live
// figures. It keeps the last `points` samples of one or more series and
// redraws on every push; no library, nothing fetched.

const palette = ["#1f6fb2", "#c8641b", "#2e8540", "#8a3ab9"];

// LineChart draws series (an array of {label, color?}) on canvas. Options:
// points (samples kept, default 90: three minutes at one every two
// seconds), max (a fixed top of the scale, e.g. 10 for the stress level;
// otherwise the largest sample, rounded up), unit (written after values).
export class LineChart {
  constructor(canvas, series, options) {
    this.canvas = canvas;
    this.series = series.map((s, i) => ({ label: s.label, color: s.color || palette[i % palette.length], data: [] }));
    this.points = (options && options.points) || 90;
    this.max = options && options.max;
    this.unit = (options && options.unit) || "";
    this.draw();
  }

  // push adds one sample per series (values in the order of series; null
  // leaves a gap) and redraws. The canvas's data-samples attribute counts
  // the pushes (tests wait on it).
  push(values) {
    this.canvas.dataset.samples = String(Number(this.canvas.dataset.samples || 0) + 1);
    this.series.forEach((s, i) => {
      s.data.push(values[i] === undefined ? null : values[i]);
      if (s.data.length > this.points) s.data.shift();
    });
    this.draw();
  }

  draw() {
    const c = this.canvas;
    const ratio = window.devicePixelRatio || 1;
    const w = c.clientWidth || 320;
    const h = c.clientHeight || 140;
    if (c.width !== Math.round(w * ratio) || c.height !== Math.round(h * ratio)) {
      c.width = Math.round(w * ratio);
      c.height = Math.round(h * ratio);
    }
    const g = c.getContext("2d");
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, w, h);
    const left = 48, right = 8, top = 22, bottom = 8;
    const pw = w - left - right, ph = h - top - bottom;

    let top_ = this.max;
    if (!top_) {
      let m = 0;
      for (const s of this.series) for (const v of s.data) if (v !== null && v > m) m = v;
      top_ = niceCeil(m);
    }

    // grid and scale
    g.font = "11px system-ui, sans-serif";
    g.fillStyle = "#667";
    g.strokeStyle = "#e3e5ea";
    g.lineWidth = 1;
    g.textAlign = "right";
    g.textBaseline = "middle";
    for (let i = 0; i <= 4; i++) {
      const y = top + ph - (ph * i) / 4;
      g.beginPath();
      g.moveTo(left, Math.round(y) + 0.5);
      g.lineTo(left + pw, Math.round(y) + 0.5);
      g.stroke();
      g.fillText(short((top_ * i) / 4), left - 6, y);
    }

    // series: the x axis spans the samples kept so far (at least 30),
    // up to `points`, so that a new chart fills from the left rather
    // than creeping in at the right edge
    const longest = Math.max(...this.series.map((s) => s.data.length));
    const span = Math.min(this.points, Math.max(30, longest));
    const step = pw / Math.max(1, span - 1);
    for (const s of this.series) {
      g.strokeStyle = s.color;
      g.lineWidth = 2;
      g.beginPath();
      let pen = false;
      const off = span - s.data.length;
      s.data.forEach((v, i) => {
        if (v === null) {
          pen = false;
          return;
        }
        const x = left + (off + i) * step;
        const y = top + ph - (ph * Math.min(v, top_)) / top_;
        if (pen) g.lineTo(x, y);
        else g.moveTo(x, y);
        pen = true;
      });
      g.stroke();
    }

    // legend with the latest values
    g.textAlign = "left";
    g.textBaseline = "alphabetic";
    let x = left;
    for (const s of this.series) {
      const last = s.data.length ? s.data[s.data.length - 1] : null;
      const text = `${s.label}: ${last === null ? "–" : short(last)}${this.unit}`;
      g.fillStyle = s.color;
      g.fillRect(x, 7, 10, 10);
      g.fillStyle = "#223";
      g.fillText(text, x + 14, 16);
      x += g.measureText(text).width + 30;
    }
  }
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten (at least 1).
function niceCeil(v) {
  if (v <= 1) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

// short writes a value with k/M suffixes and at most one decimal.
function short(v) {
  const a = Math.abs(v);
  if (a >= 1e6) return (v / 1e6).toFixed(a >= 1e7 ? 0 : 1) + "M";
  if (a >= 1e3) return (v / 1e3).toFixed(a >= 1e4 ? 0 : 1) + "k";
  if (Number.isInteger(v)) return String(v);
  return v.toFixed(1);
}
