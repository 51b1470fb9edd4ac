// The candle chart: TradingView Lightweight Charts (vendored, Apache-2.0), fed by the REST
// candles (history) and the websocket `candles` channel (live bars). Without them (a venue
// build that serves neither) the chart stays empty and says so; nothing else depends on it.
// Its text alternative is a table out of sight that a screen reader reads: the last
// READ_BARS bars' figures, newest first, kept as the chart's (`readOut`).
import {
  CandlestickSeries,
  createChart,
} from "./vendor/lightweight-charts-5.2.1/lightweight-charts.standalone.production.mjs";
import { getJson } from "./venue.js";

export const INTERVAL = "1m";
const HISTORY_BARS = 300; // five hours of 1m bars
const VISIBLE_BARS = 90; // an hour and a half in view: bars wide enough to read
const READ_BARS = 10; // the text alternative's bars: the last ten traded minutes, as many as one hears
const FIGURES_KEPT = HISTORY_BARS + READ_BARS; // the bars whose figures are kept as sent

export class CandleChart {
  constructor(container, note, table) {
    this.container = container;
    this.note = note;
    this.table = table; // the text alternative (index.html #candles-table)
    this.chart = createChart(container, {
      autoSize: true,
      layout: { background: { color: "#131722" }, textColor: "#c7ccd6" },
      grid: { vertLines: { color: "#1f2533" }, horzLines: { color: "#1f2533" } },
      timeScale: { timeVisible: true, secondsVisible: false },
      // A finger's vertical swipe over the chart scrolls the page: the chart took it (to move
      // its prices), and on a phone, where it spans the screen's width, the page could not be
      // scrolled past it by a swipe on it (before session 32). Sideways it still pans the bars.
      handleScroll: { vertTouchDrag: false },
    });
    this.series = this.chart.addSeries(CandlestickSeries, {});
    this.symbol = null;
    this.instrument = null;
    // Each bar's open, high, low and close as the venue wrote them, by its time: the chart holds
    // numbers, and a dear price's nearest one reads otherwise (90071992547409.93 as .94: before
    // session 36 the text alternative read them so). The last FIGURES_KEPT bars.
    this.figures = new Map();
    // The `candles` stream's position (protocol §9.1): null until its snapshot, and again
    // while a resubscription is under way (updates wait for the new snapshot meanwhile).
    this.epoch = null;
    this.seq = null;
  }

  async show(instrument) {
    // A new symbol: its price format, then its history from REST.
    this.symbol = instrument.symbol;
    this.instrument = instrument;
    this.resync();
    const decimals = instrument.price_decimals;
    this.series.applyOptions({
      priceFormat: { type: "price", precision: decimals, minMove: 10 ** -decimals },
    });
    this.series.setData([]);
    this.figures.clear();
    this.counted();
    const url = `/api/v1/candles?symbol=${encodeURIComponent(instrument.symbol)}`;
    let body;
    try {
      body = await getJson(`${url}&interval=${INTERVAL}&limit=${HISTORY_BARS}`);
    } catch (failed) {
      this.say(`candles unavailable (${failed.message})`);
      this.table.caption.textContent = `${instrument.symbol}: candles unavailable`;
      return;
    }
    if (this.symbol !== instrument.symbol) return; // another symbol was chosen meanwhile
    for (const candle of body.candles) this.keep(candle);
    this.series.setData(body.candles.map(toBar));
    this.counted();
    this.frame(body.candles.length);
    this.say(body.candles.length === 0 ? "no trades yet" : "");
  }

  showNothing() {
    // The venue lists no instrument: no symbol's bars, caption or note stay shown, and a
    // history still being fetched is dropped (`show`).
    this.symbol = null;
    this.instrument = null;
    this.resync();
    this.series.setData([]);
    this.figures.clear();
    this.container.dataset.bars = "0";
    this.container.dataset.lastClose = "";
    this.table.caption.textContent = "";
    this.table.tBodies[0].replaceChildren();
    this.say("");
  }

  update(message) {
    // A `candles` channel message: a snapshot or updated bars of the shown symbol. False
    // when a message was missed (a gap in `seq`, a new `epoch`): the caller subscribes again
    // and the snapshot that answers starts over (a split moves the seq with no message, and
    // that snapshot holds the rescaled bars: protocol §9.8).
    const symbol = message.sym ?? message.symbol;
    if (symbol !== this.symbol) return true;
    const bars = Array.isArray(message.data) ? message.data : (message.data?.candles ?? []);
    if (message.type === "snapshot") {
      this.epoch = message.epoch;
      this.seq = message.seq;
      this.figures.clear();
      for (const bar of bars) this.keep(bar);
      this.series.setData(bars.map(toBar));
      this.frame(bars.length);
    } else {
      if (this.seq === null) return true; // awaiting a snapshot: ignore
      if (message.epoch !== this.epoch) return false; // the venue restarted
      if (message.seq <= this.seq) return true; // already applied
      if (message.prev_seq !== this.seq) return false; // a message was missed
      this.seq = message.seq;
      for (const bar of bars) {
        this.keep(bar);
        this.updateBar(toBar(bar));
      }
    }
    this.counted();
    if (bars.length > 0) this.say("");
    return true;
  }

  keep(candle) {
    // A candle's figures as sent, by its bar's time (`toBar`), the oldest let go past the last
    // FIGURES_KEPT.
    const time = toBar(candle).time;
    this.figures.delete(time); // re-inserted: the newest last
    this.figures.set(time, [candle.o, candle.h, candle.l, candle.c]);
    for (const old of this.figures.keys()) {
      if (this.figures.size <= FIGURES_KEPT) break;
      this.figures.delete(old);
    }
  }

  inStep(epoch, seq) {
    // Whether a heartbeat's last seq of this stream (protocol §9.7) is the one shown: while
    // awaiting a snapshot there is nothing to compare.
    return this.seq === null || (epoch === this.epoch && seq === this.seq);
  }

  resync() {
    // A resubscription is under way: updates wait for its snapshot.
    this.epoch = null;
    this.seq = null;
  }

  frame(count) {
    // The last VISIBLE_BARS bars, readable even when there are only a few.
    const to = Math.max(count, VISIBLE_BARS / 4);
    this.chart.timeScale().setVisibleLogicalRange({ from: to - VISIBLE_BARS, to: to + 2 });
  }

  updateBar(bar) {
    // The chart takes the current bar or a newer one; an older one (history fetched after
    // the update) is already in it.
    const shown = this.series.data();
    if (shown.length === 0 || bar.time >= shown[shown.length - 1].time) this.series.update(bar);
  }

  counted() {
    // How many bars the chart holds, and the last close as the venue sent it (before session
    // 37 the chart's number, 90071992547409.94 for .93): for people reading the DOM, and tests.
    const bars = this.series.data();
    this.container.dataset.bars = String(bars.length);
    const last = bars.at(-1);
    this.container.dataset.lastClose = last === undefined ? "" : this.figuresOf(last)[3];
    this.readOut(bars);
  }

  figuresOf(bar) {
    // A bar's open, high, low and close as sent (`keep`), else the chart's numbers at the
    // instrument's decimals
    const decimals = this.instrument?.price_decimals ?? 2;
    const numbers = [bar.open, bar.high, bar.low, bar.close];
    return this.figures.get(bar.time) ?? numbers.map((n) => n.toFixed(decimals));
  }

  readOut(bars) {
    // The chart's text alternative: its last READ_BARS bars, newest first, each its date and
    // minute (UTC: bars are only for minutes with a trade, so a quiet symbol's span days) and its open, high, low and close at the instrument's decimals; the caption says
    // whose, how many of how many, and a bill's prices per 100 of face. Not a live region: a
    // bar changes at each trade, which would be read out over everything else.
    const { symbol, instrument } = this;
    const per100 = instrument?.kind === "tbill" ? ", prices per 100 of face" : "";
    const shown = bars.slice(-READ_BARS).reverse();
    this.table.caption.textContent = shown.length
      ? `${symbol}: the last ${shown.length} of ${bars.length} one-minute candles, newest ` +
        `first${per100}`
      : `${symbol}: no candles yet`;
    const body = this.table.tBodies[0];
    body.replaceChildren();
    for (const bar of shown) {
      const row = body.insertRow();
      const opened = new Date(bar.time * 1000).toISOString(); // "2026-12-03T16:08:00.000Z"
      row.insertCell().textContent = `${opened.slice(0, 10)} ${opened.slice(11, 16)}`;
      for (const figure of this.figuresOf(bar)) {
        const cell = row.insertCell();
        cell.className = "num";
        cell.textContent = figure;
      }
    }
  }

  say(text) {
    this.note.textContent = text;
  }
}

function toBar(candle) {
  return {
    time: Math.floor(candle.t / 1000), // open time, ms -> the chart's UTC seconds
    open: Number(candle.o),
    high: Number(candle.h),
    low: Number(candle.l),
    close: Number(candle.c),
  };
}
