// Drives Debian's chromium (headless, loopback only) through the console for
// tests/it/console.rs, with playwright-core. Input (environment): BASE (the API's URL),
// TOKEN, SHOTS (a directory for screenshots), DEPLOY (a shell command that deploys once
// more), MESSAGE (the first deploy's hostile commit message), SECOND (the second
// deploy's commit message). Prints one JSON object of facts; the Rust test asserts them.
"use strict";
const { chromium } = require("playwright-core");
const { execSync } = require("node:child_process");

const { BASE, TOKEN, SHOTS, DEPLOY, MESSAGE, SECOND } = process.env;
const facts = { dialogs: 0, errors: [] };

async function shoot(page, name) {
  for (const [label, size] of [["desktop", { width: 1280, height: 900 }], ["phone", { width: 390, height: 844 }]]) {
    await page.setViewportSize(size);
    await page.screenshot({ path: `${SHOTS}/${name}-${label}.png`, fullPage: true });
  }
  await page.setViewportSize({ width: 1280, height: 900 });
}

(async () => {
  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu"],
  });
  try {
    // 1. Without the token: the login page, nothing of the deploy.
    const anon = await browser.newContext();
    const a = await anon.newPage();
    await a.goto(`${BASE}/`);
    facts.anon_url = new URL(a.url()).pathname;
    facts.anon_shows_deploy = (await a.content()).includes("First deploy");
    await shoot(a, "login");
    await anon.close();

    // 2. The login form, then the overview.
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    page.on("dialog", async (d) => { facts.dialogs += 1; await d.dismiss(); });
    page.on("pageerror", (e) => facts.errors.push(String(e)));
    await page.goto(`${BASE}/ui/login`);
    await page.fill("input[name=token]", TOKEN);
    await Promise.all([page.waitForNavigation(), page.click("button[type=submit]")]);
    facts.after_login = new URL(page.url()).pathname;
    const message = page.locator("td.message").first();
    facts.message_text = await message.textContent();
    facts.images_in_messages = await page.locator("td.message img").count();
    facts.scripts = await page.locator("script").count();
    facts.flaky_failures = (await page.locator("tr:has(a:text-is('flaky')) td").nth(2).textContent()).trim();
    await page.waitForSelector("#live:not([hidden])", { timeout: 10000 });
    await shoot(page, "overview");

    // 3. Live: a deploy while the page is open appears without a reload.
    await page.evaluate(() => { window.__same_page = true; });
    const before = Date.now();
    execSync(DEPLOY, { stdio: "inherit" });
    await page.waitForFunction((m) => document.body.textContent.includes(m), SECOND, { timeout: 15000 });
    facts.live_ms = Date.now() - before;
    facts.live_without_reload = await page.evaluate(() => window.__same_page === true);

    // 3b. One deployment: its transitions, commits and deliveries (once it has ended:
    // its message shows from its first transition on).
    for (let i = 0; i < 150; i++) {
        await page.goto(`${BASE}/`);
        const first = await page.locator("table.deployments tbody tr").first().textContent();
        if (first.includes("success")) break;
        await page.waitForTimeout(100);
    }
    await Promise.all([page.waitForNavigation(), page.click("table.deployments tbody a.mono")]);
    facts.deployment_transitions = await page.locator("ol.transitions li").count();
    facts.deployment_last_transition = (await page.locator("ol.transitions li").last().textContent()) || "";
    facts.deployment_commits = await page.locator("ul.commits li").count();
    facts.deployment_deliveries = await page.locator("tbody tr a.mono").count();
    await shoot(page, "deployment");

    // 3d. Delivery performance: the DORA page, from the nav.
    await Promise.all([page.waitForNavigation(), page.click("nav a:has-text('DORA')")]);
    facts.dora_rows = await page.locator("table.dora tbody tr").count();
    facts.dora_first_row = (await page.locator("table.dora tbody tr").first().textContent()) || "";
    await shoot(page, "dora");

    // 3c. Send a ping to hook "ops" from the overview.
    await page.goto(`${BASE}/`);
    await Promise.all([page.waitForNavigation(), page.click("form[action='/ui/hooks/ops/ping'] button")]);
    facts.after_ping = new URL(page.url()).pathname + new URL(page.url()).search;

    // 4. The delivery log, one delivery, redeliver.
    await page.goto(`${BASE}/ui/deliveries?hook=ops`);
    facts.log_rows = await page.locator("tbody tr").count();
    await shoot(page, "deliveries");
    await page.click("tbody tr:has-text('PostDeployment') a.mono");
    facts.detail_has_body = (await page.locator("pre.body").first().textContent()).includes("\"status\"");
    await shoot(page, "delivery");
    await Promise.all([page.waitForNavigation(), page.click("button:has-text('Redeliver')")]);
    facts.after_redeliver = new URL(page.url()).pathname;

    // 5. Retry every dead delivery of hook "flaky", with the count and a confirmation.
    await page.goto(`${BASE}/ui/deliveries?hook=flaky&outcome=dead`);
    facts.dead_rows = await page.locator("tbody tr").count();
    await Promise.all([page.waitForNavigation(), page.click("a:has-text('Retry every failure')")]);
    facts.confirm_text = await page.locator("main p").first().textContent();
    await shoot(page, "retry");
    await Promise.all([page.waitForNavigation(), page.click("button:has-text('Retry')")]);
    facts.after_retry = new URL(page.url()).search;
    await ctx.close();

    // 6. JavaScript off, the token as a header: the read views still show the deploy.
    const nojs = await browser.newContext({
      javaScriptEnabled: false,
      extraHTTPHeaders: { Authorization: `Bearer ${TOKEN}` },
    });
    const p = await nojs.newPage();
    await p.goto(`${BASE}/`);
    facts.nojs_shows_deploy = (await p.content()).includes(SECOND);
    await nojs.close();
  } catch (e) {
    facts.errors.push(String(e && e.stack || e));
  } finally {
    await browser.close();
  }
  facts.message_expected = MESSAGE;
  console.log(JSON.stringify(facts));
})();
