// Runs axe-core inside headless Chromium on one page and prints its violations as JSON.
// Usage: node --experimental-websocket axe.mjs <chromium> <axe.min.js> <url>
// Node built-ins only: the Chrome DevTools Protocol over Node's WebSocket.
import { spawn } from "node:child_process";
import { once } from "node:events";
import { readFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [chromium, axePath, url] = process.argv.slice(2);
const profile = mkdtempSync(join(tmpdir(), "axe-chromium-"));
const browser = spawn(chromium, [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
  "--remote-debugging-port=0", `--user-data-dir=${profile}`, "--window-size=1280,900", "about:blank",
], { stdio: ["ignore", "ignore", "pipe"] });

// Chromium writes its profile until it exits, so the profile goes only after that.
async function stop(code) {
  browser.kill();
  if (browser.exitCode === null && browser.signalCode === null) await once(browser, "exit");
  rmSync(profile, { recursive: true, force: true });
  process.exit(code);
}
function fail(message) {
  console.error(message);
  return stop(1);
}
setTimeout(() => fail("axe.mjs: timed out after 60s"), 60_000).unref();

// Chromium prints the browser's endpoint on stderr; its port also serves the page list.
const port = await new Promise((resolve) => {
  let seen = "";
  browser.stderr.on("data", (chunk) => {
    seen += chunk;
    const m = seen.match(/DevTools listening on ws:\/\/[^:]+:(\d+)\//);
    if (m) resolve(m[1]);
  });
});
const pages = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json();
const page = pages.find((p) => p.type === "page");
const ws = new WebSocket(page.webSocketDebuggerUrl);
await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = reject; });

let next = 0;
const waiting = new Map();
const events = [];
ws.onmessage = (msg) => {
  const data = JSON.parse(msg.data);
  if (data.id !== undefined) {
    const { resolve, reject } = waiting.get(data.id);
    waiting.delete(data.id);
    data.error ? reject(new Error(JSON.stringify(data.error))) : resolve(data.result);
  } else {
    events.push(data.method);
  }
};
const send = (method, params = {}) => new Promise((resolve, reject) => {
  const id = ++next;
  waiting.set(id, { resolve, reject });
  ws.send(JSON.stringify({ id, method, params }));
});

await send("Page.enable");
await send("Page.navigate", { url });
while (!events.includes("Page.loadEventFired")) await new Promise((r) => setTimeout(r, 50));
await send("Runtime.evaluate", { expression: readFileSync(axePath, "utf8") });
const result = await send("Runtime.evaluate", {
  expression: `axe.run(document).then((r) => JSON.stringify(r.violations.map((v) => ({
    id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.target.join(" ")) }))))`,
  awaitPromise: true,
  returnByValue: true,
});
if (result.exceptionDetails) await fail(`axe.run failed: ${JSON.stringify(result.exceptionDetails)}`);
console.log(result.result.value);
ws.close();
await stop(0);
