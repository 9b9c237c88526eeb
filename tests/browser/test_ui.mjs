// test_ui.mjs - the web UI in a real browser (label browser): playwright-core
// drives Debian's chromium (headless, no sandbox, a fresh temporary profile)
// against the real `durable serve` on a free loopback port with a temporary
// database and the shipped examples. Every check waits on what the page
// shows, through live updates: the page is never reloaded.
//
//   node test_ui.mjs --durable build/durable --examples examples \
//        --playwright build/npm/node_modules/playwright-core --screenshots build/screenshots
//
// A missing chromium or playwright-core is a failure, not a skip.
import { spawn } from "node:child_process";
import { createRequire } from "node:module";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";

const args = {};
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, "")] = process.argv[i + 1];
const DURABLE = path.resolve(args.durable || "build/durable");
const EXAMPLES = path.resolve(args.examples || "examples");
const PLAYWRIGHT = path.resolve(args.playwright || "build/npm/node_modules/playwright-core");
const SHOTS = path.resolve(args.screenshots || "build/screenshots");
const CHROMIUM = args.chromium || "/usr/bin/chromium";
const T = Number(args.timeout || 30000); // per wait

const t0 = Date.now();
const log = (msg) => process.stderr.write(`[${((Date.now() - t0) / 1000).toFixed(1)}s] ${msg}\n`);
let failures = 0;

function die(msg) {
  log(`FAIL: ${msg}`);
  process.exit(1);
}

if (!fs.existsSync(CHROMIUM)) die(`${CHROMIUM} not found: run scripts/install-deps.sh (installs Debian's chromium)`);
if (!fs.existsSync(path.join(PLAYWRIGHT, "package.json"))) die(`playwright-core not found in ${PLAYWRIGHT}: run scripts/install-deps.sh`);
const { chromium } = createRequire(path.join(PLAYWRIGHT, "package.json"))(PLAYWRIGHT);

/* ---------- the server ---------- */

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "durable-browser-"));
let server = null;
let serverLog = "";

function startServer(listen = "127.0.0.1:0", extra = []) {
  return new Promise((resolve, reject) => {
    server = spawn(DURABLE, ["serve", "--listen", listen, "--db", path.join(tmp, "durable.db"),
      "--workflows", EXAMPLES, ...extra], { stdio: ["ignore", "pipe", "pipe"] });
    server.stderr.on("data", (d) => { serverLog += d; });
    const timer = setTimeout(() => reject(new Error("server did not start in 20 s")), 20000);
    const rl = readline.createInterface({ input: server.stdout });
    rl.once("line", (line) => {
      clearTimeout(timer);
      const m = /^durable listening on (http:\/\/\S+?)\/?\s*$/.exec(line);
      if (!m) reject(new Error(`unexpected first line: ${line}`)); else resolve(m[1]);
    });
    server.stdout.on("data", (d) => { serverLog += d; });
    server.on("exit", (code) => reject(new Error(`server exited (${code})`)));
  });
}

let BASE = "";
let TOKEN = ""; // set while the server runs with --token: sent as a bearer token
async function http(method, p, body) {
  const headers = body ? { "Content-Type": "application/json" } : {};
  if (TOKEN) headers.Authorization = `Bearer ${TOKEN}`;
  const res = await fetch(BASE + p, {
    method, headers,
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, json: text ? JSON.parse(text) : null };
}
async function workflowCount() {
  return Number((await http("GET", "/workflows?limit=1")).headers.get("x-total-count"));
}

/* ---------- the checks ---------- */

const consoleProblems = [];
const expected422 = { on: false, seen: 0 };
const expected4xx = { on: false, seen: 0 }; // 400 and 401 the test provokes
const expected404 = { on: false, seen: 0 }; // a deleted run's page
let serverDown = false; // while the test stops the server, failed loads are expected

async function stopServer() {
  server.removeAllListeners("exit");
  const exited = new Promise((r) => server.once("exit", (code, signal) => r(signal || code)));
  server.kill("SIGTERM");
  const status = await exited;
  server = null;
  if (status !== 0) throw new Error(`the server stopped with status ${status} (a clean stop is 0)\n${serverLog.split("\n").slice(-40).join("\n")}`);
}

async function check(name, f) {
  const start = Date.now();
  try {
    await f();
    log(`ok   ${name} (${((Date.now() - start) / 1000).toFixed(1)} s)`);
  } catch (e) {
    failures++;
    log(`FAIL ${name}: ${e.stack || e}`);
  }
}

function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

async function main() {
  BASE = await startServer();
  log(`server at ${BASE}`);
  fs.mkdirSync(SHOTS, { recursive: true });
  const profile = fs.mkdtempSync(path.join(tmp, "profile-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    viewport: { width: 1440, height: 900 },
    timeout: 30000,
  });
  context.setDefaultTimeout(T);
  const watch = (page) => {
    page.on("console", (m) => {
      if (m.type() !== "error" && m.type() !== "warning") return;
      // The API answers an invalid definition with 422, which chromium logs
      // as a failed resource load: expected only while the test submits one.
      if (expected422.on && /status of 422/.test(m.text())) { expected422.seen++; return; }
      if (expected4xx.on && /status of 40[01]/.test(m.text())) { expected4xx.seen++; return; }
      if (expected404.on && /status of 404/.test(m.text())) { expected404.seen++; return; }
      if (serverDown && /ERR_CONNECTION_REFUSED|ERR_CONNECTION_RESET|ERR_EMPTY_RESPONSE|ERR_INCOMPLETE_CHUNKED_ENCODING|status of 503/.test(m.text())) return;
      consoleProblems.push(`${m.type()}: ${m.text()} (${m.location().url})`);
    });
    page.on("pageerror", (e) => consoleProblems.push(`pageerror: ${e.message}`));
  };
  context.on("page", watch);
  const page = context.pages()[0] || await context.newPage();
  watch(page);

  await check("dashboard: start the order example with an order, watch it complete live", async () => {
    await page.goto(`${BASE}/`);
    await page.waitForSelector("#workflow option", { state: "attached" });
    await page.selectOption("#workflow", await optionFor(page, "order-processing"));
    await page.waitForFunction(() => document.getElementById("definition").value.includes("charge_payment"));
    await page.click("#start-order");
    await page.waitForURL(/\/ui\/run\.html\?id=/);
    await page.evaluate(() => { window.__noReload = true; });
    await page.waitForSelector(".node");
    const n = await page.locator(".node").count();
    assert(n === 3, `3 nodes expected, got ${n}`);
    await page.waitForSelector(".node.running");
    await page.locator(".node[data-step=validate]").click();
    await page.screenshot({ path: path.join(SHOTS, "run-in-progress.png"), fullPage: true });
    await page.waitForFunction(() => {
      const nodes = [...document.querySelectorAll(".node")];
      return nodes.length === 3 && nodes.every((g) => g.classList.contains("completed"));
    });
    await page.waitForSelector('[data-order-status="shipped"]');
    await page.waitForSelector("#run-status .badge.completed");
    assert(await page.evaluate(() => window.__noReload === true), "the page was reloaded");
    const hist = await page.locator("#history li").count();
    assert(hist >= 7, `history too short: ${hist}`);
    await page.locator(".node[data-step=charge]").click();
    await page.waitForSelector("#step .badge.completed");
    await page.screenshot({ path: path.join(SHOTS, "run-completed.png"), fullPage: true });
  });

  await check("dashboard: invalid definitions are shown located, nothing registered", async () => {
    await page.goto(`${BASE}/`);
    await page.waitForSelector("#workflow option", { state: "attached" });
    const before = await workflowCount();
    const cycle = JSON.stringify({
      name: "cyclic", steps: [
        { id: "a", type: "task", depends_on: ["c"] },
        { id: "b", type: "task", depends_on: ["a"] },
        { id: "c", type: "task", depends_on: ["b"] }],
    }, null, 2);
    expected422.on = true;
    await page.fill("#definition", cycle);
    await page.click("#register");
    const err = page.locator("#errors li", { hasText: "cycle" });
    await err.first().waitFor();
    const unknown = JSON.stringify({
      name: "unknown-dep", steps: [
        { id: "validate", type: "task" },
        { id: "charge", type: "task", depends_on: ["validate"] },
        { id: "ship", type: "task", depends_on: ["chrage"] }],
    }, null, 2);
    await page.fill("#definition", unknown);
    await page.click("#start"); // Start registers an edited definition first
    const located = page.locator("#errors li button", { hasText: "unknown step" });
    await located.first().waitFor();
    const label = await located.first().locator(".loc").textContent();
    const line = unknown.split("\n").findIndex((l) => l.includes('"chrage"')) + 1;
    assert(label === `L${line}`, `error located at ${label}, expected L${line}`);
    await located.first().click();
    const sel = await page.evaluate(() => {
      const t = document.getElementById("definition");
      return t.value.slice(t.selectionStart, t.selectionEnd);
    });
    assert(sel.includes("chrage"), `clicking the error selected ${JSON.stringify(sel)}`);
    await page.screenshot({ path: path.join(SHOTS, "dashboard-invalid.png"), fullPage: true });
    // JSON syntax is checked as you type, without asking the server
    await page.fill("#definition", '{\n  "name": "broken",\n  "steps": [\n    {"id": "a" "type": "task"}\n  ]\n}');
    const syntax = page.locator("#errors li button", { hasText: "JSON" });
    await syntax.first().waitFor();
    assert(await syntax.first().locator(".loc").textContent() === "L4", "the JSON syntax error is not on line 4");
    expected422.on = false;
    assert(expected422.seen >= 2, `expected two 422 responses, chromium logged ${expected422.seen}`);
    assert(await workflowCount() === before, "an invalid definition was registered");
    assert(page.url() === `${BASE}/`, "an invalid definition started a run");
  });

  await check("dashboard: upload a YAML file, see its located error, fix it, register", async () => {
    await page.goto(`${BASE}/`);
    await page.waitForSelector("#workflow option", { state: "attached" });
    const before = await workflowCount();
    const bad = "name: uploaded\nsteps:\n  - id: one\n    type: task\n  - id: two\n    type: task\n    depends_on: [onee]\n";
    expected422.on = true;
    await page.setInputFiles("#upload", { name: "uploaded.yaml", mimeType: "application/yaml", buffer: Buffer.from(bad) });
    await page.waitForFunction(() => document.getElementById("definition").value.startsWith("name: uploaded"));
    await page.click("#register");
    const located = page.locator("#errors li button", { hasText: "unknown step" });
    await located.first().waitFor();
    assert(await located.first().locator(".loc").textContent() === "L7", "the YAML error is not located at line 7");
    expected422.on = false;
    assert(await workflowCount() === before, "an invalid upload was registered");
    await page.fill("#definition", bad.replace("onee", "one"));
    await page.click("#register");
    await page.waitForSelector("#notice.ok");
    await page.waitForFunction(() => [...document.querySelectorAll("#workflow option")].some((o) => o.textContent.startsWith("uploaded ")));
    assert(await workflowCount() === before + 1, "the fixed upload was not registered");
    assert(!(await page.locator("#errors li").count()), "errors still shown after a successful register");
  });

  await check("run page: cancel a slow run", async () => {
    await page.goto(`${BASE}/`);
    await page.waitForSelector("#workflow option", { state: "attached" });
    await page.selectOption("#workflow", await optionFor(page, "slow-order"));
    await page.waitForFunction(() => document.getElementById("definition").value.includes("reserve"));
    await page.click("#start");
    await page.waitForURL(/\/ui\/run\.html\?id=/);
    await page.waitForSelector(".node.running");
    await page.waitForSelector("#cancel:not([disabled])");
    await page.click("#cancel");
    await page.waitForSelector("#run-status .badge.cancelled");
    await page.waitForSelector("#cancel[disabled]");
    const done = await page.locator(".node.completed").count();
    assert(done < 5, "the run finished before it was cancelled");
  });

  await check("run page: retry a failed run", async () => {
    await page.goto(`${BASE}/`);
    await page.waitForSelector("#workflow option", { state: "attached" });
    await page.fill("#definition", JSON.stringify({
      name: "always-fails", steps: [
        { id: "prepare", type: "task", config: { duration_seconds: 0.2 } },
        { id: "flaky", type: "task", config: { fail_probability: 1, max_retries: 0 }, depends_on: ["prepare"] }],
    }, null, 2));
    await page.click("#start");
    await page.waitForURL(/\/ui\/run\.html\?id=/);
    await page.waitForSelector("#run-status .badge.failed");
    await page.waitForSelector(".node.failed[data-step=flaky]");
    const started = () => page.locator("#history .type.step_started").count();
    const first = await started();
    await page.waitForSelector("#retry:not([disabled])");
    await page.click("#retry");
    await page.waitForFunction((n) => document.querySelectorAll("#history .type.step_started").length > n, first);
    await page.waitForSelector("#run-status .badge.failed");
    await page.locator(".node[data-step=flaky]").click();
    await page.waitForFunction(() => document.querySelectorAll("#step .history li").length >= 2);
    await page.screenshot({ path: path.join(SHOTS, "run-failed-retried.png"), fullPage: true });
    assert(await started() > first, "no new attempt after Retry");
  });

  await check("run page: delete a finished run; its page then says it is gone", async () => {
    // the failed run of the check before
    await page.waitForSelector("#run-status .badge.failed");
    const id = new URL(page.url()).searchParams.get("id");
    await page.waitForSelector("#delete:not([disabled])");
    page.once("dialog", (d) => d.accept());
    await page.click("#delete");
    // the notice of the check before (Retry) may still be up: wait for this one's
    await page.waitForFunction(() => {
      const n = document.querySelector("#notice.ok");
      return n && n.textContent.includes("Run deleted");
    });
    assert(await page.textContent("#title") === "Run deleted", "the title does not say deleted");
    await page.waitForSelector("#delete[disabled]");
    assert(await page.isDisabled("#retry"), "Retry still enabled on a deleted run");
    assert((await http("GET", `/runs/${id}`)).status === 404, "the run is still there");
    // the dashboard no longer lists it
    await page.goto(`${BASE}/`);
    await page.waitForSelector("#runs tr");
    assert(await page.locator(`#runs tr[data-run="${id}"]`).count() === 0, "the deleted run is listed");
    // its page, opened again, says it is not found (and no script error)
    expected404.on = true;
    await page.goto(`${BASE}/ui/run.html?id=${id}`);
    await page.waitForSelector("#notice.err");
    assert((await page.textContent("#notice")).includes("not found"), "the page does not say not found");
    assert(await page.textContent("#title") === "Run not found", "the title does not say not found");
    await page.waitForTimeout(500);
    expected404.on = false;
    assert(expected404.seen > 0, "the deleted run's page did not ask for it");
    // a running run cannot be deleted: the button stays disabled
    const slow = await http("POST", "/workflows/slow-order/runs", {});
    await page.goto(`${BASE}/ui/run.html?id=${slow.json.id}`);
    await page.waitForSelector(".node.running");
    assert(await page.isDisabled("#delete"), "Delete enabled on a running run");
    await http("POST", `/runs/${slow.json.id}/cancel`, {});
    await page.waitForSelector("#run-status .badge.cancelled");
    await page.waitForSelector("#delete:not([disabled])");
  });

  await check("run page: pause a run, see it paused, resume it, restart it from a step", async () => {
    const reg = await http("POST", "/workflows", {
      name: "pausable", steps: [
        { id: "first", type: "task", config: { duration_seconds: 2 } },
        { id: "second", type: "task", config: { duration_seconds: 0.2 }, depends_on: ["first"] }],
    });
    assert(reg.status === 201, `register: ${reg.status}`);
    const run = (await http("POST", `/workflows/${reg.json.id}/runs`, {})).json;
    await page.goto(`${BASE}/ui/run.html?id=${run.id}`);
    await page.waitForSelector('.node.running[data-step="first"]');
    await page.waitForSelector("#pause:not([disabled])");
    await page.click("#pause");
    await page.waitForSelector("#run-status .badge.paused");
    await page.waitForSelector("#resume:not([disabled])");
    assert(await page.locator("#pause").isDisabled(), "Pause stays enabled on a paused run");
    await page.waitForSelector('.node.completed[data-step="first"]');
    await page.waitForSelector("#history .type.run_paused");
    assert(await page.locator('.node.pending[data-step="second"]').count() === 1, "second started while paused");
    await page.screenshot({ path: path.join(SHOTS, "run-paused.png"), fullPage: false });
    await page.click("#resume");
    await page.waitForSelector("#run-status .badge.completed");
    await page.waitForSelector("#history .type.run_resumed");
    assert(await page.locator("#resume").isDisabled(), "Resume stays enabled on a finished run");

    // Restart the finished run from its second step: a new, linked run.
    await page.waitForSelector("#restart:not([disabled])");
    await page.locator('.node[data-step="second"]').click();
    assert(await page.locator("#restart-step").inputValue() === "second", "clicking a node does not choose it to restart from");
    await page.click("#restart");
    await page.waitForURL((u) => u.searchParams.get("id") && u.searchParams.get("id") !== run.id);
    await page.waitForSelector("#restarted-from");
    assert(await page.locator("#restarted-from").getAttribute("title") === run.id, "the new run does not name the original");
    await page.waitForSelector("#run-status .badge.completed");
    await page.waitForFunction(() => document.getElementById("history").textContent.includes("copied_from"));
    const starts = await page.locator("#history .type.step_started").count();
    assert(starts === 1, `the restarted run started ${starts} steps, not only "second"`);
    await page.screenshot({ path: path.join(SHOTS, "run-restarted.png"), fullPage: false });
  });

  await check("run page: the timeline shows each attempt and the back-off between them", async () => {
    const reg = await http("POST", "/workflows", {
      name: "backs-off", steps: [{
        id: "always-down", type: "task", config: { duration_seconds: 0.2, fail_probability: 1 },
        retry: { max_attempts: 3, initial_interval_seconds: 0.5, backoff_coefficient: 2 } }],
    });
    assert(reg.status === 201, `register: ${reg.status}`);
    const run = (await http("POST", `/workflows/${reg.json.id}/runs`, {})).json;
    await page.goto(`${BASE}/ui/run.html?id=${run.id}`);
    await page.waitForSelector('.node.retrying[data-step="always-down"], .node.failed[data-step="always-down"]');
    await page.waitForSelector("#run-status .badge.failed");
    await page.locator('.node[data-step="always-down"]').click();
    const bars = await page.locator(".tl-bar.failed").count();
    const gaps = await page.locator(".tl-gap").count();
    assert(bars === 3 && gaps === 2, `timeline: ${bars} failed attempts, ${gaps} back-off gaps (expected 3 and 2)`);
    await page.screenshot({ path: path.join(SHOTS, "run-backoff.png"), fullPage: false });
  });

  await check("db viewer: the order row changes status while a run progresses", async () => {
    await page.goto(`${BASE}/ui/db.html`);
    await page.waitForSelector("#orders tbody");
    const order = (await http("POST", "/orders", { amount: 99.5 })).json;
    const run = await http("POST", "/workflows/slow-order/runs", { order_id: order.id });
    assert(run.status === 202, `start: ${run.status}`);
    const cell = page.locator(`#orders tr[data-key="${order.id}"] td[data-col=status]`);
    const seen = [];
    let shot = false;
    const deadline = Date.now() + T;
    while (Date.now() < deadline) {
      const v = (await cell.count()) ? await cell.textContent() : null;
      if (v && seen[seen.length - 1] !== v) seen.push(v);
      if (!shot && v && v !== "pending") {
        await page.screenshot({ path: path.join(SHOTS, "db-viewer.png"), fullPage: true });
        shot = true;
      }
      if (v === "shipped") break;
      await page.waitForTimeout(100);
    }
    log(`     order status as shown: ${seen.join(" → ")}`);
    assert(seen[seen.length - 1] === "shipped", `never shipped: ${seen.join(", ")}`);
    assert(seen.length >= 3, `too few changes seen live: ${seen.join(", ")}`);
  });

  await check("schedules: create one with optional fields blank, see its next fire times, pause, resume, delete", async () => {
    await page.goto(`${BASE}/`);
    await page.click('.topbar nav a[data-page="schedules"]');
    await page.waitForURL(/\/ui\/schedules\.html$/);
    await page.waitForSelector('#s-workflow option[value="order-processing"]', { state: "attached" });
    // a daily cron with every optional field blank: the defaults
    await page.selectOption("#s-workflow", "order-processing");
    await page.fill("#s-cron", "30 2 * * *");
    await page.click("#s-create");
    await page.waitForFunction(() => document.querySelectorAll("#s-rows tr").length === 1);
    const made = (await http("GET", "/schedules")).json[0];
    assert(made.timezone === "UTC" && made.overlap === "skip" && made.catch_up === "last" &&
      made.catch_up_max === 100 && made.id.startsWith("sch_") && made.paused === false && made.every === null &&
      JSON.stringify(made.input) === "{}", `defaults not taken: ${JSON.stringify(made)}`);
    const cronRow = `#s-rows tr[data-id="${made.id}"]`;
    const times = await page.locator(`${cronRow} ol.next time`).evaluateAll((ts) => ts.map((t) => t.getAttribute("datetime")));
    assert(times.length === 5 && times.every((t) => t.endsWith("T02:30:00.000Z")), `next fire times shown: ${times}`);
    assert(new Set(times).size === 5, `five distinct days: ${times}`);
    // an interval with a chosen id, overlap and input: it fires, its next times move on
    await page.fill("#s-every", "1s");
    await page.fill("#s-id", "ui-fast");
    await page.selectOption("#s-overlap", "allow");
    await page.fill("#s-input", '{"from": "ui"}');
    await page.click("#s-create");
    await page.waitForSelector('#s-rows tr[data-id="ui-fast"]');
    const firstNext = await page.locator('#s-rows tr[data-id="ui-fast"] ol.next time').first().getAttribute("datetime");
    await page.waitForFunction(() => {
      const td = document.querySelector('#s-rows tr[data-id="ui-fast"] td.num');
      return td && parseInt(td.textContent, 10) >= 1;
    });
    await page.waitForFunction((t) => {
      const el = document.querySelector('#s-rows tr[data-id="ui-fast"] ol.next time');
      return el && el.getAttribute("datetime") !== t;
    }, firstNext);
    const fast = (await http("GET", "/schedules/ui-fast")).json;
    assert(fast.every === "1s" && fast.overlap === "allow" && fast.input.from === "ui", `ui-fast: ${JSON.stringify(fast)}`);
    await page.screenshot({ path: path.join(SHOTS, "schedules.png"), fullPage: true });
    // every column, the actions too, is in view at 1,440 px: no sideways scroll
    const overflow = await page.evaluate(() => {
      const box = document.querySelector(".table-scroll.schedules");
      return box.scrollWidth - box.clientWidth;
    });
    assert(overflow <= 1, `the schedules table scrolls sideways by ${overflow} px`);
    // pause and resume from the row
    await page.click('button[aria-label="Pause ui-fast"]');
    await page.waitForSelector('#s-rows tr[data-id="ui-fast"] .badge.paused');
    assert((await http("GET", "/schedules/ui-fast")).json.paused === true, "not paused on the server");
    await page.click('button[aria-label="Resume ui-fast"]');
    await page.waitForSelector('#s-rows tr[data-id="ui-fast"] button[aria-label="Pause ui-fast"]');
    assert((await http("GET", "/schedules/ui-fast")).json.paused === false, "not resumed on the server");
    // a bad cron field: the located error, nothing created
    expected422.on = true;
    await page.fill("#s-cron", "0 24 * * *");
    await page.click("#s-create");
    await page.waitForFunction(() => /cron field 2 \(hour\), column 3: out of range 0-23/.test(document.getElementById("s-error").textContent));
    expected422.on = false;
    assert((await http("GET", "/schedules")).json.length === 2, "an invalid schedule was created");
    await page.fill("#s-cron", "");
    // delete both, confirming
    page.once("dialog", (d) => d.accept());
    await page.click('button[aria-label="Delete ui-fast"]');
    await page.waitForSelector('#s-rows tr[data-id="ui-fast"]', { state: "detached" });
    page.once("dialog", (d) => d.accept());
    await page.click(`button[aria-label="Delete ${made.id}"]`);
    await page.waitForSelector("#s-empty:not([hidden])");
    assert((await http("GET", "/schedules/ui-fast")).status === 404, "ui-fast still exists");
  });

  await check("dashboard: the runs table, live", async () => {
    await page.goto(`${BASE}/`);
    await page.waitForSelector("#runs tr");
    const before = await page.locator("#runs tr").count();
    const r = await http("POST", "/workflows/order-processing/runs", {});
    await page.waitForSelector(`#runs tr[data-run="${r.json.id}"]`);
    await page.waitForSelector(`#runs tr[data-run="${r.json.id}"][data-status="completed"]`);
    assert(await page.locator("#runs tr").count() === before + 1, "the new run was not added");
    await page.click('#filters button[data-status="failed"]');
    await page.waitForFunction(() => [...document.querySelectorAll("#runs tr")].every((tr) => tr.dataset.status === "failed"));
    await page.click('#filters button[data-status="all"]');
    await page.waitForFunction((n) => document.querySelectorAll("#runs tr").length === n, before + 1);
    await page.locator("#workflow").focus();
    await page.screenshot({ path: path.join(SHOTS, "dashboard.png"), fullPage: true });
  });

  await check("dashboard: filter by input, pause, resume and cancel matching after a confirmation", async () => {
    const wf = { name: "bulk-nap", steps: [{ id: "nap", type: "delay", config: { seconds: 600 } }] };
    assert((await http("POST", "/workflows", wf)).status < 300, "could not register bulk-nap");
    const mine = [];
    for (let i = 0; i < 3; i++) mine.push((await http("POST", "/workflows/bulk-nap/runs", { input: { tag: "b1", i } })).json.id);
    const other = (await http("POST", "/workflows/bulk-nap/runs", { input: { tag: "b2" } })).json.id;
    await page.goto(`${BASE}/`);
    await page.waitForSelector("#runs tr");
    // every field blank and no status: refused in the page, nothing sent
    await page.click("#bulk-cancel");
    await page.waitForFunction(() => /Pick a status or fill a filter/.test(document.getElementById("bulk-notice").textContent));
    assert(await page.locator("#bulk-confirm").isHidden(), "a confirmation for an empty filter");
    // only the input field: workflow and dates left blank
    await page.fill("#f-field", "tag");
    await page.fill("#f-value", "b1");
    await page.click("#f-apply");
    await page.waitForFunction(() => document.querySelectorAll("#runs tr").length === 3);
    for (const id of mine) await page.waitForSelector(`#runs tr[data-run="${id}"]`);
    for (const [action, verb, done, status] of [["pause", "Pause", "Paused", "paused"], ["resume", "Resume", "Resumed", "waiting"]]) {
      await page.click(`#bulk-${action}`);
      await page.waitForSelector("#bulk-confirm:not([hidden])");
      const q = await page.locator("#bulk-question").textContent();
      assert(q === `${verb} 3 of the 3 matching runs?`, `the confirmation says: ${q}`);
      await page.click("#bulk-yes");
      await page.waitForFunction((t) => document.getElementById("bulk-notice").textContent === t, `${done} 3 of 3 matching runs.`);
      for (const id of mine) await page.waitForSelector(`#runs tr[data-run="${id}"][data-status="${status}"]`);
    }
    await page.click("#bulk-cancel");
    await page.waitForSelector("#bulk-confirm:not([hidden])");
    const question = await page.locator("#bulk-question").textContent();
    assert(question === "Cancel 3 of the 3 matching runs?", `the confirmation says: ${question}`);
    await page.screenshot({ path: path.join(SHOTS, "dashboard-bulk.png"), fullPage: true });
    await page.click("#bulk-yes");
    await page.waitForFunction(() => document.getElementById("bulk-notice").textContent === "Cancelled 3 of 3 matching runs.");
    for (const id of mine) await page.waitForSelector(`#runs tr[data-run="${id}"][data-status="cancelled"]`);
    assert((await http("GET", `/runs/${other}`)).json.status !== "cancelled", "the run of another tag was cancelled");
    await http("POST", `/runs/${other}/cancel`);
  });

  await check("keyboard: steps are reachable and open with Enter", async () => {
    const id = (await http("GET", "/runs?limit=1&status=completed")).json[0].id;
    await page.goto(`${BASE}/ui/run.html?id=${id}`);
    await page.waitForSelector(".node.completed");
    await page.locator(".node").first().focus();
    await page.keyboard.press("Enter");
    await page.waitForSelector("#step dl");
  });

  await check("approval: approve a waiting step from the run page", async () => {
    const reg = await http("POST", "/workflows", {
      name: "needs-approval", steps: [
        { id: "prepare", type: "task", config: { duration_seconds: 0.2 } },
        { id: "sign-off", type: "approval", config: { prompt: "Ship it?" }, depends_on: ["prepare"] },
        { id: "ship", type: "task", config: { duration_seconds: 0.2 }, depends_on: ["sign-off"] }],
    });
    assert(reg.status === 201 || reg.status === 200, `register: ${reg.status}`);
    const run = (await http("POST", `/workflows/${reg.json.id}/runs`, {})).json;
    await page.goto(`${BASE}/ui/run.html?id=${run.id}`);
    await page.evaluate(() => { window.__noReload = true; });
    await page.waitForSelector('.node.waiting[data-step="sign-off"]');
    await page.locator('.node[data-step="sign-off"]').click();
    /* What a hurried user does: the optional name and comment left blank. */
    await page.fill("#approve-by", "");
    assert(await page.inputValue("#approve-comment") === "", "the comment starts blank");
    await page.screenshot({ path: path.join(SHOTS, "run-waiting-approval.png"), fullPage: true });
    await page.click("#approve");
    await page.waitForSelector("#run-status .badge.completed");
    assert(await page.evaluate(() => window.__noReload === true), "the page was reloaded");
    await page.waitForSelector("#history .type.approval_decided");
    const done = (await http("GET", `/runs/${run.id}`)).json;
    const out = done.steps.find((st) => st.step_id === "sign-off").output;
    assert(out.approved === true && out.by === "web" && out.comment === null,
      `decision stored: ${JSON.stringify(out)}`);
  });

  await check("concurrency: a held run says why it is not running, on its page and the dashboard", async () => {
    const reg = await http("POST", "/workflows", {
      name: "one-per-customer", concurrency: { key: ".input.customer_id", limit: 1 },
      steps: [{ id: "sign-off", type: "approval" }],
    });
    assert(reg.status === 201 || reg.status === 200, `register: ${reg.status}`);
    const start = async () => (await http("POST", `/workflows/${reg.json.id}/runs`,
      { input: { customer_id: "customer-7" } })).json;
    const first = await start();
    const held = await start();
    const why = "waiting for concurrency key customer-7, 1 of 1 in use";
    await page.goto(`${BASE}/ui/run.html?id=${held.id}`);
    await page.evaluate(() => { window.__noReload = true; });
    await page.waitForSelector("#run-status .badge.pending");
    await page.waitForFunction((w) => {
      const el = document.getElementById("held");
      return el && !el.hidden && el.textContent.includes(w);
    }, why);
    await page.screenshot({ path: path.join(SHOTS, "run-held-concurrency.png"), fullPage: true });
    /* The run ahead of it finishes: the explanation goes, its step waits for approval. */
    const ok = await http("POST", `/runs/${first.id}/steps/sign-off/approve`, {});
    assert(ok.status === 200, `approve: ${ok.status}`);
    await page.waitForSelector('.node.waiting[data-step="sign-off"]');
    await page.waitForFunction(() => document.getElementById("held").hidden);
    assert(await page.evaluate(() => window.__noReload === true), "the page was reloaded");
    /* The dashboard says it of a held run too. */
    const third = await start();
    await page.goto(`${BASE}/`);
    await page.waitForFunction(([id, w]) => {
      const row = document.querySelector(`#runs tr[data-run="${id}"] .held-why`);
      return row && row.textContent === w;
    }, [third.id, why]);
    await page.screenshot({ path: path.join(SHOTS, "dashboard-held.png"), fullPage: true });
    for (const r of [held, third]) {
      await page.waitForFunction(async (id) => (await (await fetch(`/runs/${id}`)).json()).status === "waiting", r.id);
      await http("POST", `/runs/${r.id}/steps/sign-off/approve`, {});
    }
  });

  await check("rate limit: a step waiting for its place says so in the step panel", async () => {
    const reg = await http("POST", "/workflows", {
      name: "rated-ui", steps: [{ id: "call", type: "task", rate_limit: { per_second: 0.5 },
        config: { duration_seconds: 0 } }],
    });
    assert(reg.status === 201 || reg.status === 200, `register: ${reg.status}`);
    const a = (await http("POST", `/workflows/${reg.json.id}/runs`, {})).json;
    const b = (await http("POST", `/workflows/${reg.json.id}/runs`, {})).json;
    await page.goto(`${BASE}/ui/run.html?id=${b.id}`);
    await page.locator('.node[data-step="call"]').click();
    await page.waitForFunction(() => {
      const el = document.getElementById("step-held");
      return el && el.textContent === "waiting for the rate limit of step call, 0.5 per second";
    });
    await page.screenshot({ path: path.join(SHOTS, "run-step-rate-limited.png"), fullPage: true });
    await page.waitForSelector("#run-status .badge.completed");
    assert(!(await page.locator("#step-held").count()), "the explanation stays after the start");
    assert((await http("GET", `/runs/${a.id}`)).json.status === "completed", "the first run");
  });

  await check("signal: send a waiting step its signal from the run page, payload left blank", async () => {
    const reg = await http("POST", "/workflows", {
      name: "needs-signal", steps: [
        { id: "prepare", type: "task", config: { duration_seconds: 0.2 } },
        { id: "paid", type: "wait_signal", config: { signal: "payment.received" }, depends_on: ["prepare"] },
        { id: "ship", type: "task", config: { duration_seconds: 0.2 }, depends_on: ["paid"] }],
    });
    assert(reg.status === 201 || reg.status === 200, `register: ${reg.status}`);
    const run = (await http("POST", `/workflows/${reg.json.id}/runs`, {})).json;
    await page.goto(`${BASE}/ui/run.html?id=${run.id}`);
    await page.evaluate(() => { window.__noReload = true; });
    await page.waitForSelector('.node.waiting[data-step="paid"]');
    await page.locator('.node[data-step="paid"]').click();
    const said = await page.textContent("#signal-waiting");
    assert(said === "waiting for signal payment.received", `the step says what it waits for: ${said}`);
    /* What a hurried user does: the payload left blank. */
    assert(await page.inputValue("#signal-payload") === "", "the payload starts blank");
    await page.screenshot({ path: path.join(SHOTS, "run-waiting-signal.png"), fullPage: true });
    await page.click("#send-signal");
    await page.waitForSelector("#run-status .badge.completed");
    assert(await page.evaluate(() => window.__noReload === true), "the page was reloaded");
    await page.waitForSelector("#history .type.signal_received");
    const done = (await http("GET", `/runs/${run.id}`)).json;
    const paid = done.steps.find((st) => st.step_id === "paid");
    assert(paid.status === "completed" && paid.output === null,
      `the blank payload is null: ${JSON.stringify(paid)}`);
  });

  await check("dashboard: start with a typed input, a blank one, and refuse an invalid one", async () => {
    const reg = await http("POST", "/workflows", {
      name: "echo-input", input: { greeting: "hello", n: 1 },
      steps: [{ id: "echo", type: "transform", config: { expression: ".input" } }],
    });
    assert(reg.status === 201 || reg.status === 200, `register: ${reg.status}`);
    const echoed = async () => {
      await page.waitForURL(/\/ui\/run\.html\?id=/);
      await page.waitForSelector("#run-status .badge.completed");
      await page.locator(".node[data-step=echo]").click();
      await page.waitForSelector("#step pre.json");
      const id = new URL(page.url()).searchParams.get("id");
      return { id, shown: await page.locator("#step").textContent(), run: (await http("GET", `/runs/${id}`)).json };
    };
    const open = async () => {
      await page.goto(`${BASE}/`);
      await page.waitForSelector("#workflow option", { state: "attached" });
      await page.selectOption("#workflow", await optionFor(page, "echo-input"));
      await page.waitForFunction(() => document.getElementById("definition").value.includes("echo-input"));
    };
    await open();
    const prefilled = JSON.parse(await page.inputValue("#input"));
    assert(prefilled.greeting === "hello" && prefilled.n === 1, `pre-filled with ${JSON.stringify(prefilled)}`);
    // a typed input, over the defaults, seen on the run page
    await page.fill("#input", '{"n": 42, "who": "browser"}');
    await page.click("#start");
    let r = await echoed();
    assert(/"who": "browser"/.test(r.shown) && /"n": 42/.test(r.shown) && /"greeting": "hello"/.test(r.shown),
      `the run page shows ${r.shown}`);
    assert(r.run.input.n === 42 && r.run.input.greeting === "hello", `run input ${JSON.stringify(r.run.input)}`);
    // remembered for the workflow
    await open();
    assert(JSON.parse(await page.inputValue("#input")).who === "browser", "the typed input was not remembered");
    // invalid JSON: a clear message, nothing sent
    const runsBefore = (await http("GET", "/runs?limit=1")).headers.get("x-total-count");
    const ordersBefore = (await http("GET", "/orders?limit=1")).headers.get("x-total-count");
    await page.fill("#input", '{"n": 42,');
    await page.click("#start-order");
    await page.waitForSelector("#input-error:not(:empty)");
    assert(/not valid JSON/.test(await page.textContent("#input-error")), "no clear message for invalid JSON");
    await page.fill("#input", "[1, 2]");
    await page.click("#start");
    await page.waitForFunction(() => /JSON object/.test(document.getElementById("input-error").textContent));
    // the server's refusal is shown too (a repeated key, which JSON.parse forgives)
    expected4xx.on = true;
    await page.fill("#input", '{"n": 1, "n": 2}');
    await page.click("#start");
    await page.waitForFunction(() => /Refused: .*duplicate/i.test(document.getElementById("input-error").textContent));
    expected4xx.on = false;
    await page.screenshot({ path: path.join(SHOTS, "dashboard-input-error.png"), fullPage: true });
    assert(page.url() === `${BASE}/`, "an invalid input started a run");
    assert((await http("GET", "/runs?limit=1")).headers.get("x-total-count") === runsBefore, "an invalid input was sent");
    assert((await http("GET", "/orders?limit=1")).headers.get("x-total-count") === ordersBefore, "an invalid input created an order");
    // blank: the definition's defaults
    await page.fill("#input", "");
    await page.click("#start");
    r = await echoed();
    assert(JSON.stringify(r.run.input) === JSON.stringify({ greeting: "hello", n: 1 }), `blank input gave ${JSON.stringify(r.run.input)}`);
  });

  await check("run page: a graph of 200 steps stays readable", async () => {
    const steps = [];
    for (let layer = 0; layer < 20; layer++) {
      for (let i = 0; i < 10; i++) {
        const deps = layer ? [`s${layer - 1}_${i}`, `s${layer - 1}_${(i + 3) % 10}`] : [];
        steps.push({ id: `s${layer}_${i}`, type: "task", config: { duration_seconds: 0.05 }, depends_on: deps });
      }
    }
    const reg = await http("POST", "/workflows", { name: "two-hundred", steps });
    assert(reg.status === 201, `register: ${reg.status}`);
    const run = (await http("POST", `/workflows/${reg.json.id}/runs`, {})).json;
    await page.goto(`${BASE}/ui/run.html?id=${run.id}`);
    await page.waitForSelector(".node.completed");
    assert(await page.locator(".node").count() === 200, "not 200 nodes");
    await page.screenshot({ path: path.join(SHOTS, "run-200-steps.png"), fullPage: false });
    await page.waitForSelector("#run-status .badge.completed", { timeout: 60000 });
    const done = await page.locator(".node.completed").count();
    assert(done === 200, `${done} of 200 nodes completed`);
  });

  await check("run page: a map step shows its items' progress on its node", async () => {
    const reg = await http("POST", "/workflows", {
      name: "map-progress", steps: [
        { id: "each", type: "map", config: {
          items: "[range(0; 10000)]", on_item_failure: "collect", max_concurrency: 8,
          step: { type: "transform", config: { expression: 'if .item % 1000 == 7 then error("bad item") else .item end' } } } },
        { id: "slow", type: "map", depends_on: ["each"], config: {
          items: ".steps.each.output.results", max_concurrency: 4,
          step: { type: "task", config: { duration_seconds: 0.01 } } } }],
    });
    assert(reg.status === 201, `register: ${reg.status} ${JSON.stringify(reg.json)}`);
    const run = (await http("POST", `/workflows/${reg.json.id}/runs`, {})).json;
    await page.goto(`${BASE}/ui/run.html?id=${run.id}`);
    const meta = (id) => page.locator(`.node[data-step=${id}] .meta`);
    await page.waitForSelector(".node[data-step=each].completed");
    await page.waitForFunction(() => document.querySelector(".node[data-step=each] .meta").textContent === "9,990 of 10,000 done, 10 failed");
    // The second map is still running: its node counts up.
    await page.waitForFunction(() => {
      const t = document.querySelector(".node[data-step=slow] .meta").textContent;
      const m = /^([\d,]+) of 10,000 done$/.exec(t);
      return m && Number(m[1].replace(/,/g, "")) > 0 && document.querySelector(".node[data-step=slow]").classList.contains("running");
    });
    const first = await meta("slow").textContent();
    await page.waitForFunction((t) => document.querySelector(".node[data-step=slow] .meta").textContent !== t, first);
    await page.locator(".node[data-step=slow]").click();
    await page.waitForFunction(() => /^[\d,]+ of 10,000 done, [1-4] running$/.test((document.getElementById("step-items") || {}).textContent || ""));
    await page.screenshot({ path: path.join(SHOTS, "run-map-progress.png"), fullPage: false });
    await page.click("#cancel");
    await page.waitForSelector("#run-status .badge.cancelled");
  });

  await check("run page at 1,400 x 900: every step of a wide graph can be reached", async () => {
    // 40 parallel steps with long ids between a fan-out and a chain of 12:
    // taller and wider than the card, so the graph must fit or scroll.
    const steps = [{ id: "start-the-very-long-fan-out", type: "task", config: { duration_seconds: 0 } }];
    const par = [];
    for (let i = 0; i < 40; i++) {
      const id = `fetch-customer-record-from-regional-warehouse-number-${String(i).padStart(2, "0")}`;
      par.push(id);
      steps.push({ id, type: "task", config: { duration_seconds: 0 }, depends_on: [steps[0].id] });
    }
    let prev = par;
    for (let i = 0; i < 12; i++) {
      const id = `aggregate-and-reconcile-stage-${i}-of-the-nightly-settlement-batch`;
      steps.push({ id, type: "task", config: { duration_seconds: 0 }, depends_on: prev });
      prev = [id];
    }
    const reg = await http("POST", "/workflows", { name: "wide-graph", steps });
    assert(reg.status === 201, `register: ${reg.status}`);
    const run = (await http("POST", `/workflows/${reg.json.id}/runs`, {})).json;
    await page.setViewportSize({ width: 1400, height: 900 });
    try {
      await page.goto(`${BASE}/ui/run.html?id=${run.id}`);
      await page.waitForSelector("#run-status .badge.completed");
      const ids = await page.$$eval(".node", (gs) => gs.map((g) => g.dataset.step));
      assert(ids.length === steps.length, `${ids.length} of ${steps.length} nodes drawn`);
      assert(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth),
        "the page itself scrolls sideways: the graph card overflows it");
      // A user reaches a node with the mouse wheel over the graph (a box
      // that clips without scrolling ignores it, though a script could
      // still scroll it), then sees it on screen, inside the graph's box.
      const unreachable = [];
      for (const id of ids) {
        const node = page.locator(`.node[data-step="${id}"]`);
        let seen = false;
        for (let tries = 0; tries < 8 && !seen; tries++) {
          const at = await node.evaluate((g) => {
            const wrap = document.getElementById("graph").getBoundingClientRect();
            const r = g.getBoundingClientRect();
            const x = r.left + r.width / 2, y = r.top + r.height / 2;
            const view = { left: Math.max(wrap.left, 0), top: Math.max(wrap.top, 0),
              right: Math.min(wrap.right, window.innerWidth), bottom: Math.min(wrap.bottom, window.innerHeight) };
            const inside = x >= view.left && x <= view.right && y >= view.top && y <= view.bottom;
            const hit = inside ? document.elementFromPoint(x, y) : null;
            return { ok: hit !== null && g.contains(hit), dx: x - (view.left + view.right) / 2,
              dy: y - (view.top + view.bottom) / 2, cx: (view.left + view.right) / 2, cy: (view.top + view.bottom) / 2 };
          });
          seen = at.ok;
          if (!seen) {
            await page.mouse.move(at.cx, at.cy);
            await page.mouse.wheel(at.dx, at.dy);
            await page.waitForTimeout(60);
          }
        }
        if (!seen) unreachable.push(id);
      }
      assert(!unreachable.length, `nodes that cannot be reached: ${unreachable.join(", ")}`);
      await page.locator(`.node[data-step="${ids[ids.length - 1]}"]`).click();
      await page.waitForSelector("#step .badge.completed");
      await page.screenshot({ path: path.join(SHOTS, "run-wide-1400.png"), fullPage: false });
    } finally {
      await page.setViewportSize({ width: 1440, height: 900 });
    }
  });

  await check("server restart: a banner while away, then the run page catches up", async () => {
    const order = (await http("POST", "/orders", { amount: 12.5 })).json;
    const run = (await http("POST", "/workflows/slow-order/runs", { order_id: order.id })).json;
    await page.goto(`${BASE}/ui/run.html?id=${run.id}`);
    await page.evaluate(() => { window.__noReload = true; });
    await page.waitForSelector('.node.running[data-step="validate"]');
    assert(!(await page.locator("#offline.show").count()), "banner shown while the server is up");
    serverDown = true;
    const listen = BASE.replace(/^http:\/\//, "");
    await stopServer();
    await page.waitForSelector("#offline.show");
    await page.screenshot({ path: path.join(SHOTS, "run-server-down.png"), fullPage: false });
    BASE = await startServer(listen);
    await page.waitForSelector("#offline:not(.show)", { state: "attached" });
    await page.waitForFunction(() => {
      const nodes = [...document.querySelectorAll(".node")];
      return nodes.length === 5 && nodes.every((g) => g.classList.contains("completed"));
    }, null, { timeout: 60000 });
    await page.waitForSelector('[data-order-status="shipped"]');
    assert(await page.evaluate(() => window.__noReload === true), "the page was reloaded");
    serverDown = false;
  });

  await check("run page: the Logs panel shows a failed run's error, filtered by level", async () => {
    const reg = await http("POST", "/workflows", {
      name: "logs-panel", steps: [
        { id: "hello", type: "log", config: { message: "hello from the log step", level: "info" } },
        { id: "boom", type: "task", depends_on: ["hello"], config: { duration_seconds: 0, fail_probability: 1 } }],
    });
    assert(reg.status === 201 || reg.status === 200, `register: ${reg.status}`);
    const run = (await http("POST", `/workflows/${reg.json.id}/runs`, {})).json;
    await page.goto(`${BASE}/ui/run.html?id=${run.id}`);
    await page.waitForSelector("#run-status .badge.failed");
    await page.selectOption("#log-level", "info");
    await page.waitForSelector('#logs li[data-level="error"]');
    const text = await page.locator("#logs").innerText();
    assert(text.includes("boom: failed for good"), `no error line of the step: ${text}`);
    assert(text.includes("hello: hello from the log step"), `no info line of the log step: ${text}`);
    await page.selectOption("#log-level", "error");
    await page.waitForFunction(() => {
      const lines = [...document.querySelectorAll("#logs li")];
      return lines.length > 0 && lines.every((li) => li.dataset.level === "error");
    });
    const shown = await page.locator("#logs li").count();
    assert(shown === 2, `filter to error: ${shown} lines (expected the step's and the run's failure)`);
    await page.screenshot({ path: path.join(SHOTS, "run-logs.png"), fullPage: true });
    await page.selectOption("#log-level", "info");
  });

  await check("behind --token: sign in, start and approve a run from the UI, sign out", async () => {
    const listen = BASE.replace(/^http:\/\//, "");
    await stopServer();
    TOKEN = "browser-s3cret";
    BASE = await startServer(listen, ["--token", TOKEN]);
    expected4xx.on = true;
    await page.goto(`${BASE}/`);
    await page.waitForURL(/\/ui\/signin\.html\?next=%2F$/);
    await page.fill("#token", "not-the-token");
    await page.click("#submit");
    await page.waitForFunction(() => /Wrong token/.test(document.getElementById("notice").textContent));
    await page.screenshot({ path: path.join(SHOTS, "signin-wrong-token.png"), fullPage: false });
    assert(expected4xx.seen >= 1, "the wrong token was not answered 401");
    expected4xx.on = false;
    await page.fill("#token", TOKEN);
    await page.click("#submit");
    await page.waitForURL(`${BASE}/`);
    await page.waitForSelector("#workflow option", { state: "attached" });
    const cookies = await page.context().cookies(BASE);
    const session = cookies.find((c) => c.name === "durable_session");
    assert(session && session.httpOnly && session.sameSite === "Strict" && session.value !== TOKEN,
      `session cookie: ${JSON.stringify(session)}`);
    await page.waitForSelector("#signout");
    // start a run that waits for a person, from the dashboard, and approve it
    await page.fill("#definition", JSON.stringify({
      name: "signed-in-approval", steps: [
        { id: "prepare", type: "task", config: { duration_seconds: 0.1 } },
        { id: "sign-off", type: "approval", config: { prompt: "Ship it?" }, depends_on: ["prepare"] }],
    }, null, 2));
    await page.click("#start");
    await page.waitForURL(/\/ui\/run\.html\?id=/);
    await page.waitForSelector('.node.waiting[data-step="sign-off"]'); // live, over the cookie
    await page.locator('.node[data-step="sign-off"]').click();
    await page.click("#approve");
    await page.waitForSelector("#run-status .badge.completed");
    await page.screenshot({ path: path.join(SHOTS, "signed-in-approved.png"), fullPage: false });
    // sign out: the pages ask for the token again
    await page.click("#signout");
    await page.waitForURL(/\/ui\/signin\.html/);
    expected4xx.on = true;
    await page.goto(`${BASE}/`);
    await page.waitForURL(/\/ui\/signin\.html\?next=/);
    expected4xx.on = false;
  });

  await check("no console errors or warnings", async () => {
    assert(consoleProblems.length === 0, consoleProblems.join("\n"));
  });

  await context.close();
}

async function optionFor(page, name) {
  return page.evaluate((n) => {
    const o = [...document.querySelectorAll("#workflow option")].find((x) => x.textContent.startsWith(`${n} `));
    return o ? o.value : "";
  }, name);
}

let code = 1;
try {
  await main();
  code = failures ? 1 : 0;
} catch (e) {
  log(`FAIL: ${e.stack || e}`);
}
if (server) {
  try {
    await Promise.race([stopServer(), new Promise((_, rej) => setTimeout(() => rej(new Error("the server did not stop in 20 s")), 20000))]);
  } catch (e) {
    log(`FAIL: ${e.message}`);
    code = 1;
    if (server) server.kill("SIGKILL");
  }
}
if (code) log(`server log:\n${serverLog.split("\n").slice(-60).join("\n")}`);
fs.rmSync(tmp, { recursive: true, force: true });
log(code ? `${failures || 1} check(s) failed` : `all checks passed in ${((Date.now() - t0) / 1000).toFixed(1)} s; screenshots in ${SHOTS}`);
process.exit(code);
