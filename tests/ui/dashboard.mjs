// kindling serve's dashboard in a real browser: Debian's Chromium, driven by playwright-core,
// checked with axe-core. Run by tests/cli/ui.rs, which starts kindling serve and passes:
//   KINDLING_URL      the boot server, http://127.0.0.1:PORT
//   KINDLING_SECRETS  a JSON file: {"admin": "...", "secrets": ["...", ...]} (what must never show)
//   KINDLING_SHOTS    where each step's screenshot goes
//   KINDLING_CALLS    where to write every API call the pages made and every event they read,
//                     for tests/ui/check_api_calls.py to hold against docs/openapi.yaml
// Each step prints one line; any failure exits 1 with what was expected and what was found.

import { chromium } from "playwright-core";
import AxeBuilder from "@axe-core/playwright";
import { readFileSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const base = process.env.KINDLING_URL;
const { admin, secrets } = JSON.parse(readFileSync(process.env.KINDLING_SECRETS, "utf8"));
const shots = process.env.KINDLING_SHOTS;
mkdirSync(shots, { recursive: true });

function check(ok, what) {
  if (!ok) throw new Error(what);
}

async function shot(page, name) {
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
}

// Every response body the page fetched (not the event stream, which does not end), for the
// secrets check; and the API calls among them.
const bodies = [];
const calls = [];
function collect(page) {
  page.on("response", async (response) => {
    const url = new URL(response.url());
    if (!url.pathname.startsWith("/api/")) return;
    const contentType = response.headers()["content-type"] || "";
    const call = { method: response.request().method(), path: url.pathname, status: response.status(), contentType };
    if (contentType.startsWith("application/json")) call.body = await response.text();
    calls.push(call);
  });
  // The events the page reads from the stream, as the page got them.
  page.on("domcontentloaded", () => page.evaluate(() => {
    window.__events = [];
    window.addEventListener("kindling-event", (e) => {
      const { id, ...event } = e.detail;
      window.__events.push(event);
    });
  }).catch(() => {}));
  // What the page itself says went wrong, for the failure's story.
  page.on("pageerror", (error) => console.log(`browser: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() === "error") console.log(`browser console: ${message.text()}`);
  });
  page.on("response", async (response) => {
    const type = response.headers()["content-type"] || "";
    if (type.includes("text/event-stream")) return;
    try {
      bodies.push({ url: response.url(), text: await response.text() });
    } catch {
      // A redirect has no body.
    }
  });
}

// axe-core on the page as it is, in both themes: no serious or critical violation.
async function accessible(page, name) {
  for (const scheme of ["light", "dark"]) {
    await page.emulateMedia({ colorScheme: scheme });
    const result = await new AxeBuilder({ page }).analyze();
    const bad = result.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
    check(bad.length === 0, `axe on ${name} (${scheme}): ${bad.map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`).join("; ")}`);
    await shot(page, `${name}-${scheme}`);
  }
  await page.emulateMedia({ colorScheme: "light" });
  console.log(`axe: ${name}: no serious or critical violation, light and dark`);
}

// A machine walking its boot as iPXE and its agent do, over plain HTTP: the script of its MAC,
// its Ignition URL (with the token the script gave it), then its agent's report.
async function walk(mac) {
  const script = await (await fetch(`${base}/ipxe?mac=${mac}`)).text();
  const url = script.split(/\s+/).find((a) => a.startsWith("coreos.inst.ignition_url="))?.slice("coreos.inst.ignition_url=".length);
  check(url, `no Ignition URL in the script of ${mac}: ${script}`);
  const token = new URL(url).searchParams.get("token");
  const steps = [
    async () => { check((await fetch(url)).ok, `the Ignition URL of ${mac}`); },
    async () => {
      const response = await fetch(`${base}/api/v1/events`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ mac: mac.replaceAll("-", ":"), token, stage: "installed", result: "done" }),
      });
      check(response.status === 204, `the report of ${mac}: HTTP ${response.status}`);
    },
  ];
  return steps;
}

const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox"] });
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  collect(page);

  // Refused without the token: the API says 401, a page goes to the login.
  const api = await fetch(`${base}/api/v1/machines`);
  check(api.status === 401, `/api/v1/machines without the token: HTTP ${api.status}`);
  await page.goto(`${base}/ui/machines?q=worker0`);
  check(new URL(page.url()).pathname === "/ui/login", `without a session the page is ${page.url()}`);
  await accessible(page, "login");
  await page.fill("#token", "not-the-token");
  await page.click("button[type=submit]");
  await page.waitForSelector("p.error");
  check((await page.textContent("p.error")).includes("not the admin token"), "a wrong token is said to be wrong");
  await shot(page, "login-refused");
  console.log("login: refused without a token and with a wrong one");

  // Logged in: on to the page asked for, which keeps its filter.
  await page.fill("#token", admin);
  await page.click("button[type=submit]");
  await page.waitForURL((u) => u.pathname === "/ui/machines");
  check(new URL(page.url()).searchParams.get("q") === "worker0", `the filter survived the login: ${page.url()}`);
  await page.waitForSelector('.row[data-name="worker0"]');
  await shot(page, "machines-worker0");
  console.log("login: the token opens the page asked for");

  // worker0 walks its boot; its row moves through the stages with no reload.
  await page.evaluate(() => { window.__sameDocument = true; });
  const stageOf = () => page.textContent('.row[data-name="worker0"] .stage');
  const waitStage = async (want) => {
    try {
      await page.waitForFunction((w) => document.querySelector('.row[data-name="worker0"] .stage')?.textContent === w, want, { timeout: 15000 });
    } catch {
      throw new Error(`worker0's row never showed ${want}: it shows ${await stageOf()}, and the stream is ${await page.textContent("#live")}`);
    }
  };
  const steps = await walk("52-54-00-7e-01-20");
  await waitStage("ipxe");
  const seen = [await stageOf()];
  for (const [step, stage] of steps.map((s, i) => [s, ["ignition", "installed"][i]])) {
    await step();
    await waitStage(stage);
    seen.push(await stageOf());
  }
  check(seen.join(" ") === "ipxe ignition installed", `worker0's row showed ${seen.join(" → ")}`);
  check(await page.evaluate(() => window.__sameDocument === true), "the page was reloaded");
  await shot(page, "machines-live");
  console.log(`live: worker0's row went ${seen.join(" → ")} without a reload`);

  // Its page: the timeline in order, and the script without its token.
  await page.click('.row[data-name="worker0"]');
  await page.waitForURL((u) => u.pathname === "/ui/machines/worker0");
  await page.waitForSelector(".timeline li");
  const timeline = await page.$$eval(".timeline li strong", (items) => items.map((i) => i.textContent));
  // The walk, after the boot script the test read first; then the server's own record that the
  // install is done and its secrets are no longer served.
  check(timeline.join(" ") === "ipxe ipxe ignition installed disarmed", `worker0's timeline: ${timeline.join(", ")}`);
  check((await page.textContent("pre code")).includes("token=REDACTED"), "the script's token is redacted");
  await accessible(page, "machine");
  console.log(`machine page: ${timeline.join(" → ")}`);

  // Filter by stage; the URL holds it, and a fresh load of that URL restores it.
  await page.click('nav a[href="/ui/machines"]');
  await page.waitForURL((u) => u.pathname === "/ui/machines");
  await page.selectOption("#stage", "installed");
  await page.waitForFunction(() => location.search.includes("stage=installed"));
  const link = page.url();
  const fresh = await context.newPage();
  collect(fresh);
  await fresh.goto(link);
  await fresh.waitForSelector('.row[data-name="worker0"]');
  check(await fresh.inputValue("#stage") === "installed", "the deep link restored the stage filter");
  const names = await fresh.$$eval(".row", (rows) => rows.map((r) => r.dataset.name));
  check(names.join(",") === "worker0", `filtered to installed: ${names.join(",")}`);
  await accessible(fresh, "machines");
  console.log(`deep link: ${link} shows ${names.join(",")}`);

  // The keyboard alone: into the table, down two rows, Enter opens the machine.
  await fresh.goto(`${base}/ui/machines`);
  await fresh.waitForSelector(".row");
  await fresh.focus("#q");
  let tabs = 0;
  while (!(await fresh.evaluate(() => document.activeElement?.classList.contains("body"))) && tabs < 20) {
    await fresh.keyboard.press("Tab");
    tabs += 1;
  }
  check(tabs < 20, "Tab never reached the machine table");
  await fresh.keyboard.press("ArrowDown");
  await fresh.keyboard.press("ArrowDown");
  const second = await fresh.evaluate(() => document.activeElement?.dataset?.name);
  const order = await fresh.$$eval(".row", (rows) => rows.map((r) => r.dataset.name));
  check(second === order[1], `ArrowDown twice is on ${second}, the second row is ${order[1]}`);
  await fresh.keyboard.press("Enter");
  await fresh.waitForURL((u) => u.pathname === `/ui/machines/${second}`);
  console.log(`keyboard: Tab ×${tabs} into the table, ↓↓ to ${second}, Enter opened its page`);

  // A phone: nothing wider than the screen.
  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
  await phone.addCookies(await context.cookies());
  const small = await phone.newPage();
  for (const path of ["/ui/", "/ui/machines", "/ui/machines/worker0"]) {
    await small.goto(`${base}${path}`);
    await small.waitForSelector("main h1");
    await small.waitForLoadState("networkidle").catch(() => {});
    const wide = await small.evaluate(() => document.documentElement.scrollWidth);
    check(wide <= 390, `${path} is ${wide}px wide on a 390px phone`);
    await shot(small, `phone${path.replaceAll("/", "-")}`);
  }
  await phone.close();
  console.log("phone: every page fits 390px");

  // The overview.
  await fresh.goto(`${base}/ui/`);
  await fresh.waitForSelector(".cards .card");
  await accessible(fresh, "overview");

  // Doctor: not run yet; run from the page (an action, with the page's CSRF token); grouped.
  await fresh.click('nav a[href="/ui/doctor"]');
  await fresh.waitForSelector("button.primary");
  check((await fresh.textContent("#doctor-status")).includes("not run yet"), "doctor has not run yet");
  await fresh.click("button.primary");
  await fresh.waitForSelector(".findings li", { timeout: 60000 });
  const areas = await fresh.$$eval("main section h2", (hs) => hs.map((h) => h.textContent));
  check(areas[0] === "Cluster description" && areas.includes("DNS"), `doctor's groups: ${areas.join(", ")}`);
  const errors = await fresh.$$eval(".findings li.error", (ls) => ls.length);
  const fixes = await fresh.$$eval(".findings li.error .fix", (ls) => ls.length);
  check(errors > 0 && fixes === errors, `every error has its fix: ${fixes} of ${errors}`);
  check((await fresh.textContent("#doctor-status")).includes("run by the dashboard"), "the report says who ran it");
  await accessible(fresh, "doctor");
  console.log(`doctor: ran from the page: ${areas.join(", ")}; ${errors} errors, each with its fix`);
  const forged = await fetch(`${base}/api/v1/doctor`, { method: "POST", headers: { Cookie: (await context.cookies()).map((c) => `${c.name}=${c.value}`).join("; ") } });
  check(forged.status === 403, `a POST with the session but no CSRF token: HTTP ${forged.status}`);

  // The certificates, soonest expiry first.
  await fresh.click('nav a[href="/ui/certificates"]');
  await fresh.waitForSelector("table.plain tbody tr");
  const expiries = await fresh.$$eval("table.plain tbody time", (ts) => ts.map((t) => t.getAttribute("datetime")));
  check(expiries.length > 10, `only ${expiries.length} certificates listed`);
  check(expiries.every((t, i) => i === 0 || Date.parse(expiries[i - 1]) <= Date.parse(t)), `not soonest first: ${expiries.join(", ")}`);
  await accessible(fresh, "certificates");
  console.log(`certificates: ${expiries.length}, soonest first`);

  // No secret anywhere: not in any page's DOM, not in anything the pages fetched.
  for (const p of [page, fresh]) {
    const dom = await p.content();
    for (const secret of [admin, ...secrets]) {
      check(!dom.includes(secret), `a secret (${secret.slice(0, 6)}…) is in the DOM of ${p.url()}`);
    }
  }
  for (const { url, text } of bodies) {
    for (const secret of [admin, ...secrets]) {
      check(!text.includes(secret), `a secret (${secret.slice(0, 6)}…) is in the answer to ${url}`);
    }
  }
  console.log(`secrets: none of ${secrets.length + 1} in the DOM or in ${bodies.length} answers`);

  const events = [];
  for (const p of [page, fresh]) events.push(...await p.evaluate(() => window.__events || []));
  check(events.length > 0, "the page read no event from the stream");
  writeFileSync(process.env.KINDLING_CALLS, JSON.stringify({ calls, events }, null, 1));
  console.log(`api: ${calls.length} calls and ${events.length} events written for the OpenAPI check`);
} finally {
  await browser.close();
}
