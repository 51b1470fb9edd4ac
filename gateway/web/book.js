// The order book as the `book` channel builds it (protocol §9.3's client rule, checksum
// included), and the depth chart drawn from it.

import { compareDecimals } from "./decimals.js";

// Prices compared exactly (`compareDecimals`): as Numbers, a dear price's levels a tick apart
// can be one floating point number (90071992547409.93 and .94), and they sorted as they came,
// the checksum failed and the book was resubscribed, the ladder showing the worse ask as the
// best meanwhile (before session 37).
const CHECKSUM_LEVELS = 10;

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

export function crc32(text) {
  let crc = 0xffffffff;
  for (const byte of new TextEncoder().encode(text)) {
    crc = CRC_TABLE[(crc ^ byte) & 0xff] ^ (crc >>> 8);
  }
  return (crc ^ 0xffffffff) >>> 0;
}

export class LocalBook {
  // One (symbol, tier) stream. `apply` returns false when the book must be resynced.
  constructor(symbol, depth) {
    this.symbol = symbol;
    this.depth = depth;
    this.epoch = null;
    this.seq = null;
    this.bids = new Map(); // price string -> qty string
    this.asks = new Map();
  }

  apply(message) {
    const data = message.data;
    if (message.type === "snapshot") {
      this.bids = new Map(data.bids);
      this.asks = new Map(data.asks);
      this.epoch = message.epoch;
      this.seq = message.seq;
      return this.checksum() === data.checksum;
    }
    if (this.seq === null) return true; // no snapshot yet: ignore
    if (message.epoch !== this.epoch) return false; // the venue restarted
    if (message.seq <= this.seq) return true; // already applied
    if (message.prev_seq !== this.seq) return false; // a message was missed
    for (const [price, qty] of data.bids) setLevel(this.bids, price, qty);
    for (const [price, qty] of data.asks) setLevel(this.asks, price, qty);
    this.seq = message.seq;
    return this.checksum() === data.checksum;
  }

  sortedBids() {
    return [...this.bids].sort((a, b) => compareDecimals(b[0], a[0])).slice(0, this.depth);
  }

  sortedAsks() {
    return [...this.asks].sort((a, b) => compareDecimals(a[0], b[0])).slice(0, this.depth);
  }

  checksum() {
    const side = (levels) =>
      levels
        .slice(0, CHECKSUM_LEVELS)
        .map(([price, qty]) => `${price}:${qty}`)
        .join("|");
    return crc32(`${side(this.sortedAsks())};${side(this.sortedBids())}`);
  }
}

function setLevel(levels, price, qty) {
  if (qty === "0") levels.delete(price);
  else levels.set(price, qty);
}

// ------------------------------------------------------------------ depth chart

const BID_COLOUR = "#26a69a";
const ASK_COLOUR = "#ef5350";

export function drawDepth(canvas, book, figures) {
  // Cumulative quantity by price, bids left of the spread, asks right (numbers for drawing
  // only: the figures it reads out, `figures`, are the venue's strings: the outer prices, and
  // each side's total, `bids` and `asks`, null for a side without levels).
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth;
  const height = canvas.clientHeight;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  const g = canvas.getContext("2d");
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, width, height);
  const bids = cumulative(book ? book.sortedBids() : []);
  const asks = cumulative(book ? book.sortedAsks() : []);
  if (bids.length === 0 && asks.length === 0) {
    g.fillStyle = "#8a93a6";
    g.font = "12px sans-serif";
    g.fillText("no orders in the book", 8, height / 2);
    return;
  }
  const prices = [...bids, ...asks].map((p) => p[0]);
  let low = Math.min(...prices);
  let high = Math.max(...prices);
  // room beside the outer levels, a tenth of the range (of the price, for one level): 0.1% of
  // the price as well, before session 37, put a dear book's levels a tick apart at one point
  const margin = high > low ? (high - low) * 0.1 : Math.abs(high) * 0.001 || 1;
  low -= margin;
  high += margin;
  const top = Math.max(...[...bids, ...asks].map((p) => p[1]));
  const x = (price) => ((price - low) / (high - low)) * (width - 16) + 8;
  const y = (qty) => height - 18 - (qty / top) * (height - 36); // room above for the totals
  area(g, bids, x, y, height - 18, BID_COLOUR, -1);
  area(g, asks, x, y, height - 18, ASK_COLOUR, 1);
  g.fillStyle = "#8a93a6";
  g.font = "11px sans-serif";
  const right = (text) => width - 4 - g.measureText(text).width;
  if (figures.bids !== null) g.fillText(figures.bids, 4, 12);
  if (figures.asks !== null) g.fillText(figures.asks, right(figures.asks), 12);
  // each outer price under its level (within the canvas), not at the margin's edge
  const under = (text, price) => {
    const centred = x(price) - g.measureText(text).width / 2;
    return Math.min(Math.max(centred, 4), right(text));
  };
  g.fillText(figures.low, under(figures.low, Math.min(...prices)), height - 4);
  if (figures.high === figures.low) return; // one level: its price once
  g.fillText(figures.high, under(figures.high, Math.max(...prices)), height - 4);
}

function cumulative(levels) {
  let total = 0;
  return levels.map(([price, qty]) => {
    total += Number(qty);
    return [Number(price), total];
  });
}

function area(g, points, x, y, base, colour, direction) {
  if (points.length === 0) return;
  g.beginPath();
  g.moveTo(x(points[0][0]), base);
  let previous = base;
  for (const [price, total] of points) {
    g.lineTo(x(price), previous);
    g.lineTo(x(price), y(total));
    previous = y(total);
  }
  const last = points[points.length - 1][0];
  const edge = x(last) + direction * 8; // bids run to the left, asks to the right
  g.lineTo(edge, previous);
  g.lineTo(edge, base);
  g.closePath();
  g.fillStyle = `${colour}55`;
  g.fill();
  g.strokeStyle = colour;
  g.stroke();
}
