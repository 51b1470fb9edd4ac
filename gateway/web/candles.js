// The candle chart: TradingView Lightweight Charts (vendored, Apache-2.0), fed by the REST
// candles (history) and the websocket `candles` channel (live bars). Without them (a venue
// build that serves neither) the chart stays empty and says so; nothing else depends on it.
import {
  CandlestickSeries,
  createChart,
} from "./vendor/lightweight-charts-5.2.1/lightweight-charts.standalone.production.mjs";

export const INTERVAL = "1m";
const HISTORY_BARS = 300; // five hours of 1m bars: a screenful

export class CandleChart {
  constructor(container, note) {
    this.note = note;
    this.chart = createChart(container, {
      autoSize: true,
      layout: { background: { color: "#131722" }, textColor: "#c7ccd6" },
      grid: { vertLines: { color: "#1f2533" }, horzLines: { color: "#1f2533" } },
      timeScale: { timeVisible: true, secondsVisible: false },
    });
    this.series = this.chart.addSeries(CandlestickSeries, {});
    this.symbol = null;
  }

  async show(instrument) {
    // A new symbol: its price format, then its history from REST.
    this.symbol = instrument.symbol;
    const decimals = instrument.price_decimals;
    this.series.applyOptions({
      priceFormat: { type: "price", precision: decimals, minMove: 10 ** -decimals },
    });
    this.series.setData([]);
    const url = `/api/v1/candles?symbol=${encodeURIComponent(instrument.symbol)}`;
    let body;
    try {
      const response = await fetch(`${url}&interval=${INTERVAL}&limit=${HISTORY_BARS}`);
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      body = await response.json();
    } catch (failed) {
      this.say(`candles unavailable (${failed.message})`);
      return;
    }
    if (this.symbol !== instrument.symbol) return; // another symbol was chosen meanwhile
    this.series.setData(body.candles.map(toBar));
    this.say(body.candles.length === 0 ? "no trades yet" : "");
  }

  update(message) {
    // A `candles` channel message: a snapshot or updated bars of the shown symbol.
    const symbol = message.sym ?? message.symbol;
    if (symbol !== this.symbol) return;
    const bars = Array.isArray(message.data) ? message.data : (message.data?.candles ?? []);
    if (message.type === "snapshot") this.series.setData(bars.map(toBar));
    else for (const bar of bars) this.series.update(toBar(bar));
    if (bars.length > 0) this.say("");
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
