// The candle chart: TradingView Lightweight Charts (vendored, Apache-2.0), fed by the REST
// candles (history) and the websocket `candles` channel (live bars). Without them (a venue
// build that serves neither) the chart stays empty and says so; nothing else depends on it.
import {
  CandlestickSeries,
  createChart,
} from "./vendor/lightweight-charts-5.2.1/lightweight-charts.standalone.production.mjs";
import { getJson } from "./venue.js";

export const INTERVAL = "1m";
const HISTORY_BARS = 300; // five hours of 1m bars
const VISIBLE_BARS = 90; // an hour and a half in view: bars wide enough to read

export class CandleChart {
  constructor(container, note) {
    this.container = container;
    this.note = note;
    this.chart = createChart(container, {
      autoSize: true,
      layout: { background: { color: "#131722" }, textColor: "#c7ccd6" },
      grid: { vertLines: { color: "#1f2533" }, horzLines: { color: "#1f2533" } },
      timeScale: { timeVisible: true, secondsVisible: false },
    });
    this.series = this.chart.addSeries(CandlestickSeries, {});
    this.symbol = null;
    // The `candles` stream's position (protocol §9.1): null until its snapshot, and again
    // while a resubscription is under way (updates wait for the new snapshot meanwhile).
    this.epoch = null;
    this.seq = null;
  }

  async show(instrument) {
    // A new symbol: its price format, then its history from REST.
    this.symbol = instrument.symbol;
    this.resync();
    const decimals = instrument.price_decimals;
    this.series.applyOptions({
      priceFormat: { type: "price", precision: decimals, minMove: 10 ** -decimals },
    });
    this.series.setData([]);
    this.counted();
    const url = `/api/v1/candles?symbol=${encodeURIComponent(instrument.symbol)}`;
    let body;
    try {
      body = await getJson(`${url}&interval=${INTERVAL}&limit=${HISTORY_BARS}`);
    } catch (failed) {
      this.say(`candles unavailable (${failed.message})`);
      return;
    }
    if (this.symbol !== instrument.symbol) return; // another symbol was chosen meanwhile
    this.series.setData(body.candles.map(toBar));
    this.counted();
    this.frame(body.candles.length);
    this.say(body.candles.length === 0 ? "no trades yet" : "");
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
      this.series.setData(bars.map(toBar));
      this.frame(bars.length);
    } else {
      if (this.seq === null) return true; // awaiting a snapshot: ignore
      if (message.epoch !== this.epoch) return false; // the venue restarted
      if (message.seq <= this.seq) return true; // already applied
      if (message.prev_seq !== this.seq) return false; // a message was missed
      this.seq = message.seq;
      for (const bar of bars) this.updateBar(toBar(bar));
    }
    this.counted();
    if (bars.length > 0) this.say("");
    return true;
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
    // How many bars the chart holds, and the last close: for people reading the DOM, and tests.
    const bars = this.series.data();
    this.container.dataset.bars = String(bars.length);
    this.container.dataset.lastClose = bars.length ? String(bars[bars.length - 1].close) : "";
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
