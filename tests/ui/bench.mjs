// The dashboard's speed, for bench/ui.sh (BENCHMARKS.md): Debian's Chromium through
// playwright-core against a release `kindling serve` of many machines.
//   KINDLING_URL    the boot server
//   KINDLING_TOKEN  the admin token
//   KINDLING_PID    the server's pid (its CPU time is read from /proc)
//   KINDLING_STORM  a shell command: the boot storm to run while the page follows it
//   KINDLING_STORMS how many times to run it (default 3)
//   KINDLING_RUNS   how many loads of the machines page to time (default 5)
// Prints one JSON object: the machines page's load times (navigation until the rows are drawn,
// and until a sort answers), the longest task on the main thread and how many passed 100 ms
// during the storm, how long after the storm the page showed what the server says, and the
// server's CPU time per storm request with the page open.

import { chromium } from "playwright-core";
import { execSync } from "node:child_process";
import { readFileSync } from "node:fs";

const base = process.env.KINDLING_URL;
const token = process.env.KINDLING_TOKEN;
const runs = Number(process.env.KINDLING_RUNS || 5);
const ticks = () => {
  const fields = readFileSync(`/proc/${process.env.KINDLING_PID}/stat`, "utf8").split(") ")[1].split(" ");
  return Number(fields[11]) + Number(fields[12]); // utime + stime, in clock ticks
};
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const hz = Number(execSync("getconf CLK_TCK", { encoding: "utf8" }));

const login = await fetch(`${base}/ui/login`, {
  method: "POST",
  redirect: "manual",
  headers: { "Content-Type": "application/x-www-form-urlencoded" },
  body: `token=${encodeURIComponent(token)}&next=/ui/machines`,
});
const session = login.headers.get("set-cookie").split(";")[0].split("=");
const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox"] });
const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
await context.addCookies([{ name: session[0], value: session.slice(1).join("="), url: base }]);
// Every long task of the main thread, from the page's first moment.
await context.addInitScript(() => {
  window.__longTasks = [];
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) window.__longTasks.push(entry.duration);
  }).observe({ type: "longtask", buffered: true });
});
const page = await context.newPage();

// The machines page, loaded `runs` times: until its rows are drawn, and until a sort by stage
// has redrawn them (the page answers input).
const drawn = [];
const interactive = [];
let machines = 0;
for (let i = 0; i < runs; i++) {
  const start = Date.now();
  await page.goto(`${base}/ui/machines`);
  await page.waitForSelector(".row");
  drawn.push(Date.now() - start);
  const first = await page.getAttribute(".row", "data-name");
  await page.click(".head button >> nth=0"); // by name, descending
  await page.waitForFunction((f) => document.querySelector(".row")?.dataset.name !== f, first);
  interactive.push(Date.now() - start);
  machines = Number((await page.textContent(".count")).split(" of ")[1].split(" ")[0]);
}
const loadLongest = Math.max(0, ...await page.evaluate(() => window.__longTasks));

// The storm, KINDLING_STORMS times (default 3), the page open on the machines list and following
// the event stream.
await page.goto(`${base}/ui/machines?stage=ipxe`);
await page.waitForSelector(".count");
await page.evaluate(() => { window.__longTasks = []; });
const perRequest = [];
let requests = 0;
const stormStart = Date.now();
for (let i = 0; i < Number(process.env.KINDLING_STORMS || 3); i++) {
  const before = ticks();
  const storm = execSync(process.env.KINDLING_STORM, { encoding: "utf8", shell: "/bin/bash" });
  const n = Number(/(\d+) requests in/.exec(storm)?.[1] || 0);
  perRequest.push((ticks() - before) / hz * 1e6 / n);
  requests += n;
}
const stormEnd = Date.now();
// Caught up: the page counts as many machines at ipxe as the server's list says.
// (Asked twice at most: the idle connection kept from the login may have been closed by the
// server during the storm, a race undici does not retry.)
const listed = () => fetch(`${base}/api/v1/machines`, { headers: { Authorization: `Bearer ${token}` } });
const list = await (await listed().catch(listed)).json();
const atIpxe = list.machines.filter((m) => m.stage === "ipxe").length;
await page.waitForFunction((n) => document.querySelector(".count")?.textContent.startsWith(`${n} of`), atIpxe, { timeout: 60000 });
const caughtUp = Date.now() - stormEnd;
const tasks = await page.evaluate(() => window.__longTasks);
// The observer itself, checked: a task of 120 ms on purpose must be seen.
// (As a task of the page's own: a busy loop run by page.evaluate itself is not one.)
await page.evaluate(() => new Promise((done) => setTimeout(() => {
  const t = performance.now();
  while (performance.now() - t < 120) { /* busy */ }
  done();
}, 0)));
await page.waitForTimeout(200);
const probe = await page.evaluate(() => Math.max(0, ...window.__longTasks));
if (probe < 110) throw new Error(`the Long Tasks API did not see a 120 ms task (${probe} ms): nothing it says is measured`);
await browser.close();

console.log(JSON.stringify({
  machines,
  drawnMs: { median: median(drawn), runs: drawn },
  interactiveMs: { median: median(interactive), runs: interactive },
  loadLongestTaskMs: Math.round(loadLongest),
  storm: {
    seconds: (stormEnd - stormStart) / 1000,
    requests,
    machinesAtIpxe: atIpxe,
    cpuUsPerRequest: { median: median(perRequest), runs: perRequest.map((x) => Math.round(x * 10) / 10) },
    longestTaskMs: Math.round(Math.max(0, ...tasks)),
    tasksOver100Ms: tasks.filter((d) => d > 100).length,
    caughtUpMsAfter: caughtUp,
  },
}));
