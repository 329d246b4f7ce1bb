// A TCP proxy in front of the server, so a test can take the network away
// from a client and give it back: `cut()` resets every connection and
// refuses new ones, `blackhole()` keeps them open but lets nothing through
// (a link that died without a word), `restore()` ends either.

import net from "node:net";

export async function startProxy(target) {
  const [host, port] = target.split(":");
  const pairs = new Set();
  let mode = "open";
  const refusedWaiters = [];
  const server = net.createServer((client) => {
    if (mode === "cut") {
      client.resetAndDestroy();
      for (const resolve of refusedWaiters.splice(0)) resolve();
      return;
    }
    const upstream = net.connect(Number(port), host);
    const pair = { client, upstream };
    pairs.add(pair);
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on("data", (d) => mode === "open" && upstream.write(d));
    upstream.on("data", (d) => mode === "open" && client.write(d));
    client.on("close", end).on("error", end);
    upstream.on("close", end).on("error", end);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const addr = `127.0.0.1:${server.address().port}`;
  return {
    addr,
    url: `ws://${addr}/ws`,
    /** Resolves when the next connection is refused (a retry while cut). */
    refused() {
      return new Promise((resolve) => refusedWaiters.push(resolve));
    },
    /** Resets every connection; new ones are reset at once until `restore()`. */
    cut() {
      mode = "cut";
      for (const { client, upstream } of pairs) {
        client.resetAndDestroy();
        upstream.destroy();
      }
      pairs.clear();
    },
    /** Drops every byte either way, closing nothing, until `restore()`. */
    blackhole() {
      mode = "blackhole";
    },
    restore() {
      mode = "open";
    },
    close() {
      for (const { client, upstream } of pairs) {
        client.destroy();
        upstream.destroy();
      }
      return new Promise((resolve) => server.close(resolve));
    },
  };
}
