// The trader's page: market data from /ws/public, the account and order entry from
// /ws/trade after a logon signed here (the secret never leaves the page), the 24 h change
// and candle history from the REST API. See docs/web.md.
import { drawDepth, LocalBook } from "./book.js";
import { CandleChart, INTERVAL } from "./candles.js";
import { compareDecimals, decimalUnits } from "./decimals.js";
import { getJson, importSecret, logon, NotSentError, VenueError, VenueSocket } from "./venue.js";

const BOOK_DEPTH = 25; // the book tier followed: the ladder shows 10, the depth chart all 25
const LADDER_LEVELS = 10;
const TAPE_ROWS = 50; // the trades channel's snapshot holds the last 50
const FILL_ROWS = 100;
const HISTORY_ROWS = 50; // closed orders shown: the newest, from `orders.history`, then pushed
const REST_POLL_MS = 30000; // 24 h change and reserves: slow-moving, polled
const TRADING = new Set(["open", "post_only"]); // the statuses under which a price can move
const RECONNECT_MAX_MS = 5000;
const CLOSED = new Set(["filled", "canceled", "expired", "rejected"]);
// Waits before each try to log on again after the account's connection dropped: quick for a
// blip, then no more than one try every 30 s while the venue is away.
const RELOGON_DELAYS_S = [1, 2, 4, 8, 16, 30];
// A session that lived this long was a good one: the next drop's tries start again at 1 s. A
// shorter one (logged on, then dropped at once: the venue overloaded, say) goes on backing off.
const SESSION_LIVED_MS = 30000;
// How long the venue may refuse every try (its answer, not a lost connection) before the page
// stops trying by itself and offers "Log on again": a refusal that lasts (an account
// suspended, a page the venue no longer understands) was tried every 30 s for good. The span
// is longer than the venue takes to notice a silently dead connection of the account's (a
// ping every 20 s, dropped 20 s after one unanswered: gateway/transport.py) plus the page's
// own 5 s: a refusal that heals with it is not given up. Never stopped: a connection that
// cannot be made (the venue away is what trying again is for) and the refusals known to heal
// (`healsByItself`: rate limited, the venue busy, the account's connection cap).
const RELOGON_REFUSING_MAX_MS = 60000;

const $ = (id) => document.getElementById(id);

function inWords(wireWord) {
  // An order's or a market's status, or why an order closed, as a trader reads it: the wire's
  // words with spaces (`partially_filled` "partially filled", `cancel_only` "cancel only",
  // `mass_cancel` "mass cancel"; until session 38 the page showed the wire's). The wire's value
  // stays in the element's data-status (data-reason) where the page shows one in a cell.
  // An error's name given as a reason (`DUPLICATE_CL_ORD_ID`, protocol §5) stays as the
  // venue names it, as the result line shows it.
  const word = String(wireWord);
  return /^[a-z_]+$/.test(word) ? word.replaceAll("_", " ") : word;
}

function statusCell(row, order) {
  // An order's status cell: in words, with why it closed; the wire's values kept as data.
  const said = order.reason ? `${inWords(order.status)} (${inWords(order.reason)})` : null;
  const td = cell(row, said ?? inWords(order.status), "status");
  td.dataset.status = order.status;
  if (order.reason) td.dataset.reason = order.reason;
  return td;
}

const state = {
  instruments: new Map(), // symbol -> the instruments channel's record
  tickers: new Map(), // symbol -> the ticker channel's data
  day: new Map(), // symbol -> REST ticker row (24 h open, change)
  selected: null,
  book: null,
  resyncs: 0, // book resubscriptions after a gap or checksum mismatch (shown on #ladder)
  candleResyncs: 0, // candles resubscriptions after a gap, a split's say (shown on #candles)
  instrumentSeqs: new Map(), // symbol -> {epoch, seq} of its `instruments` stream
  tape: { epoch: null, seq: null }, // the `trades` stream's position; seq null: awaiting one
  trades: [], // newest first
  trade: null, // the logged-on /ws/trade socket
  placing: false, // an order.place (or order.amend) awaits its answer: the button waits too
  amending: null, // the open order the form amends (its newest report)
  formBeforeAmend: null, // the order form as it was before the amend began (`formNow`)
  mayTrade: false, // the logged-on key has the trade scope, and the session is up
  keyTrades: false, // the session's key has the trade scope: kept while logging on again
  // order ids whose order.cancel awaits its answer, or was answered done while the order's
  // row still shows (its exec report not in yet): pruned as the rows go (`renderOrders`)
  canceling: new Set(),
  cancelingAll: false, // an orders.cancel_all awaits its answer
  lastReport: null, // the newest exec report (an answer may come after its order's first)
  resultOrder: null, // {orderId, clOrdId} of the placed order the result line shows
  resultAboutConnection: false, // the result line shows a push about a connection closing
  resultIsOutcome: false, // the result line says what became of an order (`sayOutcome`)
  loggingOut: false,
  orders: new Map(), // order_id -> open order
  balances: new Map(), // asset -> balance row
  fills: [], // exec reports with exec_type "trade", newest first
  fillIds: new Set(),
  replayAsked: false, // the account resubscribed with since_seq: a snapshot instead means the
  // venue no longer holds what happened meanwhile, and the fills and history are read again
  history: new Map(), // order_id -> closed order (its last report, or `orders.history`'s row)
  credentials: null, // {apiKey, key} of the session (the key non-extractable): to log on again
  accountSeq: null, // the last private `seq` applied: the since_seq of a logon again
  // The private stream's continuity across a logon again (as the SDK's, protocol §1): the last
  // event applied (seq, epoch, ts, type; null after a snapshot), the one a replay must begin
  // with, and whether the stream is being read afresh (its pushes ignored until the snapshot)
  accountLast: null,
  accountExpected: null,
  accountRestarting: false,
  relogon: null, // {attempt, why, said, trying, until, timer} while the page waits to log on
  relogonAttempts: 0, // tries since the last session that lived SESSION_LIVED_MS
  relogonRefusals: 0, // tries in a row the venue refused, none known to heal
  relogonRefusedSince: null, // Date.now() of the first of them (RELOGON_REFUSING_MAX_MS)
  relogonStopped: null, // {why} once the page stopped trying: "Log on again" tries once more
  // a logon again's resumed account stream, {seq, missed, done}: done once it caught up to the
  // answer's seq (or a snapshot came instead), which is then said once (`sayLoggedOnAgain`)
  catchUp: null,
  loggedOnAt: 0, // Date.now() of the session's logon
  recordsLoaded: false, // the fills and history were read on this logon's session (or since)
  recordsReading: null, // the read of them under way (a promise)
};
let market = null; // the /ws/public socket
let chart = null;
let reconnectDelay = 250;
let wasLive = false; // market data has been live once: a later "live" is a reconnect

// ------------------------------------------------------------------ rendering, coalesced

const dirty = new Set();
const renderers = {
  instruments: renderInstruments,
  info: renderInfo,
  book: renderBook,
  tape: renderTape,
  orders: renderOrders,
  balances: renderBalances,
  fills: renderFills,
  history: renderHistory,
};

function schedule(...parts) {
  if (dirty.size === 0) requestAnimationFrame(flush);
  for (const part of parts) dirty.add(part);
}

function flush() {
  const parts = [...dirty];
  dirty.clear();
  for (const part of parts) renderers[part]();
}

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text ?? "—";
  if (className) td.className = className;
  return td;
}

function fillTable(tbody, items, build) {
  // The rows are rebuilt on each change: a focused control (a symbol's link, an order's
  // Cancel) is found again by its data-focus-key, so the keyboard keeps its place; if its row
  // is gone (a canceled order), the control of the row now in its place takes the focus.
  const active = document.activeElement;
  const inside = tbody.contains(active);
  const focused = inside ? active.dataset.focusKey : undefined;
  const index = inside ? active.closest("tr").sectionRowIndex : -1;
  // the same kind of control (a Cancel, not the Amend beside it) in the row in its place
  const kind = inside && active.className ? `.${CSS.escape(active.className)}` : "";
  tbody.replaceChildren();
  for (const item of items) build(tbody.insertRow(), item);
  if (focused === undefined) return;
  const same = tbody.querySelector(`[data-focus-key="${CSS.escape(focused)}"]`);
  const near = tbody.rows[Math.min(index, tbody.rows.length - 1)];
  const next = same ?? near?.querySelector(`[data-focus-key]${kind}`);
  // no row left (the last open order canceled): its panel's heading (tabindex -1), not the
  // page's start, where the focus fell with the row (before session 35)
  (next ?? tbody.closest("div, section").querySelector("h2[tabindex]"))?.focus();
}

// ------------------------------------------------------------------ market data

async function connectMarket() {
  const socket = new VenueSocket("/ws/public", {
    onPush: onMarketPush,
    onClose: () => reconnectMarket(),
  });
  try {
    await socket.open();
  } catch {
    reconnectMarket();
    return;
  }
  market = socket;
  state.instrumentSeqs.clear(); // a new connection: every stream starts from its snapshot
  try {
    const { instruments } = await socket.request("instruments");
    const gone = applyInstruments(instruments);
    // at once, as the list is shown: a symbol the trader chooses while the subscriptions
    // await their answers is kept, not followed over and its figures cleared (session 36's
    // review)
    if (gone !== null) followInsteadOf(gone, instruments);
    await socket.request("subscribe", { ch: "instruments" });
    await socket.request("subscribe", { ch: "ticker" });
    // a symbol gone: followed already, by `followInsteadOf` or by the trader's choice since
    if (gone === null) {
      if (state.instruments.has(state.selected)) await followSymbol(state.selected);
      else if (instruments.length > 0) select(initialSymbol(instruments));
    }
  } catch (failed) {
    // the socket closed meanwhile: its onClose reconnects; anything else is said, not hidden
    if (market === socket) setStatus(`failed: ${failed.message}`, "warn");
    return;
  }
  reconnectDelay = 250;
  setStatus("live", "ok");
  // Back after a drop (a restart): what REST said meanwhile ("24 h change unavailable") and
  // the reserves are asked again now, not at the next 30 s poll.
  if (wasLive) {
    refreshDayStats();
    refreshReserves();
  }
  wasLive = true;
}

function applyInstruments(instruments) {
  // An `instruments` answer (on connecting, or asked again for a new listing): the instruments
  // the venue lists now replace those shown. A venue back after a drop (started afresh, another
  // config) may list fewer, and one it no longer lists stayed shown, followed if chosen, its
  // subscriptions refused in silence (before session 36: the list was added to). Returns the
  // symbol followed if the venue no longer lists it (`followInsteadOf`), else null.
  state.instruments = new Map(instruments.map((instrument) => [instrument.symbol, instrument]));
  for (const symbols of [state.tickers, state.day]) {
    for (const symbol of symbols.keys()) if (!state.instruments.has(symbol)) symbols.delete(symbol);
  }
  unlisted.clear();
  schedule("instruments", "info");
  const followed = state.selected;
  return followed === null || state.instruments.has(followed) ? null : followed;
}

function followInsteadOf(gone, instruments) {
  // The symbol followed is no longer listed: the first listed (or the address's) is followed
  // instead. The order typed for the symbol gone (its side and type aside) is cleared, never
  // carried onto the other: a Market buy 2 typed for MSFTx-USD filled on AAPLx-USD, a sell at
  // 415.10 rested there (a review of session 36). An amend of its order ends, said why, even
  // while the amend awaits its answer (which the result line then shows). Only a venue started
  // afresh lists fewer, met on a new connection that follows nothing yet: none unsubscribed.
  const amended = state.amending?.symbol === gone ? state.amending.order_id : null;
  if (amended !== null) stopAmending();
  clearOrderFigures();
  state.selected = null;
  const next = instruments.length > 0 ? initialSymbol(instruments) : null;
  const why = `${gone} is no longer listed`;
  const now = next === null ? ", nor any other" : `: now ${next}`;
  const said = `${why}${now}; the order form cleared`;
  const note = amended === null ? said : `order ${amended} not amended: ${said}`;
  sayBesideAnOrdersFate(note, "warn");
  if (next !== null) {
    select(next);
    return;
  }
  followNothing();
}

function followNothing() {
  // The venue lists no instrument: nothing of the symbol gone stays shown as if followed (its
  // rules, the price's label, the chart's caption: before session 36's review they stayed)
  state.book = null;
  state.trades = [];
  for (const id of ["selected-symbol", "order-symbol"]) $(id).textContent = "—";
  $("instrument-info").textContent = "";
  $("price-label").textContent = "price";
  $("qty-label").textContent = "quantity";
  chart.showNothing();
  schedule("book", "tape");
}

function clearOrderFigures() {
  // The price and quantity typed, and a price a market order put aside (`syncKind`)
  $("order-price").value = "";
  $("order-qty").value = "";
  delete $("order-price").dataset.kept;
}

function initialSymbol(instruments) {
  // The symbol named in the address (#SYMBOL), else the first one listed.
  const named = symbolInAddress();
  const known = instruments.some((instrument) => instrument.symbol === named);
  return known ? named : instruments[0].symbol;
}

function symbolInAddress() {
  // The #SYMBOL of the address; null for a fragment that is no valid %-escape (a mangled
  // link must not stop the page).
  try {
    return decodeURIComponent(location.hash.slice(1));
  } catch {
    return null;
  }
}

function onAddressChange() {
  // A #SYMBOL typed into the address, or a symbol's link followed (Enter on it).
  const symbol = symbolInAddress();
  if (state.instruments.has(symbol)) select(symbol);
}

function reconnectMarket() {
  market = null;
  setStatus("reconnecting…", "warn");
  setTimeout(connectMarket, reconnectDelay);
  reconnectDelay = Math.min(reconnectDelay * 2, RECONNECT_MAX_MS);
}

function setStatus(text, kind) {
  const pill = $("market-status");
  // set only when it changes: the pill is a live region, and each failed reconnect sets the
  // same "reconnecting…", which a screen reader would announce again every few seconds
  const said = `market data: ${text}`;
  if (pill.textContent !== said) pill.textContent = said;
  pill.className = `pill ${kind}`;
  // Not live: the book, tape and charts shown are the last ones received, perhaps stale
  // (dimmed, and said on hover), so nobody trades off them as if they were current.
  const main = document.querySelector("main");
  main.classList.toggle("stale", kind !== "ok");
  const stale = "market data is not live: the figures shown may be out of date";
  main.title = kind === "ok" ? "" : stale;
}

function onMarketPush(message) {
  noticeTheDay();
  switch (message.ch) {
    case "instruments":
      onInstrument(message);
      break;
    case "ticker":
      onTicker(message);
      break;
    case "book":
      onBook(message);
      break;
    case "trades":
      onTrades(message);
      break;
    case "candles":
      if (!chart.update(message)) resyncCandles();
      break;
    case "heartbeat":
      onHeartbeat(message);
      break;
    default: // channels this page does not follow
  }
}

function onInstrument(message) {
  // Each update is the whole record, so a missed one costs nothing but its seq: the newest
  // record wins, and the heartbeat's check (`onHeartbeat`) resubscribes for the seq.
  const known = state.instrumentSeqs.get(message.sym);
  if (message.type === "update" && known?.epoch === message.epoch && message.seq <= known.seq) {
    return; // already applied
  }
  state.instrumentSeqs.set(message.sym, { epoch: message.epoch, seq: message.seq });
  const before = state.instruments.get(message.sym);
  state.instruments.set(message.sym, message.data);
  if (before !== undefined && before.status !== message.data.status) refreshDayStats();
  schedule("instruments", "info");
}

function onTicker(message) {
  // A last price that moves while its market cannot trade was rescaled (a split): the REST
  // 24 h open is in the old units until asked again.
  const before = state.tickers.get(message.sym);
  state.tickers.set(message.sym, message.data);
  const status = state.instruments.get(message.sym)?.status;
  const moved = before !== undefined && before.last !== message.data.last;
  if (moved && status !== undefined && !TRADING.has(status)) refreshDayStats();
  // The first trade in a window the REST ticker said was empty: its 24 h open is that trade's
  // price now, asked at once rather than showing "—" beside a last price until the next poll.
  const day = state.day.get(message.sym);
  const first = (before?.trades ?? 0) === 0 && message.data.trades > 0;
  if (first && day !== undefined && day.open == null) refreshDayStats();
  schedule("instruments", "info");
}

function onHeartbeat(message) {
  // Protocol §9.7: each followed stream's last seq. One that differs from ours means a
  // message was missed (or, for `candles`, a split moved it with none): subscribe again.
  const seqs = message.seqs ?? {};
  const epoch = message.epoch;
  const symbol = state.selected;
  if (symbol !== null) {
    const book = seqs[`book:${symbol}:${BOOK_DEPTH}`];
    const local = state.book;
    if (book !== undefined && local?.seq != null && (local.epoch !== epoch || local.seq !== book)) {
      resyncBook();
    }
    const trades = seqs[`trades:${symbol}`];
    const tape = state.tape;
    if (trades !== undefined && tape.seq !== null && (tape.epoch !== epoch || tape.seq !== trades)) {
      resyncTrades();
    }
    const candles = seqs[`candles:${symbol}:${INTERVAL}`];
    if (candles !== undefined && !chart.inStep(epoch, candles)) resyncCandles();
  }
  for (const [name, seq] of Object.entries(seqs)) {
    if (!name.startsWith("instruments:")) continue;
    const known = state.instrumentSeqs.get(name.slice("instruments:".length));
    if (known !== undefined && (known.epoch !== epoch || known.seq !== seq)) {
      state.instrumentSeqs.clear(); // one resubscription brings every symbol's snapshot
      market?.request("subscribe", { ch: "instruments" }).catch(() => {});
      break;
    }
  }
}

function onBook(message) {
  if (state.book === null || message.sym !== state.selected) return;
  if (!state.book.apply(message) && message.type === "update") {
    // a gap, a restart or a checksum mismatch: start over from a fresh snapshot (a
    // snapshot is the venue's word: resubscribing on it could only loop)
    resyncBook();
  }
  schedule("book");
}

function resyncBook() {
  state.resyncs += 1;
  $("ladder").dataset.resyncs = String(state.resyncs);
  state.book = new LocalBook(state.selected, BOOK_DEPTH);
  subscribeBook(state.selected);
}

function onTrades(message) {
  if (message.sym !== state.selected) return;
  const tape = state.tape;
  if (message.type === "snapshot") {
    tape.epoch = message.epoch;
    tape.seq = message.seq;
  } else {
    if (tape.seq === null || message.seq <= tape.seq) return; // awaiting a snapshot, or seen
    if (message.epoch !== tape.epoch || message.prev_seq !== tape.seq) {
      resyncTrades(); // a missed message: the snapshot that answers holds the last 50
      return;
    }
    tape.seq = message.seq;
  }
  const newestFirst = [...message.data].reverse();
  state.trades = message.type === "snapshot" ? newestFirst : newestFirst.concat(state.trades);
  state.trades.length = Math.min(state.trades.length, TAPE_ROWS);
  schedule("tape");
}

function resyncTrades() {
  state.tape = { epoch: null, seq: null };
  market?.request("subscribe", { ch: "trades", symbols: [state.selected] }).catch(() => {});
}

function resyncCandles() {
  // The chart's stream skipped a seq: a split rescaled the bars (or a message was missed).
  // A new snapshot brings them in the new units; the 24 h open is asked again too.
  state.candleResyncs += 1;
  $("candles").dataset.resyncs = String(state.candleResyncs);
  chart.resync();
  const params = { ch: "candles", symbols: [state.selected], interval: INTERVAL };
  market?.request("subscribe", params).catch(() => {});
  refreshDayStats();
}

function subscribeBook(symbol) {
  const params = { ch: "book", symbols: [symbol], depth: BOOK_DEPTH };
  return market?.request("subscribe", params).catch(() => {});
}

async function followSymbol(symbol) {
  const socket = market; // a close meanwhile fails the requests; the reconnect follows again
  if (socket === null) return;
  // Each subscribe waits for the one before: once another symbol is chosen meanwhile (two
  // quick clicks), `select` has unsubscribed this one, and subscribing its rest now would
  // follow it for good (traffic, and streams counted against the connection's 256).
  const stillChosen = () => state.selected === symbol && market === socket;
  await subscribeBook(symbol);
  if (!stillChosen()) return;
  await socket.request("subscribe", { ch: "trades", symbols: [symbol] }).catch(() => {});
  if (!stillChosen()) return;
  const candles = { ch: "candles", symbols: [symbol], interval: INTERVAL };
  await socket.request("subscribe", candles).catch(() => {});
}

function select(symbol) {
  if (symbol === state.selected) return;
  if (state.amending !== null && state.amending.symbol !== symbol) {
    if (state.placing) {
      // its amend awaits the venue's answer, which may yet amend it: the form stays on the
      // order (and the address on its symbol, a link having changed it) until the answer
      const followed = state.selected ?? state.amending.symbol; // never "#null"
      history.replaceState(null, "", `#${encodeURIComponent(followed)}`);
      sayAmendAwaited(state.amending);
      return;
    }
    endAmendGivingFormBack("another symbol chosen", symbol);
  }
  const previous = state.selected;
  state.selected = symbol;
  state.book = new LocalBook(symbol, BOOK_DEPTH);
  state.trades = [];
  state.tape = { epoch: null, seq: null };
  if (market !== null && previous !== null) {
    for (const ch of ["book", "trades", "candles"]) {
      market.request("unsubscribe", { ch, symbols: [previous] }).catch(() => {});
    }
  }
  followSymbol(symbol);
  chart.show(state.instruments.get(symbol));
  history.replaceState(null, "", `#${encodeURIComponent(symbol)}`);
  schedule("instruments", "info", "book", "tape");
}

// ------------------------------------------------------------------ 24 h change, reserves

function rowsOf(body, key) {
  // {tickers: [...]}: docs/rest.md
  return Array.isArray(body?.[key]) ? body[key] : [];
}

let dayStats = null; // the REST ticker request under way, if any
let dayStatsAgain = false; // asked for again meanwhile
let dayStatsGone = false; // a build without REST (404): never asked again
const unlisted = new Set(); // REST ticker symbols the `instruments` query did not list: asked once

async function fetchDayStats() {
  // One request at a time; one asked for meanwhile runs after it (it may see a newer state).
  if (dayStats !== null) {
    dayStatsAgain = true;
    return dayStats;
  }
  dayStats = (async () => {
    try {
      const rows = rowsOf(await getJson("/api/v1/ticker"), "tickers");
      for (const row of rows) state.day.set(row.symbol, row);
      const unknown = rows.map((row) => row.symbol).filter((symbol) => !known(symbol));
      if (unknown.length > 0) followNewListings(unknown);
      schedule("instruments");
      $("day-note").textContent = "";
    } catch (failed) {
      if (failed.message === "HTTP 404") dayStatsGone = true; // the column stays "—"
      // else the venue is away for a moment (a restart, a dead connection): said, and asked
      // again at the next poll (a request timed out is aborted: `getJson`)
      else $("day-note").textContent = `24 h change unavailable (${failed.message})`;
    }
  })();
  await dayStats;
  dayStats = null;
  if (dayStatsAgain && !dayStatsGone) {
    dayStatsAgain = false;
    await fetchDayStats();
  }
}

function known(symbol) {
  return state.instruments.has(symbol) || unlisted.has(symbol);
}

async function followNewListings(symbols) {
  // No channel announces an instrument listed after the page subscribed (protocol §9.2): the
  // REST ticker, which lists every symbol, names it. Ask the list again and subscribe anew,
  // which brings every symbol's record and ticker, the new ones included.
  const socket = market;
  if (socket === null) return; // a reconnect asks for all of them anyway
  try {
    const { instruments } = await socket.request("instruments");
    const gone = applyInstruments(instruments); // as on connecting: one way to apply it
    for (const symbol of symbols) if (!state.instruments.has(symbol)) unlisted.add(symbol);
    state.instrumentSeqs.clear();
    if (gone !== null) followInsteadOf(gone, instruments);
    await socket.request("subscribe", { ch: "instruments" });
    await socket.request("subscribe", { ch: "ticker" });
  } catch {
    return; // the socket closed meanwhile: the reconnect asks for everything
  }
}

function refreshDayStats() {
  // Out of turn: a split, or a status change, makes the polled 24 h open stale at once.
  if (!dayStatsGone) fetchDayStats();
}

async function pollDayStats() {
  await fetchDayStats();
  if (!dayStatsGone) setTimeout(pollDayStats, REST_POLL_MS);
}

let reservesTimer = null; // the next poll of the reserves
let reservesGone = false; // the venue refused the query: a build without it, never asked again

async function pollReserves() {
  // The `reserves` query (no logon) on the market-data socket, every REST_POLL_MS.
  reservesTimer = null;
  const box = $("reserves");
  if (market !== null) {
    try {
      box.replaceChildren(reservesTable((await market.request("reserves")).reserves));
    } catch (failed) {
      box.replaceChildren(note(`not available (${failed.message})`));
      if (failed.error !== undefined) reservesGone = true;
    }
  }
  if (!reservesGone && reservesTimer === null) {
    reservesTimer = setTimeout(pollReserves, market === null ? 1000 : REST_POLL_MS);
  }
}

function refreshReserves() {
  // Out of turn (market data back after a drop): the poll waiting is replaced by one now.
  if (reservesGone) return;
  clearTimeout(reservesTimer);
  reservesTimer = null;
  pollReserves();
}

function reservesTable(rows) {
  // Per asset: supply against the latest attestation (the `reserves` query), covered or not.
  if (rows.length === 0) return note("no assets");
  const table = document.createElement("table");
  table.id = "reserves-table";
  const head = table.createTHead().insertRow();
  for (const title of ["asset", "supply", "attested"]) {
    const th = head.appendChild(document.createElement("th"));
    th.textContent = title;
    if (title === "supply" || title === "attested") th.className = "num"; // over its figures
  }
  // "covered" in each row says it on sight; a screen reader is told the column's name too
  const coverage = head.appendChild(document.createElement("th"));
  coverage.append(Object.assign(document.createElement("span"), {
    className: "visually-hidden",
    textContent: "coverage",
  }));
  const body = table.createTBody();
  for (const row of rows) {
    const tr = body.insertRow();
    tr.dataset.asset = row.asset;
    const attested = row.as_of ? new Date(row.as_of / 1000).toISOString() : "never";
    cell(tr, row.asset).title = `attested as of ${attested}`;
    cell(tr, row.supply, "num supply");
    cell(tr, row.attested, "num attested");
    const covered = row.covered === true;
    cell(tr, covered ? "covered" : "NOT covered", covered ? "covered up" : "covered down");
  }
  return table;
}

function note(text) {
  const p = document.createElement("p");
  p.className = "muted";
  p.textContent = text;
  return p;
}

function dayChange(symbol) {
  // 24 h change in percent: the REST ticker's, or from its 24 h open and a newer last price.
  const row = state.day.get(symbol);
  if (row === undefined || row.open == null) return null;
  const last = state.tickers.get(symbol)?.last ?? row.last;
  if (last === row.last && row.change_pct != null) return Number(row.change_pct);
  const open = Number(row.open);
  return open > 0 && last != null ? ((Number(last) - open) / open) * 100 : null;
}

function roundedChange(percent) {
  // To 2 decimals half up, as REST's `change_pct`; -0 (a fall too small to show) is 0, so a
  // one-tick fall of a bill reads "+0.00%" as REST says it, not a red "-0.00%".
  return percent === null ? null : Math.round(percent * 100) / 100 || 0;
}

// ------------------------------------------------------------------ market rendering

function billYield(symbol) {
  const live = state.tickers.get(symbol)?.yield;
  return live ?? state.instruments.get(symbol)?.yield ?? null;
}

function shownPrice(symbol, price) {
  // A price as shown for its instrument, everywhere on the page (the instruments, the ladder,
  // the tape, the open orders, the history, the fills): a bill's is per 100 of face, said
  // beside it, so 98.70 is not read as the price of one unit.
  const bill = state.instruments.get(symbol)?.kind === "tbill";
  return bill && price != null ? `${price} /100` : price;
}

function renderInstruments() {
  const tbody = $("instruments").tBodies[0];
  const symbols = [...state.instruments.keys()].sort();
  fillTable(tbody, symbols, (row, symbol) => {
    const instrument = state.instruments.get(symbol);
    const bill = instrument.kind === "tbill";
    row.dataset.symbol = symbol;
    row.className = symbol === state.selected ? "selected" : "";
    row.onclick = () => select(symbol);
    // a link, so the keyboard reaches the symbol (Tab) and follows it (Enter): onAddressChange
    const link = document.createElement("a");
    link.href = `#${encodeURIComponent(symbol)}`;
    link.textContent = symbol;
    link.dataset.focusKey = symbol;
    row.insertCell().appendChild(link);
    const last = state.tickers.get(symbol)?.last;
    cell(row, last == null ? "—" : shownPrice(symbol, last), "num last");
    const change = roundedChange(dayChange(symbol));
    const text = change === null ? "—" : `${change >= 0 ? "+" : ""}${change.toFixed(2)}%`;
    const direction = change === null ? "" : change >= 0 ? " up" : " down";
    cell(row, text, `num change${direction}`);
    const y = bill ? billYield(symbol) : null;
    cell(row, y === null ? "" : `${y.investment_yield_pct}%`, "num yield");
  });
}

function renderInfo() {
  const instrument = state.instruments.get(state.selected);
  if (instrument === undefined) return;
  $("selected-symbol").textContent = instrument.symbol;
  $("order-symbol").textContent = instrument.symbol; // on a phone the chart's heading is below
  const bill = instrument.kind === "tbill";
  const parts = [
    bill ? "T-bill" : "tokenized equity",
    `status ${inWords(instrument.status)}`,
    `tick ${instrument.tick}`,
    `step ${instrument.step}`,
    `band ${instrument.band_low} – ${instrument.band_high}`,
    `fees maker ${instrument.maker_fee_bps} / taker ${instrument.taker_fee_bps} bp`,
  ];
  if (bill) {
    const matures = new Date(instrument.maturity / 1000).toISOString().slice(0, 10);
    parts.splice(1, 0, `matures ${matures}`);
    const y = billYield(instrument.symbol);
    if (y !== null) {
      parts.push(
        `price per 100 of face ${y.price_per_100}`,
        `${y.days_to_maturity} days`,
        `discount rate ${y.discount_rate_pct}%`,
        `investment yield ${y.investment_yield_pct}%`,
      );
    }
  }
  $("instrument-info").textContent = parts.join(" · ");
  $("price-label").textContent = bill ? "price per 100 of face" : `price (${instrument.quote})`;
  $("qty-label").textContent = bill
    ? `face value (${instrument.quote}, steps of ${instrument.step})`
    : `quantity (${instrument.base})`;
}

function renderBook() {
  const book = state.book;
  const asks = book ? book.sortedAsks().slice(0, LADDER_LEVELS) : [];
  const bids = book ? book.sortedBids().slice(0, LADDER_LEVELS) : [];
  const most = Math.max(1, ...[...asks, ...bids].map(([, qty]) => Number(qty)));
  ladderSide($("ladder-asks"), asks, "ask", most, true);
  ladderSide($("ladder-bids"), bids, "bid", most, false);
  // in whole units: as floating point numbers, 90071992547409.93 less .91 read 0.03 (before
  // session 36)
  const decimals = state.instruments.get(state.selected)?.price_decimals ?? 2;
  const units = (price) => decimalUnits(price, decimals) ?? 0n;
  $("spread").textContent =
    asks.length && bids.length
      ? `spread ${unitsText(units(asks[0][0]) - units(bids[0][0]), decimals)}`
      : "—";
  drawDepth($("depth"), book, depthFigures(book));
}

function depthFigures(book) {
  // The depth chart's figures as the venue holds them: the outer prices as sent, each side's
  // total summed in whole units (before session 37 the axis read the outer prices less and
  // more a margin as floating point numbers, and no quantity). Said to a screen reader in the
  // canvas's name too.
  const instrument = state.instruments.get(state.selected);
  const decimals = instrument?.qty_decimals ?? 6;
  const side = (levels) => {
    let total = 0n;
    for (const [, qty] of levels) total += decimalUnits(qty, decimals) ?? 0n;
    const prices = levels.map(([price]) => shownPrice(state.selected, price));
    return { total: unitsText(total, decimals), best: prices[0], last: prices.at(-1) };
  };
  const bids = side(book ? book.sortedBids() : []);
  const asks = side(book ? book.sortedAsks() : []);
  const said = (name, levels, way) => {
    if (levels.best === undefined) return `no ${name}`;
    const one = levels.best === levels.last;
    const where = one ? `at ${levels.best}` : `from ${levels.best} ${way} to ${levels.last}`;
    return `${name} ${where}, ${levels.total} in all`;
  };
  const name = `depth chart: ${said("bids", bids, "down")}; ${said("asks", asks, "up")}`;
  if ($("depth").getAttribute("aria-label") !== name) $("depth").setAttribute("aria-label", name);
  return {
    bids: bids.best === undefined ? null : `bids ${bids.total}`,
    asks: asks.best === undefined ? null : `asks ${asks.total}`,
    low: bids.last ?? asks.best,
    high: asks.last ?? bids.best,
  };
}

function ladderSide(tbody, levels, side, most, reverse) {
  // The running total in whole units (BigInt): summed as Numbers, 3000000000.706898 and
  // 818847614.847480 made 3818847615.554379, a unit off (before session 36).
  const decimals = state.instruments.get(state.selected)?.qty_decimals ?? 6;
  let total = 0n;
  const rows = levels.map(([price, qty]) => {
    total += decimalUnits(qty, decimals) ?? 0n;
    return [price, qty, total];
  });
  if (reverse) rows.reverse(); // asks: the best one lowest, next to the spread
  const mine = myPrices(side === "bid" ? "buy" : "sell");
  const focusedAt = focusedRowIndex(tbody);
  const kept = keepLadderRows(tbody, new Set(rows.map(([price]) => price)));
  rows.forEach(([price, qty, cumulative], index) => {
    const row = kept.get(price) ?? newLadderRow(tbody, index, price);
    row.className = mine.has(price) ? `${side} mine` : side;
    row.title = mine.has(price) ? "your order rests here" : "";
    row.style.setProperty("--fill", `${Math.round((Number(qty) / most) * 100)}%`);
    setLevelButton(row.cells[0].firstChild, side, price, mine.has(price));
    setText(row.cells[1], qty);
    setText(row.cells[2], unitsText(cumulative, decimals));
  });
  if (focusedAt >= 0 && !tbody.contains(document.activeElement)) {
    // the focused level gone: the focus goes to the level now in its place
    tbody.rows[Math.min(focusedAt, tbody.rows.length - 1)]?.querySelector("button")?.focus();
  }
}

function focusedRowIndex(tbody) {
  const active = document.activeElement;
  return tbody.contains(active) ? active.closest("tr").sectionRowIndex : -1;
}

function keepLadderRows(tbody, prices) {
  // The ladder's rows are kept, keyed by price, and updated in place: a focused level's button
  // stays the same element (rebuilt at each book update, it was focused anew, and a screen
  // reader announced it again). The rows of prices gone are removed; those kept stay in order,
  // as prices sort alike, and the new ones are inserted among them (`newLadderRow`).
  const kept = new Map();
  for (const row of [...tbody.rows]) {
    if (prices.has(row.dataset.price)) kept.set(row.dataset.price, row);
    else row.remove();
  }
  return kept;
}

function newLadderRow(tbody, index, price) {
  const row = tbody.insertRow(index);
  row.dataset.price = price;
  row.onclick = (event) => usePrice(price, event);
  const button = document.createElement("button");
  button.type = "button";
  button.className = "level";
  cell(row, "", "num price").append(button);
  cell(row, "", "num qty");
  cell(row, "", "num");
  return row;
}

function setLevelButton(button, side, price, mine) {
  // The level's price as a button: the keyboard reaches it (Tab) and copies it (Enter), as a
  // click on the row does; its name says the side and the account's own order, which the row's
  // colour and dot alone say on sight. Changed only where it changed (a screen reader hears a
  // focused button's name change).
  setText(button, shownPrice(state.selected, price));
  const own = mine ? ", your order rests here" : "";
  const name = `${side} ${button.textContent}${own}: use this price`;
  if (button.getAttribute("aria-label") !== name) button.setAttribute("aria-label", name);
  button.dataset.focusKey = `${side}-${price}`;
}

function setText(element, text) {
  if (element.textContent !== text) element.textContent = text;
}

function usePrice(price, event) {
  // Copied into the order form; from the keyboard (a click with no mouse's `detail`), the focus
  // follows it there, so the next keys type the quantity. A market order takes no price: it
  // becomes a Limit IOC at this price, which trades now up to it and no further (a market
  // order goes on within the band), nothing sent until Place order (before session 35 the
  // price showed, greyed, in the market order's field, never sent).
  // Said on the result line (a polite status), which a screen reader hears: switched silently,
  // the type changed unseen (before session 35's review).
  const switched = $("order-kind").value === "market";
  if (switched) {
    $("order-kind").value = "ioc";
    syncKind();
  }
  $("order-price").value = price;
  clearFieldError($("order-price"));
  if (switched) {
    const shown = shownPrice(state.selected, price);
    sayBesideAnOrdersFate(`Market takes no price: now Limit IOC at ${shown}`, "warn");
  }
  if (event.detail === 0) $("order-qty").focus();
}

function myPrices(side) {
  // The prices at which the logged-on account rests orders on this side of the shown book.
  const prices = new Set();
  for (const order of state.orders.values()) {
    if (order.symbol === state.selected && order.side === side) prices.add(order.price);
  }
  return prices;
}

function renderTape() {
  fillTable($("tape").tBodies[0], state.trades, (row, trade) => {
    row.className = trade.taker_side === "buy" ? "bid" : "ask";
    row.dataset.tradeId = trade.trade_id;
    cell(row, clock(trade.ts));
    cell(row, trade.taker_side, "taker"); // the side in words: the colour alone says it on sight
    cell(row, shownPrice(state.selected, trade.price), "num price");
    cell(row, trade.qty, "num qty");
  });
}

const DAY_MS = 86400000;
let drawnDay = Math.floor(Date.now() / DAY_MS); // the day (UTC) the timed rows say "today" of

function redrawAtMidnight() {
  // `clock` says the date or not as a row is drawn: at midnight (UTC) today's rows become
  // yesterday's, and are drawn anew with their date, then again at the next (a page left open
  // overnight showed yesterday's with the time alone until new data came: session 35's review).
  const now = Date.now();
  const midnight = (Math.floor(now / DAY_MS) + 1) * DAY_MS;
  setTimeout(() => {
    noticeTheDay();
    redrawAtMidnight();
  }, midnight - now);
}

function noticeTheDay() {
  // The timed rows drawn anew once the clock is past the day they were drawn in. The timer at
  // midnight alone is late on a laptop that slept through it (its timers wait out the sleep):
  // the clock is also read at each frame heard and as the page is shown again (since session
  // 36; before, yesterday's rows read as today's until the late timer ran).
  const day = Math.floor(Date.now() / DAY_MS);
  if (day === drawnDay) return;
  drawnDay = day;
  schedule("fills", "history", "tape");
}

function clock(tsMicros) {
  // UTC, and the date for another day than today (UTC): the last 100 fills, the closed orders
  // and a quiet symbol's tape span days, whose time alone read as today's (before session 35);
  // drawn anew at midnight (`redrawAtMidnight`)
  const iso = new Date(tsMicros / 1000).toISOString();
  const today = new Date(Date.now()).toISOString().slice(0, 10);
  const time = iso.slice(11, 19);
  return iso.startsWith(today) ? time : `${iso.slice(0, 10)} ${time}`;
}

// ------------------------------------------------------------------ logon

async function onLogon(event) {
  event.preventDefault();
  // One logon at a time. Log on waits by aria-disabled, not `disabled`, which dropped the
  // keyboard's focus to the page's start (before session 35): it stays on the button, to try
  // again after a refusal, and goes on to Log out once logged on (`swapLogonAndSession`).
  const button = $("logon-button");
  if (button.getAttribute("aria-disabled") === "true") return;
  const apiKey = typedAsSeen("api-key");
  const secret = $("api-secret");
  // the field left empty named, and focused, so that the keyboard is where it is missing
  const missing = apiKey === "" ? $("api-key") : secret.value === "" ? secret : null;
  if (missing !== null) {
    showLogonError(missing === secret ? "enter the API key's secret" : "enter an API key");
    missing.focus();
    return;
  }
  // an invisible character left in the key (a direction control, which reorders what is
  // shown, or one `INVISIBLE` does not strip): named here, as the figures' are; sent, the
  // venue's answer was "the API key is unknown", over a key that looked right (before session 36)
  const hidden = hiddenInKey(apiKey);
  if (hidden !== null) {
    showLogonError(hidden);
    $("api-key").focus();
    return;
  }
  showLogonError("");
  button.setAttribute("aria-disabled", "true");
  try {
    const credentials = { apiKey, key: await importSecret(secret.value) };
    await startSession(credentials, false, () => {
      secret.value = ""; // logged on: the page keeps only the non-extractable key
    });
  } catch (failed) {
    const why = logonFailure(failed, apiKey);
    showLogonError(`logon failed: ${why}${secretSlips(failed, secret.value)}`);
  } finally {
    button.removeAttribute("aria-disabled");
  }
}

function hiddenInKey(apiKey) {
  // What is wrong with a key holding an invisible format character (Unicode Cf), in the
  // form's words; null for none.
  const hidden = hiddenCharacter(apiKey);
  if (hidden === null) return null;
  const again = "type it again without it";
  const typed = "the API key typed holds an invisible";
  if (!hidden.reorders) return `${typed} character (${hidden.code}): ${again}`;
  return `${typed} direction character (${hidden.code}), which reorders what is shown: ${again}`;
}

// The longest API key the venue reads (protocol §4.1; `auth.KEY_LENGTH_MAX`)
const API_KEY_LENGTH_MAX = 64;

function logonFailure(failed, apiKey = "") {
  // The venue's words for a wrong key or secret speak of the wire (`sig`, `the logon
  // payload`), which the page signs itself: say it in the form's words, the code after. So
  // for a key too long to be one (a paste of something else): the venue's are msgspec's,
  // `Expected `str` of length <= 64 - at `params.api_key``. It is still sent, so that a
  // frame over 64 KiB meets the venue's MESSAGE_TOO_BIG as any other would.
  const error = failed.error;
  if (error?.name === "BAD_PARAM" && apiKey.length > API_KEY_LENGTH_MAX) {
    const typed = `the API key typed has ${apiKey.length} characters`;
    return `${typed}, and a key has at most ${API_KEY_LENGTH_MAX} (${error.name} ${error.code})`;
  }
  if (error?.name !== "BAD_SIGNATURE") return failed.message;
  return `the API key is unknown or the secret is wrong (${error.name} ${error.code})`;
}

function secretSlips(failed, secret) {
  // The key is trimmed, the secret signed as typed (a secret may hold spaces and quotes): a
  // refused one with a space at an end was most likely copied with the columns of `venue
  // serve`'s list, one in quotes with the JSON of `venue admin issue-key` ("…",).
  if (failed.error?.name !== "BAD_SIGNATURE") return "";
  const ends = [secret !== secret.trimStart() && "starts", secret !== secret.trimEnd() && "ends"];
  const where = ends.filter(Boolean).join(" and ");
  const slips = where ? [`the secret typed ${where} with a space, and is signed as typed`] : [];
  // an invisible character pasted along (a zero-width space): named, as it cannot be seen
  const invisible = /\p{Cf}/u.exec(secret)?.[0];
  if (invisible !== undefined) {
    const said = `the secret typed holds an invisible character (${codePoint(invisible)})`;
    slips.push(`${said}, and is signed as typed`);
  }
  if (/^\s*["“”']|["“”'],?\s*$/.test(secret)) {
    slips.push("the secret typed is in quotes, which are not part of it: type it without them");
  }
  return slips.map((slip) => `; ${slip}`).join("");
}

class KeyRefusedError extends Error {
  // A logon the venue took whose key the page cannot use: no try again can mend it.
}

async function startSession(credentials, again, onLoggedOn = () => {}) {
  // Open /ws/trade, log on with the session's key and follow the account. `again`: logging on
  // again after the connection dropped, the account still shown: its stream resumes after the
  // last seq applied (protocol §8.1), so what happened meanwhile is replayed, not skipped.
  const socket = new VenueSocket("/ws/trade", {
    onPush: onAccountPush,
    onClose: (event) => {
      if (state.trade === socket) endSession(event); // not a refused logon's own close
    },
  });
  await socket.open();
  if (again && state.credentials !== credentials) {
    socket.close(); // logged out while the socket opened: nothing signed is sent
    throw new Error("logged out meanwhile");
  }
  let result;
  try {
    result = await logon(socket, credentials.apiKey, credentials.key);
    // The page shows the account (balances, open orders, fills): a key without the `read`
    // scope could place orders it would never show, so it is refused here, before the page
    // reads as logged on (docs/web.md).
    if (!(result.scopes ?? []).includes("read")) {
      throw new KeyRefusedError(
        "this API key lacks the read scope, which the page needs to show the account; " +
          "use a key with read and trade",
      );
    }
    if (again && state.credentials !== credentials) throw new Error("logged out meanwhile");
  } catch (refused) {
    socket.close();
    throw refused;
  }
  onLoggedOn();
  state.credentials = credentials;
  state.trade = socket;
  state.loggedOnAt = Date.now();
  showSession(result, credentials.apiKey, again);
  try {
    state.replayAsked = again && state.accountSeq !== null;
    const resumed = state.accountSeq;
    state.accountExpected = null; // (a first logon, or a snapshot asked for: nothing to check)
    state.accountRestarting = false;
    const since = state.replayAsked ? { since_seq: replayedFrom(resumed) } : {};
    const answer = await socket.request("subscribe", { ch: "account", ...since });
    if (again) followCatchUp(resumed, answer.seq);
    if (state.accountExpected !== null && answer.seq === resumed - 1) {
      // nothing replayed, and the stream ends just short of the event seen: another venue's
      readAccountAfresh(socket);
    }
    // read until once read: a first session that dropped while reading leaves it to the next
    if (!state.recordsLoaded) await readAccountRecords(socket);
  } catch (failed) {
    // A close now is the session's end, which `endSession` reports ("disconnected
    // (code)"). Any other failure leaves no half session. A first logon: the page logs off
    // and says why. A try again (its resubscription or a read refused, rate limited by the
    // account's bucket, say, or timed out): the account stays shown, dimmed, and
    // `relogonNow` says why and tries again, or logs off saying why if no try can mend it.
    if (state.trade !== socket) return;
    state.trade = null;
    socket.close();
    if (again) showStale();
    else clearSession();
    throw failed;
  }
}

function showSession(result, apiKey, again) {
  $("account").textContent = String(result.account);
  $("api-key-shown").textContent = apiKey;
  swapLogonAndSession(true);
  $("orders-panel").classList.remove("stale");
  const trades = result.scopes.includes("trade");
  state.mayTrade = trades;
  state.keyTrades = trades;
  $("place-button").disabled = !trades;
  $("place-button").removeAttribute("aria-disabled"); // it waited while logging on again
  schedule("orders"); // the rows' Amend
  // Logged on again, the result line keeps what it said (an outcome unknown, say), but not a
  // push about the connection that dropped: `venue: the venue is stopping` stayed under the
  // form of a page logged on again and trading (before session 35).
  if (again && !state.resultAboutConnection) return;
  showResult(
    trades
      ? `logged on as account ${result.account}`
      : `logged on as account ${result.account}: read only (this key lacks the trade scope)`,
    trades ? "ok" : "warn",
  );
}

function swapLogonAndSession(loggedOn) {
  // The logon form and the session's line take each other's place; the keyboard's focus in the
  // one hidden goes to the other's first control (Log out; the API key), not to the page's
  // start, where a hidden control drops it.
  const [hiding, showing, next] = loggedOn
    ? [$("logon-form"), $("session"), $("logout-button")]
    : [$("session"), $("logon-form"), $("api-key")];
  const focused = hiding.contains(document.activeElement);
  hiding.hidden = true;
  showing.hidden = false;
  if (focused) next.focus();
}

function readAccountRecords(socket) {
  // The fills and the order history, read once at a time (a snapshot's reread may meet the
  // logon's read), `recordsLoaded` once both are.
  state.recordsReading ??= loadAccountRecords(socket).finally(() => {
    state.recordsReading = null;
  });
  return state.recordsReading;
}

async function loadAccountRecords(socket) {
  await loadFills(socket);
  await loadHistory(socket);
  if (state.trade === socket) state.recordsLoaded = true;
}

async function loadFills(socket) {
  // The newest FILL_ROWS in one request (before session 29 `fills` paged oldest first only,
  // and the page walked up to 10 pages of 1,000 to keep the last 100). They replace those
  // shown, which a snapshot's reread may find missing some: a fill pushed before the answer
  // is in it (the venue answers in order), one pushed after is added to it.
  const { fills } = await socket.request("fills", { limit: FILL_ROWS, newest_first: true });
  state.fills = [];
  state.fillIds.clear();
  for (const fill of fills) addFill(fill);
  schedule("fills");
}

async function loadHistory(socket) {
  // The newest HISTORY_ROWS closed orders, replacing those shown as the fills do; the account
  // stream's reports add those that close from now on (`onExec`).
  const params = { status: "closed", limit: HISTORY_ROWS };
  const { orders } = await socket.request("orders.history", params);
  state.history = new Map(orders.map((order) => [order.order_id, order]));
  trimHistory();
}

function endSession(event) {
  // The account's connection closed. After a logout: back to the logon form. Else it dropped
  // (a lost network, a restart): the account stays shown, dimmed, and the page logs on again
  // by itself with the key it holds (`scheduleRelogon`).
  const expected = state.loggingOut;
  state.trade = null;
  if (expected || state.credentials === null) {
    clearSession();
    showLogonError(expected ? "" : `disconnected (${event.code}${reason(event)})`);
    return;
  }
  showStale();
  scheduleRelogon(`disconnected (${event.code}${reason(event)})`);
}

function showStale() {
  // No session now, the account still shown (dimmed) until the page is logged on again.
  state.mayTrade = false;
  // an amend left open: a click on Place order after logging on again would place its terms
  // anew, a second order beside the one resting (session 36's review)
  if (state.amending !== null) endAmendGivingFormBack("the account's connection dropped");
  // Place order waits (`onPlace` sends nothing without a session) by aria-disabled, not
  // `disabled`, which dropped a keyboard trader's focus to the page's start (before session 35)
  $("place-button").setAttribute("aria-disabled", "true");
  $("orders-panel").classList.add("stale");
  schedule("orders");
}

function scheduleRelogon(why, failed = "", waitMs = 0) {
  // The next try after RELOGON_DELAYS_S (the last repeated), or `waitMs` if longer (a rate
  // limit's retry_after_ms), counted down on the status line (`why` the drop, `failed` what the
  // last try met). The delays start again at 1 s only after a session that lived
  // SESSION_LIVED_MS: one dropped at once goes on backing off.
  if (state.relogon === null && Date.now() - state.loggedOnAt >= SESSION_LIVED_MS) {
    state.relogonAttempts = 0;
  }
  hideRelogonButton(); // a "Log on again" that met a lost connection: tried on, by itself
  const attempt = state.relogonAttempts++;
  const delayS = RELOGON_DELAYS_S[Math.min(attempt, RELOGON_DELAYS_S.length - 1)];
  clearTimeout(state.relogon?.timer);
  const until = Date.now() + Math.max(delayS * 1000, waitMs);
  const said = `${why}${failed}`;
  const trying = ": reconnecting…";
  const relogon = { attempt: attempt + 1, why, said, trying, until, timer: null };
  state.relogon = relogon;
  // said once (a drop, a failed try): the seconds count down where no reader announces them
  showRelogonStatus(said, "");
  countDownRelogon(relogon);
}

function countDownRelogon(relogon) {
  if (state.relogon !== relogon) return; // logged out, or another drop, meanwhile
  const leftMs = relogon.until - Date.now();
  if (leftMs <= 0) {
    relogonNow(relogon);
    return;
  }
  const left = `: reconnecting in ${Math.ceil(leftMs / 1000)} s`;
  showRelogonStatus(relogon.said, left);
  relogon.timer = setTimeout(() => countDownRelogon(relogon), Math.min(leftMs, 1000));
}

async function relogonNow(relogon) {
  showRelogonStatus(relogon.said, relogon.trying);
  try {
    await startSession(state.credentials, true);
  } catch (failed) {
    if (state.relogon !== relogon) return;
    if (!mayHeal(failed)) {
      // refused for its key (revoked, say): no later try would be taken; the secret is asked
      state.relogon = null;
      clearSession();
      showLogonError(`logged off: ${logonFailure(failed)}; enter the secret to log on again`);
      return;
    }
    const failure = `; try ${relogon.attempt} failed (${failed.message})`;
    if (healsByItself(failed)) {
      state.relogonRefusals = 0;
      state.relogonRefusedSince = null;
      scheduleRelogon(relogon.why, failure, failed.retryAfterMs ?? 0);
      return;
    }
    state.relogonRefusals += 1;
    state.relogonRefusedSince ??= Date.now();
    if (Date.now() - state.relogonRefusedSince >= RELOGON_REFUSING_MAX_MS) {
      stopRelogon(relogon.why, failure);
    } else scheduleRelogon(relogon.why, failure);
    return;
  }
  if (state.relogon !== relogon) return; // dropped again meanwhile: its own try is waiting
  state.relogon = null;
  state.relogonRefusals = 0;
  state.relogonRefusedSince = null;
  hideRelogonButton();
  showRelogonStatus("", "");
  sayLoggedOnAgain();
}

function stopRelogon(why, failure) {
  // The venue refused every try for RELOGON_REFUSING_MAX_MS: no more by themselves. The
  // account stays shown, dimmed, and the key held: "Log on again" tries once more, "Log out"
  // ends it.
  state.relogon = null;
  state.relogonStopped = { why };
  const seconds = Math.round((Date.now() - state.relogonRefusedSince) / 1000);
  const tries = `the venue refused ${state.relogonRefusals} tries in a row over ${seconds} s`;
  showRelogonStatus(`${why}${failure}; ${tries}: press Log on again to try once more`, "");
  $("relogon-button").hidden = false;
  $("relogon-button").removeAttribute("aria-disabled");
}

function onRelogonButton() {
  // One more try, at once; refused again, the page stops again (the refusals' span is still
  // past RELOGON_REFUSING_MAX_MS; a lost connection or a refusal known to heal is tried on,
  // with the backoff). The line keeps what it said (read out again, it would repeat the drop)
  // and its unannounced part says the try.
  const stopped = state.relogonStopped;
  if (stopped === null || state.relogon !== null) return;
  state.relogonStopped = null;
  state.relogonAttempts = 0;
  $("relogon-button").setAttribute("aria-disabled", "true"); // keeps the focus while it tries
  const said = $("logon-status").textContent;
  const trying = ": trying once more…";
  const relogon = { attempt: 1, why: stopped.why, said, trying, until: 0, timer: null };
  state.relogon = relogon;
  relogonNow(relogon);
}

function hideRelogonButton() {
  // Hidden, the button would drop the keyboard's focus to the page's start: it goes to Log out,
  // the control beside it.
  const button = $("relogon-button");
  const focused = document.activeElement === button;
  button.hidden = true;
  state.relogonStopped = null;
  if (focused && !$("session").hidden) $("logout-button").focus();
}

function followCatchUp(since, seq) {
  // Logged on again, the account stream resumed after `since` up to the answer's `seq`: the
  // replay is caught up when its last push (seq) has come; none missed, at once. A snapshot
  // instead (none asked for, a `since` ahead of the stream or no longer held) means the account
  // was read afresh (`noteCatchUp`).
  const replay = since !== null && since <= seq;
  state.catchUp = { seq, missed: replay ? seq - since : null, done: since === seq };
  state.catchUp.afresh = afreshWhy(since, seq);
}

function afreshWhy(since, seq) {
  // Why a logon again read the account afresh (a snapshot), in a trader's words.
  if (since === null) return "it was not yet followed when the connection dropped";
  if (since > seq) return "the venue's account stream started over";
  return "away too long to replay what changed";
}

function sayLoggedOnAgain() {
  // Said once, politely (the status line's aria-live part), when both the try has succeeded
  // and the account stream has caught up: what happened while away, in a trader's words.
  const catchUp = state.catchUp;
  if (catchUp === null || !catchUp.done || state.relogon !== null || state.trade === null) return;
  state.catchUp = null;
  const missed = catchUp.missed;
  const what =
    missed === null
      ? `the account read afresh (${catchUp.afresh})`
      : missed === 0
        ? "nothing changed meanwhile"
        : `${missed} account update${missed === 1 ? "" : "s"} made meanwhile replayed`;
  showRelogonStatus(`logged on again: ${what}`, "", "ok");
}

function healsByItself(failed) {
  // A try that met no refusal (a lost connection, no answer in time), or one the venue says is
  // for the moment: rate limited (429, its retry_after_ms waited), the venue busy or a nonce it
  // could not check (503), the account's connection cap (the venue may still hold the dropped
  // connection: it lets it go 20 to 40 s after a silent drop). Tried on, never stopped.
  if (!(failed instanceof VenueError)) return true;
  if (failed.status === 429 || failed.status === 503) return true;
  const error = failed.error;
  return error.name === "PERMISSION_DENIED" && /connections per account/.test(error.msg);
}

function mayHeal(failed) {
  // Only a refusal of the key itself (unknown or revoked: BAD_SIGNATURE; one that lost its
  // `read` scope) will meet every later try. Anything else may pass later: a lost connection,
  // a refusal for the moment (rate limited, the venue busy, a clock or nonce, the account's
  // connection cap while the venue still holds the dropped connection): before session 30's
  // review only some of these were tried again, and the cap logged the page off for good.
  if (failed instanceof KeyRefusedError) return false;
  return failed.error?.name !== "BAD_SIGNATURE";
}

// What a close without a reason means to a trader (RFC 6455 7.4.1): the venue closes every
// connection 1001 as it stops (a restart, too), and the browser reports a lost one as 1006.
const CLOSE_MEANINGS = new Map([
  [1001, "the venue is stopping or restarting"],
  [1006, "the connection was lost"],
  [1011, "the venue met an error"],
]);

const LOGGED_OUT = "; logged out: log on to trade"; // after an order's outcome (`clearSession`)

function clearSession() {
  // Back to the logon form, with nothing of the account left on the page.
  state.loggingOut = false;
  state.mayTrade = false;
  state.keyTrades = false;
  state.credentials = null;
  // a Cancel all asked under this session is not answered over a logged-off page: dismissed,
  // it sends nothing (its answer, none, cancels nothing)
  if ($("cancel-all-ask").open) $("cancel-all-ask").close();
  state.accountSeq = null;
  state.accountLast = state.accountExpected = null;
  state.accountRestarting = false;
  clearTimeout(state.relogon?.timer);
  state.relogon = null;
  state.relogonAttempts = 0;
  state.relogonRefusals = 0;
  state.relogonRefusedSince = null;
  state.catchUp = null;
  hideRelogonButton();
  state.recordsLoaded = false;
  const amended = state.amending;
  const form = stopAmending();
  state.orders.clear();
  state.balances.clear();
  state.fills = [];
  state.fillIds.clear();
  state.replayAsked = false;
  state.history.clear();
  swapLogonAndSession(false);
  $("orders-panel").classList.remove("stale");
  $("place-button").disabled = true;
  // What became of an order is kept: a Log out clicked while a place awaited its answer left
  // `log on to trade` over the answer, the order resting unsaid (before session 37). Said once
  // however often the session ends after it (a logon that fails ends one too). An amend ended
  // by it says the form was given back (before session 37's review, `log on to trade` alone).
  const said = $("order-result").textContent;
  const formBack = amended === null ? "" : `; ${form}`;
  const loggedOut = said.endsWith(LOGGED_OUT) ? said : `${said}${formBack}${LOGGED_OUT}`;
  if (state.resultIsOutcome) sayOutcome(loggedOut, "");
  else if (amended === null) showResult("log on to trade", "");
  else {
    const notAmended = `order ${amended.order_id} not amended: logged off`;
    showResult(`${notAmended}${formBack}; log on to trade`, "");
  }
  schedule("orders", "balances", "fills", "history", "book");
}

function reason(event) {
  const said = event.reason || CLOSE_MEANINGS.get(event.code);
  return said ? ` ${said}` : "";
}

async function onLogout() {
  // A logout never logs on again: while the page waits to (or tries), it stops there.
  if (state.trade === null) {
    if (state.credentials !== null) {
      clearSession();
      showLogonError("");
    }
    return;
  }
  state.loggingOut = true;
  await state.trade.request("session.logout").catch(() => state.trade?.close());
}

function showLogonError(text) {
  // A refusal, or the session's end: said at once (role="alert").
  $("logon-alert").textContent = text;
  showRelogonStatus("", "");
}

function showRelogonStatus(said, countdown, kind = "") {
  // The page logging on again: `said` (the drop, the failed try) is read out when it changes
  // (aria-live polite); `countdown` (the seconds left, `reconnecting…`) is aria-hidden, or a
  // screen reader would announce each second. `kind` "ok": good news, not in the line's error
  // colour (logged on again).
  if (said !== "") $("logon-alert").textContent = "";
  const status = $("logon-status");
  if (status.textContent !== said) status.textContent = said;
  status.className = kind;
  $("relogon-countdown").textContent = countdown;
}

// ------------------------------------------------------------------ the account stream

function onAccountPush(message) {
  noticeTheDay();
  if (message.ch === "session") {
    showResult(`venue: ${SESSION_PUSHES.get(message.type) ?? message.type}`, "warn");
    state.resultAboutConnection = CONNECTION_PUSHES.has(message.type);
    return;
  }
  if (message.ch !== "account") return;
  if (!continuesTheStream(message)) return;
  state.accountSeq = message.seq; // applied below: a logon again resumes after it
  noteCatchUp(message);
  if (message.type === "snapshot") {
    state.orders = new Map(message.orders.map((order) => [order.order_id, order]));
    state.balances = new Map(message.balances.map((row) => [row.asset, row]));
    schedule("orders", "balances", "book");
    // logged on again, too long away for a replay: the fills and history meanwhile are read
    if (state.replayAsked && state.trade !== null) {
      state.recordsLoaded = false;
      reloadAccountRecords(state.trade);
    }
    state.replayAsked = false;
  } else if (message.type === "exec") {
    onExec(message);
  } else if (message.type === "balance") {
    state.balances.set(message.data.asset, message.data);
    schedule("balances");
  }
}

// The session pushes that speak of the connection they came on, which is closing: said no
// more once logged on again on another (`showSession`).
const CONNECTION_PUSHES = new Set(["shutdown", "slow_consumer"]);

// The session pushes of protocol §4.5 in a trader's words (the type alone, `dms.triggered`,
// says little); an unknown type is shown as it came.
const SESSION_PUSHES = new Map([
  ["shutdown", "the venue is stopping"],
  [
    "cod.triggered",
    "a connection of this account with cancel-on-disconnect closed: the orders it placed are" +
      " being canceled (cod.triggered)",
  ],
  [
    "dms.triggered",
    "this account's dead-man's switch fired: its open orders are being canceled (dms.triggered)",
  ],
  ["slow_consumer", "this connection read too slowly and is being closed (slow_consumer)"],
]);

function onExec(message) {
  const report = message.data;
  state.lastReport = report;
  if (report.order_id !== null && report.order_id === state.resultOrder?.orderId) {
    showOrderResult(state.resultOrder, report.status, report);
  }
  if (report.exec_type === "trade") addFill(message);
  if (report.order_id === null) return; // a refused place: its error answered the request
  if (report.order_id === state.amending?.order_id) followAmended(report);
  if (CLOSED.has(report.status)) {
    state.orders.delete(report.order_id);
    state.history.set(report.order_id, { ...report, closed_ts: message.ts });
    trimHistory();
  } else {
    state.orders.set(report.order_id, report);
  }
  schedule("orders", "book");
}

function replayedFrom(seq) {
  // The since_seq of a logon again: one below the last event applied, which the replay must
  // then begin with (`continuesTheStream`); `seq` itself when a snapshot set it (no event seen
  // carries it: unchecked, as before session 38).
  const last = state.accountLast;
  state.accountExpected = last !== null && last.seq === seq && seq > 0 ? last : null;
  return state.accountExpected === null ? seq : seq - 1;
}

function continuesTheStream(message) {
  // Whether an account push is to be applied. A venue started afresh counts its seqs from 1
  // again: one whose account had passed the page's seq would replay what follows it, and the
  // page would never learn of its orders and balances up to it (session 37's known gap). So
  // the replay's first event must be the one applied last, the same (its epoch, ts and type),
  // and it is not applied twice; anything else first (but a snapshot) is another stream, read
  // afresh from a snapshot, and what it sends before that snapshot is not applied.
  if (message.type === "snapshot") {
    state.accountLast = state.accountExpected = null;
    state.accountRestarting = false;
    return true;
  }
  if (state.accountRestarting) return false;
  const expected = state.accountExpected;
  state.accountExpected = null;
  const seen = { seq: message.seq, epoch: message.epoch, ts: message.ts, type: message.type };
  if (expected !== null) {
    const same = ["seq", "epoch", "ts", "type"].every((field) => seen[field] === expected[field]);
    if (!same && state.trade !== null) readAccountAfresh(state.trade);
    return false;
  }
  state.accountLast = seen;
  return true;
}

function readAccountAfresh(socket) {
  // The venue is not the one whose stream the page applied: the account is read again from a
  // snapshot (its fills and history too), and the line says the stream started over. A failed
  // subscribe closes the socket: the page logs on again, reading afresh (no since_seq).
  state.accountRestarting = true;
  state.accountLast = state.accountExpected = null;
  state.accountSeq = null;
  state.replayAsked = true; // the snapshot reads the fills and history again
  if (state.catchUp !== null) state.catchUp.afresh = "the venue's account stream started over";
  socket.request("subscribe", { ch: "account" }).catch(() => {
    if (state.trade === socket) socket.close();
  });
}

function noteCatchUp(message) {
  // A logon again's stream: a snapshot, or the replay's last push, has come (`followCatchUp`).
  const catchUp = state.catchUp;
  if (catchUp === null || catchUp.done) return;
  if (message.type === "snapshot") catchUp.missed = null;
  else if (message.seq < catchUp.seq) return;
  catchUp.done = true;
  queueMicrotask(sayLoggedOnAgain); // once the push is applied (and the try has succeeded)
}

async function reloadAccountRecords(socket) {
  // A failure is a closed socket, which logs on again and (`recordsLoaded` unset) reads anew.
  await readAccountRecords(socket).catch(() => {});
}

function trimHistory() {
  // The newest HISTORY_ROWS closed orders, newest (highest order_id) first as orders.history.
  const newest = [...state.history.keys()].sort((a, b) => b - a).slice(0, HISTORY_ROWS);
  state.history = new Map(newest.map((id) => [id, state.history.get(id)]));
  schedule("history");
}

function renderHistory() {
  fillTable($("history").tBodies[0], [...state.history.values()], (row, order) => {
    row.dataset.orderId = order.order_id;
    cell(row, order.closed_ts == null ? "—" : clock(order.closed_ts));
    cell(row, String(order.order_id), "num");
    cell(row, order.symbol);
    cell(row, order.side, order.side === "buy" ? "bid" : "ask");
    cell(row, order.price == null ? "market" : shownPrice(order.symbol, order.price), "num price");
    cell(row, order.qty, "num qty");
    cell(row, order.cum_qty, "num filled");
    statusCell(row, order);
    labelCells(row);
  });
}

function addFill(message) {
  if (state.fillIds.has(message.data.exec_id)) return; // pushed and also in `fills`
  state.fillIds.add(message.data.exec_id);
  state.fills.push(message);
  state.fills.sort((a, b) => b.seq - a.seq);
  state.fills.length = Math.min(state.fills.length, FILL_ROWS);
  schedule("fills");
}

function renderOrders() {
  for (const orderId of state.canceling) {
    if (!state.orders.has(orderId)) state.canceling.delete(orderId); // its row goes now
  }
  const orders = [...state.orders.values()].sort((a, b) => b.order_id - a.order_id);
  fillTable($("open-orders").tBodies[0], orders, (row, order) => {
    row.dataset.orderId = order.order_id;
    cell(row, String(order.order_id), "num");
    cell(row, order.symbol);
    cell(row, order.side, order.side === "buy" ? "bid" : "ask");
    cell(row, shownPrice(order.symbol, order.price), "num price");
    cell(row, order.qty, "num");
    cell(row, order.cum_qty, "num");
    statusCell(row, order);
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = "Cancel";
    button.setAttribute("aria-label", `Cancel order ${order.order_id}`); // not one of many "Cancel"
    button.className = "cancel";
    // read only, as Amend: no cancel to send, also while logging on again (`showStale` clears
    // mayTrade, not keyTrades: the key's scope cleared made them enabled but aria-disabled,
    // reached by the keyboard, before session 35's review); disconnected (dimmed, logging on
    // again) it waits, keeping the keyboard's focus (`cancel` sends nothing without a session)
    button.disabled = !state.keyTrades;
    if (state.canceling.has(order.order_id) || loggingOnAgain()) {
      button.setAttribute("aria-disabled", "true");
    }
    button.dataset.focusKey = String(order.order_id);
    button.onclick = () => cancel(order.order_id, button);
    const actions = row.insertCell();
    actions.className = "actions";
    actions.append(amendButton(order), " ", button);
    labelCells(row);
  });
  fitOpenOrders();
  renderCancelAll();
}

function renderCancelAll() {
  // As each order's Cancel: disabled for a read-only key or logged off, waiting (aria-disabled,
  // keeping the keyboard's focus) while its answer is awaited or the page logs on again
  const button = $("cancel-all");
  button.disabled = !state.keyTrades;
  const waits = state.cancelingAll || loggingOnAgain();
  if (waits) button.setAttribute("aria-disabled", "true");
  else button.removeAttribute("aria-disabled");
}

function askToCancelAll() {
  // Cancel all pressed: asked first, in a modal dialog whose first answer, focused, is "Keep
  // them" (Enter or Escape sends nothing), since one press cancels every open order of the
  // account on every symbol, a bot's too (until session 38 at once). Pressed while nothing can
  // be sent, it is not asked: `cancelAll` says why at once, as before.
  if (loggingOnAgain() || state.trade === null || !state.mayTrade || state.cancelingAll) {
    cancelAll();
    return;
  }
  const shown = state.orders.size;
  const count = shown === 0 ? "none" : String(shown);
  $("cancel-all-ask-what").textContent =
    `This cancels every open order of account ${$("account").textContent}, on every symbol,` +
    ` whichever connection placed it (${count} shown here).`;
  const ask = $("cancel-all-ask");
  ask.returnValue = ""; // Escape leaves it as it was: the last answer must not count again
  ask.showModal(); // the focus goes back to Cancel all once answered
}

function onCancelAllAnswer() {
  if ($("cancel-all-ask").returnValue === "cancel") cancelAll();
}

async function cancelAll() {
  // Every open order of the account, whichever connection placed it, in one `orders.cancel_all`
  // (protocol §5.6; before session 37 the page had none: each order pulled by its own Cancel),
  // once the trader said so (`askToCancelAll`). The rows shown wait as their Cancel does
  // (`cancel`) until their reports take them away.
  if (loggingOnAgain()) {
    sayNothingSentWhileLoggingOnAgain("order canceled", "cancel them");
    return;
  }
  if (state.trade === null || !state.mayTrade || state.cancelingAll) return;
  const shown = [...state.orders.keys()].filter((orderId) => !state.canceling.has(orderId));
  state.cancelingAll = true;
  for (const orderId of shown) state.canceling.add(orderId);
  schedule("orders");
  let done = false;
  try {
    const { canceled } = await state.trade.request("orders.cancel_all", {});
    done = true;
    const orders = canceled === 1 ? "1 open order" : `${canceled} open orders`;
    sayOutcome(canceled === 0 ? "no open order to cancel" : `canceled ${orders}`, "ok");
  } catch (failed) {
    showFailure("cancel all", failed);
  } finally {
    state.cancelingAll = false;
    if (!done) for (const orderId of shown) state.canceling.delete(orderId);
    schedule("orders");
  }
}

function labelCells(row) {
  // Each cell carries its column's header: where the orders (the history, the fills, the
  // balances) show as blocks (style.css), a figure says what it is ("qty 2.000000"), as no
  // header sits over it there. The roles are explicit since a block's display makes some
  // browsers (Safari) drop the table's semantics.
  const headers = row.closest("table").tHead.rows[0].cells;
  row.setAttribute("role", "row");
  for (const td of row.cells) {
    td.setAttribute("role", "cell");
    td.dataset.label = headers[td.cellIndex].textContent;
  }
}

// What decides the open orders' layout, as last measured: the panel's room and the widest texts
// of each column. A push that changes neither (a fill of the same figures' length) measures
// nothing, so it forces no layout (measuring each render cost 31-40 ms, not 19, a push at 200
// orders); `measures` counts the measuring, for the layout test.
const ordersFit = { room: null, measured: { room: null, texts: null }, measures: 0 };

function fitOpenOrders() {
  // The open orders are a table where their panel has room for all of it, else blocks
  // (style.css). The table's width follows its figures (7-digit ids, an order of
  // 19999.999999), so it is measured at its own width (max-content) as a hidden one-row table
  // of each column's widest texts: the orders' own rows keep their layout while it is measured,
  // and as blocks they have no table's width, squeezed they would seem to fit.
  const texts = columnTexts($("open-orders"));
  const key = JSON.stringify(texts);
  const room = (ordersFit.room ??= ordersRoom());
  const measured = ordersFit.measured;
  if (key === measured.texts && room === measured.room) return;
  const sizer = key === measured.texts ? ordersSizer() : ordersSizer(texts);
  ordersFit.measured = { room, texts: key };
  ordersFit.measures += 1;
  sizer.dataset.measures = String(ordersFit.measures);
  const needed = sizer.firstElementChild.getBoundingClientRect().width;
  const orders = document.querySelector("#orders-panel > .orders");
  if (orders.classList.contains("blocks") !== needed > room) orders.classList.toggle("blocks");
}

function columnTexts(table) {
  // Per column, the distinct texts of its cells, digits as 0: the figures' digits are all of one
  // width (tabular-nums), so only a longer figure, or a new symbol or status, can widen a column.
  // The actions' cells (Amend, Cancel) are the same in each row: the first row's stand for all.
  const columns = [...table.tHead.rows[0].cells].map(() => new Set());
  for (const row of table.tBodies[0].rows) {
    for (const td of row.cells) {
      if (td.className === "actions") continue;
      columns[td.cellIndex].add(td.textContent.replace(/\d/g, "0"));
    }
  }
  return columns.map((texts) => [...texts].sort());
}

function ordersSizer(texts = null) {
  // The hidden table measured for the open orders' width (style.css `.sizer`): their header,
  // then one row whose cells hold each column's texts one under another, so each column is as
  // wide as its widest; built anew only when given texts (those changed).
  const table = $("open-orders");
  let sizer = document.querySelector("#orders-panel .sizer");
  if (sizer === null) {
    sizer = document.createElement("div");
    sizer.className = "sizer";
    sizer.setAttribute("aria-hidden", "true");
    sizer.inert = true;
    sizer.append(document.createElement("table"));
    table.after(sizer);
  }
  if (texts === null) return sizer;
  const row = document.createElement("tr");
  texts.forEach((column, index) => {
    const td = row.insertCell();
    td.className = table.tHead.rows[0].cells[index].className;
    td.append(...column.map((text) => Object.assign(document.createElement("div"), {
      textContent: text,
    })));
  });
  const actions = table.tBodies[0].rows[0]?.querySelector("td.actions");
  if (actions) row.cells[row.cells.length - 1].replaceWith(actions.cloneNode(true));
  const body = document.createElement("tbody");
  body.append(row);
  sizer.firstElementChild.replaceChildren(table.tHead.cloneNode(true), body);
  return sizer;
}

function ordersRoom() {
  // The fills span the panel's whole width, whatever the orders' layout: the orders' room.
  return document.querySelector("#orders-panel > .fills").getBoundingClientRect().width;
}

function followOrdersRoom() {
  // The room is observed, not the panel: the panel's height changes with the layout chosen,
  // which observed would be a ResizeObserver loop. Only a change of width asks again. The room
  // is kept, so a render of the orders reads it without a layout of its own.
  new ResizeObserver(() => {
    const room = ordersRoom();
    if (room === ordersFit.room) return;
    ordersFit.room = room;
    fitOpenOrders();
  }).observe(document.querySelector("#orders-panel > .fills"));
}

function loggingOnAgain() {
  // The account's connection dropped and the page logs on again by itself: its controls wait
  // by aria-disabled, not `disabled`, which dropped a keyboard trader's focus to the page's
  // start (before session 35).
  return state.trade === null && state.credentials !== null;
}

function amendButton(order) {
  // Amend brings the order into the order form, its price and quantity there to change.
  const button = document.createElement("button");
  button.type = "button";
  button.textContent = "Amend";
  button.setAttribute("aria-label", `Amend order ${order.order_id}`);
  button.className = "amend";
  button.disabled = !state.keyTrades; // read only (`renderOrders`' Cancel says why)
  // an order.place or order.amend awaits its answer: no other amend starts meanwhile; or the
  // page logs on again (`startAmending` starts none without a session)
  if (state.placing || loggingOnAgain()) button.setAttribute("aria-disabled", "true");
  button.dataset.focusKey = `amend-${order.order_id}`;
  button.onclick = () => startAmending(order.order_id);
  return button;
}

function renderBalances() {
  const rows = [...state.balances.values()].sort((a, b) => a.asset.localeCompare(b.asset));
  fillTable($("balances").tBodies[0], rows, (row, balance) => {
    row.dataset.asset = balance.asset;
    cell(row, balance.asset);
    cell(row, balance.total, "num total");
    cell(row, balance.available, "num available");
    cell(row, balance.held, "num held");
    labelCells(row);
  });
}

function renderFills() {
  fillTable($("fills").tBodies[0], state.fills, (row, message) => {
    const fill = message.data;
    row.dataset.tradeId = fill.trade_id;
    cell(row, clock(message.ts));
    cell(row, fill.symbol);
    cell(row, fill.side, fill.side === "buy" ? "bid" : "ask");
    cell(row, shownPrice(fill.symbol, fill.last_px), "num price");
    cell(row, fill.last_qty, "num qty");
    cell(row, `${fill.fee} ${fill.fee_asset}`, "num");
    cell(row, fill.liquidity);
    labelCells(row);
  });
}

// ------------------------------------------------------------------ order entry

async function onPlace(event) {
  event.preventDefault();
  if (state.placing) return; // a double click's second: its order awaits the answer
  if (state.trade === null) {
    if (loggingOnAgain()) sayNothingSentWhileLoggingOnAgain("order placed", "place it");
    return;
  }
  if (state.selected === null) {
    // the venue lists none (`followNothing`), or its list is not in yet: said, not silent
    const none = state.instruments.size === 0;
    const why = none ? "the venue lists no instrument to trade" : "choose an instrument";
    showResult(`no order placed: ${why}`, "error");
    return;
  }
  if (state.amending !== null) {
    await amend(state.amending);
    return;
  }
  const kind = $("order-kind").value;
  const params = {
    symbol: state.selected,
    side: new FormData($("order-form")).get("side"),
    type: kind === "market" ? "market" : "limit",
    tif: kind === "ioc" || kind === "market" ? "ioc" : "gtc",
    qty: typedAsSeen("order-qty"),
    cl_ord_id: `web-${randomHex(8)}`,
  };
  if (kind !== "market") params.price = typedAsSeen("order-price");
  if (kind === "post_only") params.post_only = true;
  if (!figuresReadable(params.price, params.qty, params.symbol)) return;
  // One click, one order: the button waits for the answer, so a double click's second click
  // (or a second Enter) places nothing more. It says so by aria-disabled, not `disabled`,
  // which would take the keyboard's focus off it for good.
  setPlacing(true);
  try {
    const result = await state.trade.request("order.place", params);
    const placed = { orderId: result.order_id, clOrdId: params.cl_ord_id };
    const report = state.lastReport?.order_id === result.order_id ? state.lastReport : null;
    showOrderResult(placed, report?.status ?? result.status, report);
  } catch (failed) {
    const order = { symbol: params.symbol, type: params.type, side: params.side, amend: false };
    showFailure("order", failed, order);
    markRefusedField(failed);
  } finally {
    setPlacing(false);
    revealResult();
  }
}

function sayNothingSentWhileLoggingOnAgain(what, retry) {
  // Place order or Cancel all pressed while the page logs on again by itself (logged off, both
  // are disabled): said, not ignored in silence (before session 37), and replaced by `logged on
  // as …` once logged on again. Never over what became of an order, an outcome unknown above
  // all: added to it, once, and kept when logged on again (before session 37's review, `place
  // it once logged on`, then `logged on as …`, replaced `order outcome unknown`, and a trader
  // placing again had the first order resting beside the second).
  if (state.resultIsOutcome) {
    sayBesideAnOrdersFate(`no ${what} while the page logs on again`, "warn");
    return;
  }
  const again = "the account's connection dropped and the page is logging on again";
  showResult(`no ${what}: ${again}; ${retry} once logged on`, "warn");
  state.resultAboutConnection = true;
}

function setPlacing(placing) {
  // While an order.place or order.amend awaits its answer, Place order (or Amend order N), an
  // order's Amend and Back to a new order wait too: aria-disabled, not `disabled`, which would
  // take the keyboard's focus off them for good.
  state.placing = placing;
  for (const button of [$("place-button"), $("amend-stop")]) {
    if (placing) button.setAttribute("aria-disabled", "true");
    else button.removeAttribute("aria-disabled");
  }
  // an answer failed by the connection's drop comes after `showStale`: Place order waits on
  if (loggingOnAgain()) $("place-button").setAttribute("aria-disabled", "true");
  schedule("orders"); // the rows' Amend
}

function startAmending(orderId) {
  // The form amends the order until it is amended, the trader goes back, or the order closes.
  // Its side, type and time in force cannot change (protocol §5.3): they are shown, fixed. The
  // order's symbol is followed, so the labels (a bill's price per 100) and the book are its.
  // Not while an order.place or order.amend awaits its answer: the answer of an amend would
  // end the amend started meanwhile, and the form would place a new order.
  const order = state.orders.get(orderId);
  if (state.trade === null || !state.mayTrade || state.placing || order === undefined) return;
  // one amend for another: the form before the first is the one to give back
  const before = state.amending === null ? formNow() : state.formBeforeAmend;
  select(order.symbol);
  state.amending = order;
  state.formBeforeAmend = before;
  $("order-form").querySelector(`input[name=side][value=${order.side}]`).checked = true;
  showKindAsPlaced(order);
  for (const control of amendFixedControls()) control.disabled = true;
  showAmendedTerms(order);
  $("place-button").textContent = `Amend order ${order.order_id}`;
  $("amend-stop").hidden = false;
  showResult(
    `amending order ${order.order_id}: change its price or its quantity (the total, what has ` +
      "filled included)",
    "",
  );
  $("order-price").focus();
}

function showKindAsPlaced(order) {
  // The order's type and time in force as its reports say them. They do not say post-only
  // (protocol §8.2), which an amend keeps: "as placed", not "Limit (GTC)" over a post-only order.
  const kept = $("order-kind-kept");
  const type = order.type.charAt(0).toUpperCase() + order.type.slice(1);
  kept.textContent = `${type} (${order.tif.toUpperCase()}), as placed`;
  kept.hidden = false;
  $("order-kind").value = kept.value;
  syncKind();
}

function showAmendedTerms(order) {
  $("order-price").value = order.price;
  $("order-qty").value = order.qty;
}

// Said after whatever ended an amend (`stopAmending`)
const FORM_GIVEN_BACK = "the order form as before the amend";

function stopAmending(next = state.selected) {
  // Back to placing new orders, however the amend ended (Back, Escape, the amend done, the
  // order closed, another symbol, a drop, a logoff): the order form is put back as it was
  // before the amend, so that the amended order's terms are never left in it for a new order,
  // which a click would then place (before session 36's review: a sell 1 at 450.00 amended,
  // another symbol chosen, Place order rested a sell 1 of that symbol at 450.00 the trader
  // never typed; before session 37, so after Back, Escape, the amend's answer, a fill and a
  // logoff). Returns what the callers say of it (`putFormBack`); `next`, the symbol chosen, if
  // another symbol ends the amend.
  if (state.amending === null) return FORM_GIVEN_BACK;
  const before = state.formBeforeAmend;
  state.amending = null;
  state.formBeforeAmend = null;
  for (const control of amendFixedControls()) control.disabled = false;
  $("order-kind-kept").hidden = true;
  $("order-kind").value = "limit";
  syncKind();
  const said = before === null ? FORM_GIVEN_BACK : putFormBack(before, next);
  $("place-button").textContent = "Place order";
  // the keyboard's focus on Back to a new order goes to Place order beside it: hidden with
  // it, the focus fell to the page's start (before session 35)
  if (document.activeElement === $("amend-stop")) $("place-button").focus();
  $("amend-stop").hidden = true;
  return said;
}

function endAmendGivingFormBack(why, next = state.selected) {
  // An amend ended by something other than its answer or its order's close (Back, another
  // symbol chosen, the account's connection dropped), said with why.
  const order = state.amending;
  const form = stopAmending(next);
  showResult(`order ${order.order_id} not amended: ${why}; ${form}`, "");
}

function formNow() {
  // What the order form holds: its symbol, side, type, price and quantity, a price a market
  // order put aside (`syncKind`)
  const price = $("order-price");
  return {
    symbol: state.selected,
    side: new FormData($("order-form")).get("side"),
    kind: $("order-kind").value,
    price: price.disabled ? (price.dataset.kept ?? "") : price.value,
    qty: $("order-qty").value,
  };
}

function putFormBack(form, next) {
  // `formNow`'s form, for a new order (the amend ended: `stopAmending` enabled the type). Its
  // price and quantity only on their own symbol, followed still or chosen (`next`), else
  // cleared: the amend followed its order's symbol, and 187.30 x 1 typed for AAPLx-USD came
  // back on MSFTx-USD for Place order to send there (before session 37's review). Returns what
  // the line says of the form.
  const side = $("order-form").querySelector(`input[name=side][value="${form.side}"]`);
  if (side !== null) side.checked = true;
  const own = form.symbol === state.selected || form.symbol === next;
  if (own) {
    $("order-price").value = form.price;
    $("order-qty").value = form.qty;
  } else clearOrderFigures();
  $("order-kind").value = form.kind;
  syncKind(); // a market order's price put aside again
  if (own || (form.price === "" && form.qty === "")) return FORM_GIVEN_BACK;
  return `${FORM_GIVEN_BACK}, its price and quantity typed for ${form.symbol} cleared`;
}

function leaveAmending() {
  // Back to a new order by the button, or by Escape in the form; not while the amend sent
  // awaits its answer, which may yet amend the order.
  if (state.amending === null) return;
  if (state.placing) {
    sayAmendAwaited(state.amending);
    return;
  }
  endAmendGivingFormBack("back to a new order");
}

function sayAmendAwaited(order) {
  showResult(`amending order ${order.order_id}: awaiting the venue's answer`, "");
}

function followAmended(report) {
  // A report of the order being amended. Closed (filled, canceled): nothing is left to amend.
  // Else another connection of the account (a bot) may have amended it: the form and what
  // "only what changed" is computed against follow it, and the trader is told, so that no
  // amend is sent against terms the order no longer has. A report while this page's own amend
  // awaits its answer is most likely that amend's: followed, not said (a refusal says it).
  const before = state.amending;
  if (CLOSED.has(report.status)) {
    const form = stopAmending();
    const said = `order ${report.order_id} ${inWords(report.status)}: nothing left to amend`;
    showResult(`${said}; ${form}`, "warn");
    return;
  }
  state.amending = report;
  if (state.placing) return;
  if (sameTerms(before, report)) {
    // a fill: the same price and qty, more filled. Said, as the quantity typed is the new
    // total, what has filled included (before session 37 only the filled column showed it)
    if (!sameDecimal(before.cum_qty, report.cum_qty)) showResult(filledMeanwhile(report), "warn");
    return;
  }
  showAmendedTerms(report);
  showResult(changedMeanwhile(report), "warn");
}

function filledMeanwhile(order) {
  const filled = `order ${order.order_id} filled ${order.cum_qty} of ${order.qty} meanwhile`;
  return `${filled}: the quantity is the new total, what has filled included`;
}

function changedMeanwhile(order) {
  const price = shownPrice(order.symbol, order.price);
  return `order ${order.order_id} changed meanwhile: now ${price} x ${order.qty}`;
}

function sameTerms(order, other) {
  return sameDecimal(order.price, other.price) && sameDecimal(order.qty, other.qty);
}

function sameDecimal(text, other) {
  // Plain decimal strings (`PLAIN_DECIMAL`) compared exactly: Number() would call
  // 180.0000000000000001 and 180.00 the same, and so not send a price the venue must refuse.
  // A figure typed that is no plain decimal ("1,5") is not the same: the form's checks then
  // say what is wrong with it (compareDecimals' BigInt would throw, the amend saying nothing).
  const plain = (figure) => typeof figure === "string" && PLAIN_DECIMAL.test(figure);
  return plain(text) && plain(other) && compareDecimals(text, other) === 0;
}

function amendFixedControls() {
  return [$("order-kind"), ...$("order-form").querySelectorAll("input[name=side]")];
}

async function amend(order) {
  // Only what changed since the order's newest report is sent; an amend that changes nothing
  // is said here, not sent (the venue's AMEND_REJECTED would say the same after a round trip).
  const price = typedAsSeen("order-price");
  const qty = typedAsSeen("order-qty");
  const current = state.orders.get(order.order_id) ?? order;
  // the instrument's rules for the price only if it changes: the order's own price is one the
  // venue took already, kept through an amend of its size
  const kept = price !== "" && sameDecimal(price, current.price);
  if (!figuresReadable(kept ? undefined : price, qty, order.symbol, current.cum_qty)) return;
  const params = { order_id: order.order_id };
  if (!sameDecimal(price, current.price)) params.price = price;
  if (!sameDecimal(qty, current.qty)) params.qty = qty;
  if (params.price === undefined && params.qty === undefined) {
    showResult(`order ${order.order_id} already has this price and quantity: change one`, "error");
    return;
  }
  setPlacing(true);
  sayAmendAwaited(order);
  try {
    const result = await state.trade.request("order.amend", params);
    // the form leaves this order's amend only: no other one can have started meanwhile
    // (`startAmending`), but the order may have closed, and its report ended the amend
    const ended = state.amending?.order_id === order.order_id;
    const amended = { orderId: result.order_id, clOrdId: order.cl_ord_id, amended: true };
    if (ended) amended.after = stopAmending();
    const report = state.lastReport?.order_id === result.order_id ? state.lastReport : null;
    showOrderResult(amended, report?.status ?? result.status, report);
  } catch (failed) {
    const about = { symbol: order.symbol, type: order.type, amend: true };
    const [text, kind] = describeFailure("amend", failed, about);
    // refused, so any other price or quantity the order has now is another connection's doing
    const now = state.amending;
    const changed = now?.order_id === order.order_id && !sameTerms(now, current);
    if (changed) showAmendedTerms(now);
    sayOutcome(changed ? `${text}; ${changedMeanwhile(now)}` : text, kind);
    if (!changed) markRefusedField(failed);
  } finally {
    setPlacing(false);
    revealResult();
  }
}

async function cancel(orderId, button) {
  // Like placing: the order's Cancel waits for the answer (a second cancel would be refused,
  // ORDER_NOT_OPEN, and that refusal shown over the cancel that worked), aria-disabled so that
  // it keeps the keyboard's focus.
  // Nor for a read-only key: a click in the frame before its row is drawn anew is no cancel.
  if (state.trade === null || !state.mayTrade || state.canceling.has(orderId)) return;
  state.canceling.add(orderId);
  button.setAttribute("aria-disabled", "true");
  let closed = false;
  try {
    const result = await state.trade.request("order.cancel", { order_id: orderId });
    // Closed: its row goes once its exec report comes, which may be after this answer; a
    // click on it meanwhile (a double click's second) would be refused ORDER_NOT_OPEN.
    closed = true;
    sayOutcome(`order ${result.order_id} ${inWords(result.status)}`, "ok");
  } catch (failed) {
    const closedMeanwhile = failed.error?.name === "ORDER_NOT_OPEN";
    if (closedMeanwhile) sayOutcome(closedBeforeCancel(orderId, failed.error), "error");
    else showFailure("cancel", failed);
  } finally {
    if (!closed) state.canceling.delete(orderId);
    schedule("orders"); // the row's button again, if the order is still open
  }
}

function closedBeforeCancel(orderId, error) {
  // An order that closed (filled, say) before its cancel reached the venue, its report not in
  // yet: said in words (before session 37 the wire's, `ORDER_NOT_OPEN (5001): the order is
  // closed: filled (order_id 1, status filled)`)
  const status = error.data?.status;
  const was = status === "expired" ? "it expired" : `it was ${inWords(status)}`;
  const how = status === undefined ? "" : `, ${was}`;
  const code = `(${error.name} ${error.code})`;
  return `cancel refused: order ${orderId} is no longer open${how}: nothing left to cancel ${code}`;
}

function showFailure(action, failed, order = null) {
  sayOutcome(...describeFailure(action, failed, order));
}

function describeFailure(action, failed, order = null) {
  // Only the venue's error answer is a refusal. A request that was sent but not answered (the
  // connection lost, no answer in time) may have been carried out: the page cannot know, and
  // says so rather than "refused" over an order that may be resting. [text, kind]
  if (failed.error !== undefined) {
    return [`${action} refused: ${describe(failed, order)}`, "error"];
  }
  if (failed instanceof NotSentError) return [`${action} not sent: ${failed.message}`, "error"];
  const check =
    state.trade !== null
      ? "see the open orders"
      : state.credentials !== null // logging on again by itself (`scheduleRelogon`)
        ? "see the open orders once logged on again"
        : "log on again and see the open orders";
  return [`${action} outcome unknown: ${failed.message}; ${check}`, "warn"];
}

function describe(failed, order = null) {
  // The venue's error, with what it adds in `data` (the band, the cap, the live order); those
  // of the instrument's rules and the balance in a trader's words, the code after. `order`:
  // {symbol, type, amend} of the order placed or amended, if one was.
  const error = failed.error;
  const words = error === undefined || order === null ? null : refusalWords(error, order);
  if (words !== null) return `${words} (${error.name} ${error.code})`;
  const data = error?.data;
  if (data === undefined) return failed.message;
  const extra = Object.entries(data).map(([name, value]) => `${name} ${value}`);
  return `${failed.message} (${extra.join(", ")})`;
}

function refusalWords(error, order) {
  // What the venue refused of an order placed or amended (`order`: {symbol, type, amend}), and
  // what it takes, in a trader's words from the error's `data` (protocol §10); null for another
  // error. Before session 36 the wire's: `PRICE_BAND (4009): price is outside the band
  // (band_low 168.53, band_high 205.97, reference_price 187.25)`, `notional`, `valued_at`,
  // `needed`.
  const data = error.data ?? {};
  const symbol = order.symbol;
  const instrument = state.instruments.get(symbol);
  if (instrument === undefined) return null;
  const per100 = instrument.kind === "tbill" ? " per 100 of face" : "";
  const field = instrument.kind === "tbill" ? "face value" : "quantity";
  const quote = instrument.quote;
  switch (error.name) {
    case "PRICE_BAND":
      return (
        `the price is outside the band of ${symbol}, where a buy is priced at most ` +
        `${data.band_high} and a sell at least ${data.band_low}${per100}`
      );
    case "BELOW_MIN_NOTIONAL": {
      if (data.min_notional === undefined || data.notional === undefined) return null;
      // a market order is valued at the reference price (protocol §10, 4004)
      const at = valuedAt(data, order.type === "market" ? "the reference price" : "", per100);
      const worth = `the order is worth ${data.notional} ${quote}${at}`;
      return `${worth}, and an order of ${symbol} is worth at least ${data.min_notional} ${quote}`;
    }
    case "POST_ONLY_WOULD_TAKE": // no data: what it takes said in general
      return (
        "a post-only order only rests, and this one would trade on arrival: a post-only buy " +
        "is priced below the best ask, a sell above the best bid"
      );
    case "ABOVE_MAX_QTY":
      if (data.max_qty === undefined) return null;
      return `the ${field} is ${data.qty}, and an order of ${symbol} is at most ${data.max_qty}`;
    case "ABOVE_MAX_NOTIONAL": {
      if (data.max_notional === undefined || data.notional === undefined) return null;
      // a market order is valued at the band's high, the most it may trade at (protocol §10)
      const at = valuedAt(data, order.type === "market" ? "the band's high" : "", per100);
      const worth = `the order is worth ${data.notional} ${quote}${at}`;
      return `${worth}, and an order of ${symbol} is worth at most ${data.max_notional} ${quote}`;
    }
    case "NOTIONAL_OUT_OF_RANGE":
      return valueOutOfRange(data, order, instrument);
    case "INSUFFICIENT_BALANCE":
      if (data.needed === undefined) return null;
      return (
        `it needs ${data.needed} ${data.asset} available, and the account has ` +
        `${data.available} ${data.asset} available`
      );
    // the market's status and the account's eligibility: what is taken said too (before
    // session 37 the wire's, `AAPLx-USD is halted`, `account 4 may not trade AAPLx-USD`)
    case "INSTRUMENT_HALTED":
      return (
        `${symbol} is halted: it takes no orders and no amends until it opens again, ` +
        "only cancels"
      );
    case "CANCEL_ONLY":
      return `${symbol} takes only cancels for now: no orders and no amends`;
    case "POST_ONLY_MODE":
      return (
        `${symbol} takes only post-only orders for now: a Post-only (GTC) order that rests, ` +
        "or an amend that does not trade"
      );
    case "NOT_ELIGIBLE":
      return (
        `this account may not trade ${symbol}: its jurisdiction or its KYC is not one the ` +
        "instrument is offered to"
      );
    case "MARKET_NO_LIQUIDITY": // no data: the band's edge from the instrument's record
      return order.side === undefined ? null : noLiquidityWords(order, instrument, per100);
    default:
      return null;
  }
}

function noLiquidityWords(order, instrument, per100) {
  // A market order with no opposite level within the band (before session 37 the wire's
  // `nothing to trade within the band`, which said neither where nor what rests instead)
  const buy = order.side === "buy";
  const edge = buy ? `at most ${instrument.band_high}` : `at least ${instrument.band_low}`;
  const levels = buy ? "asks" : "bids";
  const within = `within the band of ${order.symbol}, ${edge}${per100}`;
  const rests = `a limit ${order.side} rests until a ${buy ? "seller" : "buyer"} comes`;
  return `a market ${order.side} trades only with ${levels} ${within}, and there is none; ${rests}`;
}

function valuedAt(data, named, per100) {
  // " at 187.30", " at the reference price, 187.25": the price an order was valued at, if said
  if (data.valued_at === undefined) return "";
  const price = `${data.valued_at}${per100}`;
  return named === "" ? ` at ${price}` : ` at ${named}, ${price}`;
}

function valueOutOfRange(data, order, instrument) {
  // NOTIONAL_OUT_OF_RANGE (protocol §10, 4015): `notional` is what the order may trade in all,
  // what an amended order has traded included, its rest valued at `valued_at`, the highest
  // price it may trade at (its own; a market order's the band's high; a sell's the best bid
  // when higher); `max_notional` the most the venue accounts for one order, cap or no cap.
  if (data.max_notional === undefined || data.notional === undefined) return null;
  const quote = instrument.quote;
  const per100 = instrument.kind === "tbill" ? " per 100 of face" : "";
  const what = order.amend ? "what the order has traded and may trade" : "what the order may trade";
  const rest = order.amend ? "its rest at" : "at";
  const at =
    data.valued_at === undefined
      ? ""
      : `, ${rest} ${data.valued_at}${per100}, the highest price it may trade at`;
  const most = `${data.max_notional} ${quote}`;
  const bound = `the venue accounts for one order of ${order.symbol} at most ${most}`;
  return `${what} is worth ${data.notional} ${quote}${at}, and ${bound}`;
}

function showResult(text, kind) {
  // A field marked by the line's last words (`showFieldError`, `markRefusedField`) is cleared:
  // the line no longer says what is wrong with it (the mark is set again after, if it does).
  clearFieldError($("order-price"));
  clearFieldError($("order-qty"));
  const result = $("order-result");
  result.textContent = text;
  result.className = kind;
  state.resultOrder = null; // the line says something else now: reports leave it alone
  state.resultAboutConnection = false;
  state.resultIsOutcome = false;
}

function sayOutcome(text, kind) {
  // What became of an order placed, amended or canceled: its answer, a refusal, an outcome
  // unknown. Kept by a logout (`clearSession`).
  showResult(text, kind);
  state.resultIsOutcome = true;
}

function sayBesideAnOrdersFate(text, kind) {
  // A note of the page's (a price clicked in the book, the symbol followed gone) never writes
  // over what the line says of an order's fate, an outcome unknown above all (the order may
  // rest: the trader is to look before placing again): it is added to it, once (session 37's
  // review: a ladder click while the page logged on again replaced `order outcome unknown`,
  // and the note stayed once logged on again). Otherwise the line is the note's.
  if (!state.resultIsOutcome) {
    showResult(text, kind);
    return;
  }
  const result = $("order-result");
  if (!result.textContent.includes(text)) result.textContent += `; ${text}`;
}

const STP_WORDS = "expired by self-trade prevention: it would have traded with your own order";

function showOrderResult(placed, status, report) {
  // "order N status (cl_ord_id)" and, from the order's exec reports, what of it filled: an
  // IOC that trades part of its quantity ends `canceled` (its rest), which alone reads as if
  // nothing had traded. Later reports of the order update the line while it shows it.
  const verb = placed.amended ? " amended," : "";
  // an order placed without a cl_ord_id (a bot's, amended here) has none to show: not `(null)`
  const clOrdId = placed.clOrdId == null ? "" : ` (${placed.clOrdId})`;
  let text = `order ${placed.orderId}${verb} ${inWords(status)}${clOrdId}`;
  const filled = report !== null && Number(report.cum_qty) > 0;
  if (filled) {
    text += `: filled ${report.cum_qty} of ${report.qty}, average price ${averagePrice(report)}`;
  } else if (report !== null && (status === "canceled" || status === "expired")) {
    text += ": nothing filled";
  }
  // An order expired by self-trade prevention beside a price it could trade at on the
  // ladder reads as a venue fault unless the line says the other side was the trader's own.
  if (report?.reason === "stp") text += `${filled ? "; the rest" : ","} ${STP_WORDS}`;
  if (placed.after !== undefined) text += `; ${placed.after}`; // an amend's form given back
  sayOutcome(text, "ok");
  state.resultOrder = placed;
}

function averagePrice(report) {
  // `avg_px` carries 4 decimals more than the tick (protocol §2.3) so that an average between
  // two ticks is exact; zeros past the tick's decimals only make a price read wrong (a bill's
  // 98.7000000000). A bill's price is per 100 of face, and said so.
  const instrument = state.instruments.get(report.symbol);
  const decimals = instrument?.price_decimals ?? 0;
  let price = report.avg_px;
  const point = price.indexOf(".");
  while (point >= 0 && price.endsWith("0") && price.length - point - 1 > decimals) {
    price = price.slice(0, -1);
  }
  if (price.endsWith(".")) price = price.slice(0, -1);
  return instrument?.kind === "tbill" ? `${price} per 100 of face` : price;
}

function skipToOrderEntry(event) {
  // Focus moved, not the address: its #SYMBOL names the symbol followed (a reload opens it).
  event.preventDefault();
  $("order-entry").focus();
}

// Invisible characters that reorder nothing (a soft hyphen, a zero-width space, non-joiner
// and joiner, a word joiner, a byte order mark): a copy from a web page or a sheet brings them
// along, and without them the text reads as it is seen.
const INVISIBLE = /[\u00AD\u200B-\u200D\u2060\uFEFF]/gu;
// Direction controls (marks, embeddings, overrides, isolates): invisible too, but they reorder
// what is shown, "\u202E51" showing 15: without them the text is not what was seen.
const DIRECTION_CONTROL = /[\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]/u;

function typedAsSeen(id) {
  // A figure (or the API key) as the trader sees it: without spaces at its ends, nor the
  // invisible characters (`INVISIBLE`) that a copy brings along: refused, they were echoed in
  // a message that read `not "3"`, the figure looking whole, and a key was "unknown" (before
  // session 35). A direction control is left, and a figure holding one refused (`notPlain`):
  // stripped, "1\u200F.5" showed 15. but sent 1.5 (session 35's review). The secret is signed
  // as typed (`secretSlips`).
  return $(id).value.replace(INVISIBLE, "").trim();
}

function codePoint(character) {
  return `U+${character.codePointAt(0).toString(16).toUpperCase().padStart(4, "0")}`;
}

function hiddenCharacter(text) {
  // An invisible format character (Unicode Cf) left in a figure or an API key, a direction
  // control first (it reorders what is shown): {code: "U+202E", reorders}; null for none. One
  // check for both (`notPlain`, `hiddenInKey`).
  const turning = DIRECTION_CONTROL.exec(text)?.[0];
  const hidden = turning ?? /\p{Cf}/u.exec(text)?.[0];
  if (hidden === undefined) return null;
  return { code: codePoint(hidden), reorders: turning !== undefined };
}

function figuresReadable(price, qty, symbol, filled = null) {
  // The price (undefined for a market order) and the quantity typed, checked before sending:
  // a figure missing or unreadable, or one its instrument does not take, is said on the result
  // line, tied to its field. `filled`: an amended order's, which a new total down to it
  // completes (the venue takes that below the instrument's minimum).
  clearFieldError($("order-price"));
  clearFieldError($("order-qty"));
  const instrument = state.instruments.get(symbol);
  // in turn: the instrument's rules read only figures found plain
  const checks = [
    [$("order-price"), () => (price === "" ? "enter a price" : notPlain("price", price))],
    [$("order-qty"), () => (qty === "" ? "enter a quantity" : notPlain("quantity", qty))],
    [$("order-price"), () => (price === undefined ? null : priceNotTaken(instrument, price))],
    [$("order-qty"), () => qtyNotTaken(instrument, qty, filled)],
  ];
  for (const [field, check] of checks) {
    const said = check();
    if (said === null) continue;
    showFieldError(field, said);
    return false;
  }
  return true;
}

function showFieldError(field, text) {
  // The result line (a polite status) says it; the field is marked invalid and described by
  // that line, and takes the focus, so a screen reader reads the field and then why.
  showResult(text, "error");
  field.setAttribute("aria-invalid", "true");
  field.setAttribute("aria-describedby", "order-result");
  field.focus();
  revealResult();
}

function revealResult() {
  // The result line sits under Place order: on a phone, a field at the screen's bottom edge
  // (sent by its Go key) or the button there leaves it below the screen, the answer or the
  // slip unseen. Scrolled just into view, only while the trader is at the form: an answer
  // that comes after they went elsewhere moves nothing.
  if ($("order-form").contains(document.activeElement)) {
    $("order-result").scrollIntoView({ block: "nearest" });
  }
}

function markRefusedField(failed) {
  // The venue's refusal of a figure (`price is outside the band`, `qty 1.0000001 has more than
  // 6 decimals - at `params.qty``) is tied to its field as the page's own checks are, without
  // moving the focus: it comes after a wait, and the focus stays where the trader is.
  const msg = failed.error?.msg ?? "";
  const named = /params\.(price|qty)\b/.exec(msg)?.[1] ?? /^(price|qty)\b/.exec(msg)?.[1];
  if (named === undefined) return;
  const field = $(named === "price" ? "order-price" : "order-qty");
  if (field.disabled) return; // a market order's price: none typed, none sent
  field.setAttribute("aria-invalid", "true");
  field.setAttribute("aria-describedby", "order-result");
}

function clearFieldError(field) {
  field.removeAttribute("aria-invalid");
  field.removeAttribute("aria-describedby");
}

// A decimal as the venue reads one (docs/protocol.md; `wire.DECIMAL_PATTERN`): digits with
// an optional point and more digits; no sign, exponent, spaces or grouping.
const PLAIN_DECIMAL = /^[0-9]+(\.[0-9]+)?$/;
// The longest decimal the venue reads (protocol §2.3; `wire.DECIMAL_LENGTH_MAX`): a longer
// one is a paste gone wrong, said here, not echoed (a pasted page would fill the line).
const FIGURE_LENGTH_MAX = 48;
// Digits grouped in threes by commas, led by 1-9 (`wire._GROUPED`): "1,000", "10,000.5"
const GROUPED_DECIMAL = /^[1-9][0-9]{0,2}(,[0-9]{3})+(\.[0-9]+)?$/;

function notPlain(field, text) {
  // Said here, in a trader's words, of a figure the venue could not read (a decimal comma,
  // "1,5", is a common way to write one): the venue's answer would be `qty is a plain decimal
  // number written with a point, such as "1.5": not '1,5' ...`. Null for a plain decimal above
  // zero or a price not asked.
  if (text === undefined) return null;
  // a direction control, or any other invisible format character left (`INVISIBLE` takes out
  // the usual ones): named, as echoed in the words below it was unseen, `not "15"` over a
  // "1\u20635" (before session 36)
  const hidden = hiddenCharacter(text);
  if (hidden?.reorders) {
    const said = `the ${field} holds an invisible direction character (${hidden.code})`;
    return `${said}, which reorders the digits shown: type it again without it`;
  }
  if (hidden !== null) {
    const said = `the ${field} holds an invisible character (${hidden.code})`;
    return `${said}: type it again without it`;
  }
  if (text.length > FIGURE_LENGTH_MAX) {
    const most = FIGURE_LENGTH_MAX;
    return `the ${field} is too long for a number: ${text.length} characters, at most ${most}`;
  }
  // zero is plain, but no price or quantity: said here, as a sign is (the venue's words end
  // in the wire's, `- at `params.qty``)
  if (PLAIN_DECIMAL.test(text)) {
    return /[1-9]/.test(text) ? null : `the ${field} is a number above zero: not "${text}"`;
  }
  // A sign is the likeliest slip with a number that is otherwise plain: say that, not the form.
  if (/^[-+]/.test(text) && PLAIN_DECIMAL.test(text.slice(1))) {
    return `the ${field} is a number above zero, without a sign: not "${text}"`;
  }
  // Commas grouping thousands ("1,000,000") are not a decimal comma: "1.000" would be 1 (the
  // venue's words alike, `wire._not_plain_words`); one comma before three digits reads both ways
  if (GROUPED_DECIMAL.test(text)) {
    const grouped = text.replaceAll(",", "");
    if (text.split(",").length === 2 && !text.includes(".")) {
      const point = text.replace(",", ".");
      return `the ${field} is a plain number without thousands separators: "${grouped}", or "${point}" if the comma is a decimal point; not "${text}"`;
    }
    return `the ${field} is a plain number without thousands separators, e.g. ${grouped}: not "${text}"`;
  }
  return `the ${field} is a plain decimal number with a point, e.g. 1.5: not "${text}"`;
}

function priceNotTaken(instrument, price) {
  // A plain price its instrument does not take, in a trader's words with what it takes; null
  // if taken (or the instrument unknown: the venue says). Off the tick, the venue's words were
  // the wire's, `BAD_PRECISION (1004): price '187.305' has more than 2 decimals - at
  // `params.price`` (before session 36). No more than the venue's: a bill's price above par is
  // no fault of an order (only its reference price is bounded by par; a sell has no upper band,
  // a buy is bounded by the band), which the page refused (session 36, before its review).
  if (instrument === undefined) return null;
  const decimals = instrument.price_decimals;
  const units = decimalUnits(price, decimals);
  const tick = decimalUnits(instrument.tick, decimals);
  const bill = instrument.kind === "tbill";
  const what = `the price${bill ? " per 100 of face" : ""} of ${instrument.symbol}`;
  if (units === null || units % tick !== 0n) {
    return `${what} is a multiple of its tick, ${instrument.tick}: not "${price}"`;
  }
  if (units > UNITS_MAX) {
    return `${what} is at most ${unitsText(UNITS_MAX, decimals)}: not "${price}"`;
  }
  return null;
}

function qtyNotTaken(instrument, qty, filled = null) {
  // A plain quantity (a bill's face value) its instrument does not take: below its minimum or
  // off its step (finer than the base asset's decimals among them), said with what it takes;
  // null if taken. Before session 36 the venue's words: `INVALID_QTY_STEP (4002): qty is not a
  // multiple of the step - at `params.qty``, which named no step.
  if (instrument === undefined) return null;
  const decimals = instrument.qty_decimals;
  const units = decimalUnits(qty, decimals);
  const field = instrument.kind === "tbill" ? "face value" : "quantity";
  const what = `the ${field} of ${instrument.symbol}`;
  if (units !== null && units > UNITS_MAX) {
    return `${what} is at most ${unitsText(UNITS_MAX, decimals)}: not "${qty}"`;
  }
  const completes = filled !== null && units !== null && units <= decimalUnits(filled, decimals);
  if (units !== null && !completes && units < decimalUnits(instrument.min_qty, decimals)) {
    return `${what} is at least ${instrument.min_qty}, its minimum: not "${qty}"`;
  }
  if (units === null || units % decimalUnits(instrument.step, decimals) !== 0n) {
    return `${what} is a multiple of its step, ${instrument.step}: not "${qty}"`;
  }
  return null;
}

// The most units the venue counts in any amount (`engine/units.py` UNITS_MAX): a figure past
// it was refused in the wire's words, `qty: '99999999999999999999' is too large - at ...`
const UNITS_MAX = 2n ** 62n;

function unitsText(units, decimals) {
  // Units at `decimals` as a decimal ("18725", 2: "187.25")
  if (units < 0n) return `-${unitsText(-units, decimals)}`;
  const digits = units.toString().padStart(decimals + 1, "0");
  if (decimals === 0) return digits;
  return `${digits.slice(0, -decimals)}.${digits.slice(-decimals)}`;
}

function randomHex(bytes) {
  return [...crypto.getRandomValues(new Uint8Array(bytes))]
    .map((b) => b.toString(16).padStart(2, "0"))
    .join("");
}

function syncKind() {
  // A market order has no price: one typed is put aside, not shown greyed in the field as if
  // it capped the order (before session 35), and comes back with a priced type.
  const market = $("order-kind").value === "market";
  const price = $("order-price");
  if (market && !price.disabled) {
    price.dataset.kept = price.value;
    price.value = "";
  } else if (!market && price.disabled) {
    price.value = price.dataset.kept ?? "";
    delete price.dataset.kept;
  }
  price.disabled = market;
  price.placeholder = market ? "best available in the band" : "";
}

// ------------------------------------------------------------------ start

function start() {
  chart = new CandleChart($("candles"), $("candles-note"), $("candles-table"));
  $("logon-form").addEventListener("submit", onLogon);
  $("logout-button").addEventListener("click", onLogout);
  $("cancel-all").addEventListener("click", askToCancelAll);
  $("cancel-all-ask").addEventListener("close", onCancelAllAnswer);
  $("skip-link").addEventListener("click", skipToOrderEntry);
  $("relogon-button").addEventListener("click", onRelogonButton);
  $("order-form").addEventListener("submit", onPlace);
  $("order-kind").addEventListener("change", syncKind);
  for (const field of [$("order-price"), $("order-qty")]) {
    field.addEventListener("input", () => clearFieldError(field)); // mended, or being
  }
  $("amend-stop").addEventListener("click", leaveAmending);
  $("order-form").addEventListener("keydown", (event) => {
    if (event.key === "Escape" && state.amending !== null) leaveAmending();
  });
  window.addEventListener("resize", () => schedule("book"));
  followOrdersRoom();
  redrawAtMidnight();
  document.addEventListener("visibilitychange", noticeTheDay); // shown again, after a sleep
  window.addEventListener("pageshow", noticeTheDay);
  window.addEventListener("hashchange", onAddressChange);
  connectMarket();
  pollDayStats();
  pollReserves();
}

start();
