// The websocket API of docs/protocol.md as the page uses it: requests answered by id,
// pushes (frames with `ch`) handed to a callback, and the logon signed with WebCrypto.

export class VenueError extends Error {
  // An error response: `error` is {code, name, msg, data?} exactly as the venue sent it;
  // `retryAfterMs` a 429's `retry_after_ms` (when a try again can pass), else null.
  constructor(status, error, retryAfterMs = null) {
    super(`${error.name} (${error.code}): ${error.msg}`);
    this.status = status;
    this.error = error;
    this.retryAfterMs = retryAfterMs;
  }
}

export class NotSentError extends Error {
  // A request that never left the page (no open connection): the venue did nothing with it.
}

const REQUEST_TIMEOUT_MS = 10000; // an answer slower than this is reported, not waited for
const CONNECT_TIMEOUT_MS = 10000; // a websocket not open by then is given up
// A REST read is answered from the gateway's memory in milliseconds; one not answered in 5 s
// sits on a dead kept-alive connection (the browser reuses it and learns nothing of its loss
// for minutes): abort it, so the poll that asked is free again and the next one asks anew.
export const REST_TIMEOUT_MS = 5000;
const FRAME_BYTES_MAX = 65536; // a bigger frame is answered MESSAGE_TOO_BIG with id null
// The venue sends a heartbeat after 1 s without a message (protocol §9.7): five seconds of
// nothing is a dead connection, which the browser itself may not notice for minutes (a
// half-open TCP connection after a sleep or a lost network).
const SILENCE_MAX_MS = 5000;
const SILENCE_CHECK_MS = 1000;

export class VenueSocket {
  // One websocket to /ws/public or /ws/trade of the page's own origin.
  constructor(path, { onPush = () => {}, onClose = () => {} } = {}) {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    this.url = `${scheme}//${location.host}${path}`;
    this.onPush = onPush;
    this.onClose = onClose;
    this.nextId = 1;
    this.pending = new Map(); // id -> {resolve, reject, timer}
    this.ws = null;
    this.heardAt = 0; // Date.now() of the last frame from the venue
    this.watchdog = null;
  }

  open() {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.url);
      this.ws = ws;
      let opened = false;
      // a connect that hangs (a lost network drops the SYN, a proxy never answers the upgrade)
      // is given up, as the browser's own timeout can take minutes, and said as such
      let timedOut = false;
      const connecting = setTimeout(() => {
        timedOut = true;
        ws.close();
      }, CONNECT_TIMEOUT_MS);
      ws.onopen = () => {
        clearTimeout(connecting);
        opened = true;
        this.heardAt = Date.now();
        this.watchdog = setInterval(() => this.checkHeard(), SILENCE_CHECK_MS);
        resolve(this);
      };
      ws.onmessage = (event) => {
        this.heardAt = Date.now();
        this.receive(event.data);
      };
      ws.onclose = (event) => {
        clearTimeout(connecting);
        clearInterval(this.watchdog);
        this.failPending(`connection closed (${event.code})`);
        if (opened) this.onClose(event);
        else reject(new Error(timedOut ? this.unanswered() : `cannot connect to ${this.url}`));
      };
    });
  }

  unanswered() {
    return `cannot connect: no answer within ${CONNECT_TIMEOUT_MS / 1000} s`;
  }

  receive(text) {
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      return; // the venue sends JSON only; nothing else is ours to read
    }
    if (message.ch !== undefined) {
      this.onPush(message);
      return;
    }
    const id = message.id === null ? this.unnamed() : message.id;
    const waiting = this.pending.get(id);
    if (waiting === undefined) return;
    this.pending.delete(id);
    clearTimeout(waiting.timer);
    if (message.status === 200 || message.status === 409) waiting.resolve(message.result);
    else waiting.reject(new VenueError(message.status, message.error, message.retry_after_ms));
  }

  unnamed() {
    // An error with `id` null answers a frame the venue could not read as a request: one
    // over FRAME_BYTES_MAX (MESSAGE_TOO_BIG, protocol §2.2). It is the oldest pending request
    // sent that big, else the oldest pending one.
    let oldest;
    for (const [id, { big }] of this.pending) {
      if (big) return id;
      oldest ??= id;
    }
    return oldest;
  }

  request(method, params = {}) {
    if (this.ws === null || this.ws.readyState !== WebSocket.OPEN) {
      return Promise.reject(new NotSentError("not connected"));
    }
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${method}: no answer within ${REQUEST_TIMEOUT_MS / 1000} s`));
      }, REQUEST_TIMEOUT_MS);
      const frame = JSON.stringify({ id, method, params });
      // UTF-8 takes at most 3 bytes per UTF-16 unit: only a long frame is measured
      const big =
        frame.length * 3 > FRAME_BYTES_MAX &&
        new TextEncoder().encode(frame).length > FRAME_BYTES_MAX;
      this.pending.set(id, { resolve, reject, timer, big });
      this.ws.send(frame);
    });
  }

  checkHeard() {
    // A silent venue: give the connection up at once (its closing handshake could wait as
    // long as the browser's own timeout) and report it closed, 1006 as the browser would.
    const silentMs = Date.now() - this.heardAt;
    if (silentMs <= SILENCE_MAX_MS || this.ws.readyState !== WebSocket.OPEN) return;
    const reason = `no message from the venue for ${SILENCE_MAX_MS / 1000} s`;
    clearInterval(this.watchdog);
    this.ws.onmessage = null;
    this.ws.onclose = null;
    this.ws.close();
    this.failPending(`connection closed (${reason})`);
    this.onClose({ code: 1006, reason });
  }

  failPending(why) {
    for (const { reject, timer } of this.pending.values()) {
      clearTimeout(timer);
      reject(new Error(why));
    }
    this.pending.clear();
  }

  close() {
    if (this.ws !== null) this.ws.close(1000);
  }
}

export async function getJson(path) {
  // GET a REST read (docs/rest.md); an answer that is not 2xx, or none within
  // REST_TIMEOUT_MS (body included), throws an Error saying which.
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), REST_TIMEOUT_MS);
  try {
    const response = await fetch(path, { signal: controller.signal });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    return await response.json();
  } catch (failed) {
    if (!controller.signal.aborted) throw failed;
    throw new Error(`no answer within ${REST_TIMEOUT_MS / 1000} s`);
  } finally {
    clearTimeout(timer);
  }
}

// ------------------------------------------------------------------ logon (protocol §4.1)

const RECV_WINDOW_MS = 5000;

export async function importSecret(secret) {
  // The secret becomes a non-extractable HMAC key: the page keeps no copy of the text.
  if (!globalThis.crypto || !crypto.subtle) {
    throw new Error(
      "WebCrypto is unavailable: open the page over https, or at 127.0.0.1 / localhost",
    );
  }
  const bytes = new TextEncoder().encode(secret);
  return crypto.subtle.importKey("raw", bytes, { name: "HMAC", hash: "SHA-256" }, false, [
    "sign",
  ]);
}

export async function signLogon(key, apiKey, ts, nonce, recvWindow = RECV_WINDOW_MS) {
  // sig = hex(HMAC-SHA256(secret, "logon\n{api_key}\n{ts}\n{nonce}\n{recv_window}"))
  const payload = `logon\n${apiKey}\n${ts}\n${nonce}\n${recvWindow}`;
  const mac = await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(payload));
  return [...new Uint8Array(mac)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

export async function logon(socket, apiKey, key) {
  // The signed logon; ts is the venue's clock (asked first), so a skewed PC still logs on.
  const { time } = await socket.request("time");
  const nonce = [...crypto.getRandomValues(new Uint8Array(12))]
    .map((b) => b.toString(16).padStart(2, "0"))
    .join("");
  const sig = await signLogon(key, apiKey, time, nonce);
  return socket.request("session.logon", {
    api_key: apiKey,
    ts: time,
    nonce,
    recv_window: RECV_WINDOW_MS,
    sig,
  });
}
