// Starts the real ringcast binary on loopback ports chosen by the kernel.

import { spawn, execFileSync } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { createInterface } from "node:readline";

const repo = fileURLToPath(new URL("../../../../", import.meta.url));

/** The server binary: $RINGCAST_BIN, else the newest of target/{release,debug}/ringcast. */
export function binary() {
  if (process.env.RINGCAST_BIN) return process.env.RINGCAST_BIN;
  const found = ["release", "debug"]
    .map((p) => `${repo}target/${p}/ringcast`)
    .filter((p) => existsSync(p))
    .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs);
  if (!found.length) {
    throw new Error("no ringcast binary: run `cargo build --release` at the repository root, or set RINGCAST_BIN");
  }
  return found[0];
}

let help;
/** True when `ringcast serve` takes `flag` (features that arrive on other branches). */
export function supports(flag) {
  help ??= execFileSync(binary(), ["serve", "--help"], { encoding: "utf8" });
  return help.includes(flag);
}

/**
 * `ringcast serve` with `args`, on 127.0.0.1 port 0 unless `args` names
 * addresses. Resolves once it prints its `ringcast listening` line.
 */
export async function startServer(args = [], { ws = "127.0.0.1:0" } = {}) {
  const base = ["serve", "--ws", ws, "--resp", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--log", "warn"];
  if (!args.includes("--shards")) base.push("--shards", "2");
  // Rate limits (where the server has them) are not what these tests are about.
  if (supports("--limits-publish-rate") && !args.some((a) => a.startsWith("--limits-"))) {
    base.push("--limits-publish-rate", "0", "--limits-join-rate", "0");
  }
  const child = spawn(binary(), [...base, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (d) => (stderr += d));
  const line = await new Promise((resolve, reject) => {
    const rl = createInterface({ input: child.stdout });
    const timer = setTimeout(() => reject(new Error(`ringcast did not start: ${stderr}`)), 15_000);
    rl.on("line", (l) => {
      if (l.startsWith("ringcast listening")) {
        clearTimeout(timer);
        resolve(l);
      }
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`ringcast exited with ${code}: ${stderr}`));
    });
  });
  const field = (k) => line.match(new RegExp(`${k}=(\\S+)`))[1];
  const exited = new Promise((resolve) => child.on("exit", (code, signal) => resolve(code ?? signal)));
  return {
    wsAddr: field("ws"),
    url: `ws://${field("ws")}/ws`,
    resp: field("resp"),
    admin: field("admin"),
    shards: Number(field("shards")),
    get stderr() {
      return stderr;
    },
    exited,
    /** Graceful stop (SIGTERM); resolves when the process has exited. */
    stop() {
      if (child.exitCode === null) child.kill("SIGTERM");
      return exited;
    },
  };
}
