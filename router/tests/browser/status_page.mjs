// Opens gosd-router's status page in headless Chromium, waits until the
// instance INSTANCE is shown, prints SHOWN, waits for a line on stdin (the
// test has stopped that instance), waits until the page shows it gone —
// without a reload — takes a screenshot and prints GONE. The page must follow
// the router's live feed (/-/events) and never poll /-/services.
//
//   INSTANCE=provider-… node status_page.mjs http://127.0.0.1:8000/-/ shot.png
import { chromium } from "playwright-core";

const [url, shot] = process.argv.slice(2);
const name = process.env.INSTANCE;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 640 } });
  const asked = [];
  page.on("request", (request) => asked.push(new URL(request.url()).pathname));
  await page.goto(url);
  const row = `[data-instance="${name}"]`;
  await page.waitForSelector(row, { timeout: 20000 });
  // Survives only if the page is never reloaded.
  await page.evaluate(() => { window.gosdSameDocument = true; });
  console.log("SHOWN");
  await new Promise((resolve) => process.stdin.once("data", resolve));
  await page.waitForSelector(row, { state: "detached", timeout: 20000 });
  const same = await page.evaluate(() => window.gosdSameDocument === true);
  if (!same) throw new Error("the page was reloaded");
  if (!asked.includes("/-/events")) throw new Error(`the page never opened /-/events: ${asked}`);
  if (asked.includes("/-/services")) throw new Error(`the page polled /-/services: ${asked}`);
  await page.screenshot({ path: shot, fullPage: true });
  console.log("GONE");
} finally {
  await browser.close();
}
