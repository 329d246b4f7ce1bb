// The chat page and the dashboard in headless Chromium against the real
// server: two people chat (messages, presence, typing), one loses the
// network and gets back every message it missed, once and in order, and
// the dashboard's numbers move under a small load. Screenshots of both
// pages go to docs/img/.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, mkdir, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import net from "node:net";
import puppeteer from "puppeteer-core";

import { startServer } from "../../clients/js/test/support/server.js";
import { startProxy } from "../../clients/js/test/support/proxy.js";

const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const IMG = fileURLToPath(new URL("../../docs/img/", import.meta.url));
const WAIT = { timeout: 20_000 };

let server;
let proxy;
let browser;
let profile;
let ann;
let bob;

before(async () => {
  server = await startServer(["--shards", "2"]);
  // Bob's page, and so its WebSocket, goes through a proxy the test can cut.
  proxy = await startProxy(server.wsAddr);
  profile = await mkdtemp(join(tmpdir(), "ringcast-chromium-"));
  browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    userDataDir: profile,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
});

after(async () => {
  await browser?.close();
  await proxy?.close();
  await server?.stop();
  if (profile) await rm(profile, { recursive: true, force: true });
});

/** A page in a browser context of its own (its own storage), logged in as `user`. */
async function chat(origin, user) {
  const context = await browser.createBrowserContext();
  const page = await context.newPage();
  await page.setViewport({ width: 1100, height: 620 });
  const problems = [];
  page.on("pageerror", (e) => problems.push(e.message));
  page.on("console", (m) => m.type() === "error" && problems.push(m.text()));
  page.problems = problems;
  await page.goto(`http://${origin}/?user=${user}&room=lobby`, { waitUntil: "load" });
  await page.click("#login button[type=submit]");
  await page.waitForSelector('#state[data-state="open"]', WAIT);
  await page.waitForSelector("#room-list li.active", WAIT);
  return page;
}

async function say(page, text) {
  await page.type("#text", text);
  await page.keyboard.press("Enter");
  await page.waitForFunction(
    (t) => [...document.querySelectorAll("#messages .msg.mine .text")].some((e) => e.textContent === t),
    WAIT,
    text,
  );
}

/** The messages a page shows: [seq, user, text]. */
const shown = (page) =>
  page.$$eval("#messages .msg", (els) =>
    els.map((e) => [Number(e.dataset.seq), e.querySelector(".who").textContent, e.querySelector(".text").textContent]),
  );

const members = (page) => page.$$eval("#member-list li", (els) => els.map((e) => e.textContent));

test("two people chat: messages, presence, typing", { timeout: 60_000 }, async () => {
  ann = await chat(server.wsAddr, "ann");
  await say(ann, "hello, anyone here?");
  bob = await chat(proxy.addr, "bob");
  // Bob sees what was said before he came (history on join) ...
  await bob.waitForFunction(() => document.querySelector("#messages .msg .text")?.textContent === "hello, anyone here?", WAIT);
  // ... and each sees the other in the room.
  await ann.waitForFunction(() => [...document.querySelectorAll("#member-list li")].some((e) => e.textContent === "bob"), WAIT);
  await bob.waitForFunction(() => [...document.querySelectorAll("#member-list li")].some((e) => e.textContent === "ann"), WAIT);
  assert.deepEqual(await members(bob), ["ann", "bob"]);

  await say(bob, "hi ann!");
  await ann.waitForFunction(() => [...document.querySelectorAll("#messages .msg .text")].some((e) => e.textContent === "hi ann!"), WAIT);
  await say(ann, "welcome, bob");

  await bob.type("#text", "typing something");
  await ann.waitForFunction(() => document.querySelector("#typing").textContent === "bob is typing…", WAIT);
  const annSees = await shown(ann);
  assert.deepEqual(annSees, [
    [1, "ann", "hello, anyone here?"],
    [2, "bob", "hi ann!"],
    [3, "ann", "welcome, bob"],
  ]);
  assert.deepEqual(await shown(bob), annSees);
  await mkdir(IMG, { recursive: true });
  await ann.screenshot({ path: join(IMG, "chat.png") });
  await bob.$eval("#text", (e) => (e.value = ""));
  assert.deepEqual([...ann.problems, ...bob.problems], []);
});

test("a page that loses the network shows every missed message once, in order", { timeout: 60_000 }, async () => {
  const before = (await shown(bob)).length;
  proxy.cut();
  await bob.waitForSelector('#state[data-state="reconnecting"]', WAIT);
  assert.equal(await bob.$eval("#state", (e) => e.textContent), "reconnecting…");
  const missed = Array.from({ length: 12 }, (_, i) => `while you were away ${i + 1}`);
  for (const text of missed) await say(ann, text);
  proxy.restore();
  await bob.waitForSelector('#state[data-state="open"]', WAIT);
  await bob.waitForFunction((n) => document.querySelectorAll("#messages .msg").length >= n, WAIT, before + missed.length);
  const seen = await shown(bob);
  assert.deepEqual(seen, await shown(ann));
  assert.deepEqual(
    seen.map(([seq]) => seq),
    Array.from({ length: before + missed.length }, (_, i) => i + 1),
  );
  assert.deepEqual(seen.slice(before).map(([, , text]) => text), missed);
  // The page goes on live after the recovery.
  await say(bob, "back again");
  await ann.waitForFunction(() => [...document.querySelectorAll("#messages .msg .text")].some((e) => e.textContent === "back again"), WAIT);
  assert.deepEqual(bob.problems.filter((p) => !/WebSocket/.test(p)), []);
});

test("the dashboard's numbers move under load, one chart per shard", { timeout: 60_000 }, async () => {
  const context = await browser.createBrowserContext();
  const page = await context.newPage();
  await page.setViewport({ width: 1280, height: 640 });
  const problems = [];
  page.on("pageerror", (e) => problems.push(e.message));
  await page.goto(`http://${server.admin}/`, { waitUntil: "load" });
  await page.waitForSelector('#totals [data-metric="messages_in"]', WAIT);
  const charts = await page.$$eval("#shards .shard canvas", (c) => c.length);
  assert.equal(charts, server.shards);

  const load = resp_load(server.resp, 6000);
  const tile = (metric) => page.$eval(`#totals [data-metric="${metric}"]`, (e) => Number(e.dataset.value));
  await page.waitForFunction(() => Number(document.querySelector('#totals [data-metric="messages_in"]').dataset.value) > 0, WAIT);
  await page.waitForFunction(() => Number(document.querySelector('#totals [data-metric="deliveries"]').dataset.value) > 0, WAIT);
  assert.ok((await tile("connections")) >= 2, "the load's connections are counted");
  const sent = await load;
  assert.ok(sent > 0);
  // Every shard's chart has been drawn on.
  const inked = await page.$$eval("#shards .shard canvas", (cs) =>
    cs.map((c) => c.getContext("2d").getImageData(0, 0, c.width, c.height).data.some((v, i) => i % 4 === 3 && v > 0)),
  );
  assert.deepEqual(inked, Array(server.shards).fill(true));
  await page.screenshot({ path: join(IMG, "dashboard.png"), fullPage: true });
  assert.deepEqual(problems, []);
});

test("the README's console blocks work when pasted whole", { timeout: 60_000 }, async () => {
  const readme = await readFile(new URL("../../README.md", import.meta.url), "utf8");
  const tour = readme.slice(readme.indexOf("## A 30-second tour"));
  const blocks = [...tour.matchAll(/```js\n([\s\S]*?)```/g)].map((m) => m[1].replaceAll("127.0.0.1:8080", server.wsAddr));
  assert.equal(blocks.length, 2);
  const context = await browser.createBrowserContext();
  const page = await context.newPage();
  const logs = [];
  const waiters = [];
  page.on("console", (m) => {
    logs.push(m.text());
    for (const w of waiters.splice(0)) w();
  });
  /** Resolves with the logged lines once `pred` accepts them (bounded by the test's timeout). */
  const logged = async (pred) => {
    while (!pred(logs)) await new Promise((r) => waiters.push(r));
    return logs;
  };
  await page.goto(`http://${server.wsAddr}/`, { waitUntil: "load" });
  // As a console runs a pasted block: top-level await, in one go.
  const paste = (code) => page.evaluate(`(async () => {\n${code}\n})()`);

  await paste(blocks[0]);
  const frames = (await logged((l) => l.length >= 4)).slice(0, 4).map((l) => JSON.parse(l));
  assert.deepEqual(frames.map((f) => [f.op, f.id]), [["welcome", undefined], ["ok", 1], ["message", undefined], ["ok", 2]]);
  assert.equal(frames[0].user, "ann");
  assert.deepEqual(frames[2].data, { text: "hello" });

  await paste(blocks[1]);
  await logged((l) => l.some((line) => /^\d+ bob /.test(line)));
  await context.close();
});

/**
 * A small load over RESP: a subscriber and a publisher on the room `load`,
 * publishing for `ms`, rising from 20 to about 400 messages a second (a
 * shape to see on the charts). Resolves with the number published.
 */
async function resp_load(addr, ms) {
  const [host, port] = addr.split(":");
  const open = () =>
    new Promise((resolve, reject) => {
      const s = net.connect(Number(port), host, () => resolve(s));
      s.on("error", reject);
    });
  const sub = await open();
  const subscribed = new Promise((resolve) => sub.once("data", resolve));
  sub.write("SUBSCRIBE load\r\n");
  sub.on("data", () => {});
  await subscribed;
  const pub = await open();
  pub.on("data", () => {});
  let sent = 0;
  const start = Date.now();
  await new Promise((resolve) => {
    const tick = setInterval(() => {
      const elapsed = Date.now() - start;
      if (elapsed >= ms) {
        clearInterval(tick);
        return resolve();
      }
      const burst = 1 + Math.floor((19 * elapsed) / ms);
      for (let i = 0; i < burst; i++, sent++) pub.write(`PUBLISH load "tick ${sent}"\r\n`);
    }, 50);
  });
  pub.end();
  sub.end();
  return sent;
}
