// Waiting for events without sleeping: every wait is for a condition,
// bounded by a deadline that fails the test with what was seen.

/** Resolves with the first `event` from `emitter` that `pred` accepts. */
export function next(emitter, event, pred = () => true, ms = 10_000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no ${event} within ${ms} ms`));
    }, ms);
    const off = emitter.on(event, (v) => {
      if (!pred(v)) return;
      clearTimeout(timer);
      off();
      resolve(v);
    });
  });
}

/** Collects every `event` into an array; `until(n)` resolves once it holds `n`. */
export function collect(emitter, event) {
  const seen = [];
  const waiters = [];
  emitter.on(event, (v) => {
    seen.push(v);
    for (const w of [...waiters]) {
      if (seen.length >= w.n) {
        waiters.splice(waiters.indexOf(w), 1);
        clearTimeout(w.timer);
        w.resolve(seen);
      }
    }
  });
  const until = (n, ms = 10_000) =>
    seen.length >= n
      ? Promise.resolve(seen)
      : new Promise((resolve, reject) => {
          const w = { n, resolve };
          w.timer = setTimeout(() => {
            waiters.splice(waiters.indexOf(w), 1);
            reject(new Error(`${event}: ${seen.length} of ${n} within ${ms} ms`));
          }, ms);
          waiters.push(w);
        });
  // Not enumerable, so that the array still compares equal to a plain one.
  Object.defineProperty(seen, "until", { value: until });
  return seen;
}

/**
 * A `ws` WebSocket that also records every text frame it receives, parsed,
 * in `frames`; `frames.when(pred)` resolves with the first (past or
 * future) that `pred` accepts.
 */
export function recordingWebSocket(WebSocket, frames) {
  const waiters = new Set();
  Object.defineProperty(frames, "when", {
    value: (pred, ms = 10_000) =>
      new Promise((resolve, reject) => {
        const hit = frames.find(pred);
        if (hit) return resolve(hit);
        const w = { pred, resolve };
        w.timer = setTimeout(() => {
          waiters.delete(w);
          reject(new Error(`no such frame within ${ms} ms`));
        }, ms);
        waiters.add(w);
      }),
  });
  return class Recording extends WebSocket {
    constructor(...args) {
      super(...args);
      this.addEventListener("message", (ev) => {
        const f = JSON.parse(ev.data);
        frames.push(f);
        for (const w of [...waiters]) {
          if (!w.pred(f)) continue;
          waiters.delete(w);
          clearTimeout(w.timer);
          w.resolve(f);
        }
      });
    }
  };
}
