// Drives the monitor of `highwater serve` in headless Chromium, as a user
// would: open the run list, click through to a failed pipeline run, press
// "Rerun from failed", and wait on the new run's page until it succeeds.
//
// usage: node monitor_browser.mjs BASE_URL FAILED_RUN_ID
// env:   HIGHWATER_TEST_CHROMIUM (default /usr/bin/chromium); NODE_PATH
//        must reach playwright-core (.ci/run installs it).
// Prints the new run's id on the last line of stdout; exits 1 on failure.

import { createRequire } from "node:module";
import path from "node:path";

const require = createRequire(path.join(process.cwd(), "noop.js"));
const { chromium } = require("playwright-core");

const [base, failed] = process.argv.slice(2);
const fail = (msg) => {
  console.error("browser test: " + msg);
  process.exit(1);
};

const browser = await chromium.launch({
  executablePath: process.env.HIGHWATER_TEST_CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox"],
  timeout: 60000,
});
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(30000);
  const problems = [];
  // A hostile activity name that ran as script would open a dialog.
  page.on("dialog", (d) => {
    problems.push("dialog: " + d.message());
    d.dismiss();
  });
  page.on("pageerror", (e) => problems.push("page error: " + e.message));
  page.on("console", (m) => {
    if (m.type() === "error") problems.push("console error: " + m.text());
  });
  page.on("response", (r) => {
    if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.url()}`);
  });
  page.on("request", (r) => {
    if (!r.url().startsWith(base)) problems.push("request off the server: " + r.url());
  });

  await page.goto(base + "/");
  await page.locator("table#runs").waitFor();
  await page.click(`a[href="/runs/${failed}"]`);
  await page.waitForURL(`**/runs/${failed}`);
  const heading = await page.locator("h2").first().innerText();
  if (!heading.includes("Nightly<b>")) fail("the run page's heading: " + heading);
  const names = await page.locator("table#activities td:first-child").allInnerTexts();
  if (!names.includes("<script>alert(1)</script>")) fail("activities shown: " + names.join(" | "));

  await page.click("button:has-text('Rerun from failed')");
  await page.waitForURL((u) => u.pathname.startsWith("/runs/") && !u.pathname.endsWith(failed));
  const newId = new URL(page.url()).pathname.split("/").pop();
  // The page refreshes itself every 5 s while the box is ticked.
  await page.locator("h2 span.Succeeded").waitFor({ timeout: 60000 });
  const rerunOf = await page.locator(`a[href="/runs/${failed}"]`).count();
  if (rerunOf < 1) fail("the new run does not link the run it reruns");
  if (problems.length) fail(problems.join("\n"));
  console.log(newId);
} finally {
  await browser.close();
}
