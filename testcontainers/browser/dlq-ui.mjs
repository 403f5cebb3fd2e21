// The dlq-reprocessor's web UI in headless Chromium (Debian's, driven by playwright-core): signs in,
// lists the dead letters, opens one, replays it through the confirmation, sees the list change, and
// reads an aggregate's event history. Prints what it saw as JSON for the Rust test to assert on.
//
//   node dlq-ui.mjs <ui url> <token> <key of a parked letter> <aggregate> <aggregate id>
import { chromium } from "playwright-core";

const [url, token, key, aggregate, id] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
});
const seen = {};
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(30000);
  const first = await page.goto(url);
  seen.unauthenticated_status = first.status();
  await page.fill("#token", "not-a-token-of-this-service");
  await page.click("button[type=submit]");
  await page.waitForSelector("#error:has-text('not accepted')");
  await page.fill("#token", token);
  await page.click("button[type=submit]");
  await page.waitForSelector("#rows tr.letter");
  await page.waitForSelector("#counts .count");
  seen.counts = await page.textContent("#counts");
  seen.who = await page.textContent("#who");
  const row = page.locator(`#rows tr.letter[data-key="${key}"]`).first();
  const letterId = await row.getAttribute("data-id");
  seen.letter_id = letterId;
  await row.click();
  await page.waitForSelector("#detail:not(.hidden)");
  await page.waitForFunction(() => document.querySelector("#payload").textContent.length > 0);
  seen.payload = await page.textContent("#payload");
  seen.payload_note = await page.textContent("#payload-note");
  seen.headers = await page.textContent("#headers");
  // A dry run changes nothing; then the replay, confirmed.
  await page.click("#dry-run");
  await page.waitForSelector("#message:has-text('would replay')");
  seen.dry_run = await page.textContent("#message");
  page.once("dialog", (d) => { seen.dialog = d.message(); d.accept(); });
  await page.click("#replay");
  await page.waitForSelector("#message:has-text('replayed')");
  seen.replayed = await page.textContent("#message");
  // The list (parked ones) no longer has it.
  await page.waitForFunction((lid) => !document.querySelector(`#rows tr.letter[data-id="${lid}"]`), letterId);
  seen.row_gone = true;
  seen.detail_state = await page.textContent("#detail-fields");
  // Another of the key's letters: a discard cancelled at the confirmation changes nothing; confirmed,
  // the letter leaves the list.
  const other = page.locator(`#rows tr.letter[data-key="${key}"]`).first();
  const otherId = await other.getAttribute("data-id");
  await other.click();
  await page.waitForFunction((lid) => document.querySelector("#detail-title").textContent === lid, otherId);
  page.once("dialog", (d) => d.dismiss());
  await page.click("#discard");
  await page.waitForTimeout(500);
  seen.after_cancel = await page.$$eval(`#rows tr.letter[data-id="${otherId}"]`, (rows) => rows.length);
  page.once("dialog", (d) => { seen.discard_dialog = d.message(); d.accept(); });
  await page.click("#discard");
  await page.waitForSelector("#message:has-text('discarded')");
  await page.waitForFunction((lid) => !document.querySelector(`#rows tr.letter[data-id="${lid}"]`), otherId);
  seen.discarded_id = otherId;
  await page.click("#tab-history");
  await page.fill("#history-form input[name=aggregate]", aggregate);
  await page.fill("#history-form input[name=id]", id);
  await page.click("#history-form button[type=submit]");
  await page.waitForSelector("#events tr.event");
  seen.versions = await page.$$eval("#events tr.event", (trs) => trs.map((tr) => tr.children[0].textContent));
  seen.types = await page.$$eval("#events tr.event", (trs) => trs.map((tr) => tr.children[1].textContent));
} catch (e) {
  seen.error = String(e && e.stack || e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(seen));
process.exit(seen.error ? 1 : 0);
