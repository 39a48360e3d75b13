// The agent desktop in a real browser (Debian's chromium via playwright-core) against a real
// `switchboard dev` started by run.sh. Controls are found by role and accessible name only.
// Nothing here asserts a wall-clock time; waits are for things to appear, with generous limits.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { chromium } from "playwright-core";

const GW = process.env.SB_GATEWAY;           // http://127.0.0.1:PORT
const BIN = process.env.SB_BIN;              // the switchboard binary
const OUT = process.env.SB_OUT;              // screenshots
const WEBHOOK = `${GW}/webhooks/whatsapp`;
const API = `${GW}/api/v1`;
mkdirSync(OUT, { recursive: true });

const token = (sub, name, role) =>
  execFileSync(BIN, ["token", "--sub", sub, "--name", name, "--role", role], { encoding: "utf8" }).trim();
const SUP = token("sup", "Sam Super", "supervisor");
const ALICE = token("alice", "Alice Smith", "agent");
const BOB = token("bob", "Bob Brown", "agent");

async function call(tok, method, path, body) {
  const r = await fetch(API + path, {
    method, headers: { authorization: `Bearer ${tok}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${await r.text()}`);
  return r.status === 204 ? null : r.json();
}
const customer = (name, phone, to, text) =>
  execFileSync(BIN, ["simulate", "customer", "--name", name, "--phone", phone, "--to", to, "--webhook-url", WEBHOOK, text], { encoding: "utf8" });

let browser;
const pages = {};
const T = { timeout: 20_000 };
async function desk(name, tok) {
  const ctx = await browser.newContext({ viewport: { width: 1366, height: 768 } });
  const page = await ctx.newPage();
  await page.goto(`${GW}/#token=${encodeURIComponent(tok)}`);
  return page;
}
const shot = (page, name) => page.screenshot({ path: `${OUT}/${name}.png` });

before(async () => {
  await call(SUP, "PUT", "/queues/support", { name: "Support", offerTimeoutSecs: 60 });
  await call(SUP, "PUT", "/queues/quick", { name: "Quick", offerTimeoutSecs: 5 });
  await call(SUP, "PUT", "/entry-points/15550001111", { queueId: "support" });
  await call(SUP, "PUT", "/entry-points/15550002222", { queueId: "quick" });
  await call(SUP, "PUT", "/agents/alice", { name: "Alice Smith" });
  await call(SUP, "PUT", "/agents/bob", { name: "Bob Brown" });
  await call(SUP, "PUT", "/wrapup-reasons/resolved", { label: "Resolved" });
  await call(SUP, "PUT", "/wrapup-reasons/callback", { label: "Call back" });
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  pages.alice = await desk("alice", ALICE);
  pages.bob = await desk("bob", BOB);
  pages.sup = await desk("sup", SUP);
});
after(async () => { if (browser) await browser.close(); });

test("accept, chat, transfer to a colleague, end and wrap up", async () => {
  const { alice, bob } = pages;
  await alice.getByRole("combobox", { name: "State" }).selectOption("Available");
  customer("Maria Lopez", "15551234567", "15550001111", "Hello, my order is late");

  const offer = alice.getByRole("group", { name: /Chat request from Maria Lopez/ });
  await offer.waitFor(T);
  const text = await offer.innerText();
  for (const label of ["Customer Name", "Customer Phone Number", "Source Number", "Queue Name"]) assert.match(text, new RegExp(label));
  assert.match(text, /15551234567/);
  await assert.doesNotReject(offer.getByRole("button", { name: "Accept" }).waitFor(T));
  await shot(alice, "01-offer-popover");
  await offer.getByRole("button", { name: "Accept" }).click();

  await alice.getByText("Hello, my order is late", { exact: true }).waitFor(T);
  const box = alice.getByRole("textbox", { name: "Message" });
  await box.fill("Sorry to hear that,");
  await box.press("Shift+Enter");
  await box.pressSequentially("let me check.");
  assert.equal(await box.inputValue(), "Sorry to hear that,\nlet me check.");
  await box.press("Enter");
  await alice.getByText(/let me check\./).waitFor(T);
  assert.equal(await box.inputValue(), "", "Enter sends and clears the compose box");
  // The sandbox posts sent / delivered / read back: a tick with a word appears.
  try { await alice.getByText(/✓✓ (Delivered|Read)/).first().waitFor(T); }
  catch (e) { await shot(alice, "failed-ticks"); console.error("transcript:", await alice.locator("body").innerText()); throw e; }
  customer("Maria Lopez", "15551234567", "15550001111", "Order 4711");
  await alice.getByText("Order 4711", { exact: true }).waitFor(T);
  await shot(alice, "02-chat");

  // Transfer to Bob.
  await bob.getByRole("combobox", { name: "State" }).selectOption("Available");
  await alice.getByRole("button", { name: "Refresh" }).click();
  await alice.getByRole("button", { name: "Transfer to Bob Brown" }).click({ timeout: 20_000 });
  const bobOffer = bob.getByRole("group", { name: /Transfer request from Maria Lopez/ });
  await bobOffer.waitFor(T);
  await shot(bob, "03-transfer-offer");
  await bobOffer.getByRole("button", { name: "Accept" }).click();
  await bob.getByText(/let me check\./).waitFor(T);
  await bob.getByRole("textbox", { name: "Message" }).fill("Hi Maria, Bob here.");
  await bob.getByRole("textbox", { name: "Message" }).press("Enter");
  await bob.getByText("Hi Maria, Bob here.", { exact: true }).waitFor(T);
  await shot(bob, "04-after-transfer");

  // End and wrap up: no reason preselected; Submit Wrap Up records the chosen one.
  await bob.getByRole("button", { name: "End", exact: true }).click();
  const reason = bob.getByRole("combobox", { name: "Wrap Up Reason" }).first();
  await reason.waitFor(T);
  assert.equal(await reason.inputValue(), "", "no reason is preselected");
  await shot(bob, "05-wrap-up");
  await reason.selectOption("resolved");
  await bob.getByRole("button", { name: "Submit Wrap Up" }).first().click();
  const owed = await call(BOB, "GET", "/me/wrapups");
  for (let i = 0; i < 50 && (await call(BOB, "GET", "/me/wrapups")).length > 0; i++) await bob.waitForTimeout(200);
  assert.equal((await call(BOB, "GET", "/me/wrapups")).length, 0, `wrap-up submitted (was ${JSON.stringify(owed)})`);
});

test("RONA is shown as RONA with one action back to Available", async () => {
  const { alice, bob } = pages;
  await bob.getByRole("combobox", { name: "State" }).selectOption("Idle:break");
  // Alice may still owe a wrap-up from the transfer; submit it if so.
  if ((await call(ALICE, "GET", "/me/wrapups")).length > 0) {
    await alice.getByRole("combobox", { name: "Wrap Up Reason" }).first().selectOption("resolved");
    await alice.getByRole("button", { name: "Submit Wrap Up" }).first().click();
  }
  await alice.getByRole("combobox", { name: "State" }).selectOption("Available");
  customer("Ken Ito", "15557654321", "15550002222", "Anyone there?");
  await alice.getByRole("group", { name: /Chat request from Ken Ito/ }).waitFor(T);
  // Not accepted: the queue's 5 s offer timeout expires and the agent goes RONA.
  await alice.getByRole("status").filter({ hasText: "RONA" }).waitFor({ timeout: 30_000 });
  await shot(alice, "06-rona");
  await alice.getByRole("button", { name: "Available", exact: true }).click();
  await alice.getByRole("status").filter({ hasText: "RONA" }).waitFor({ state: "hidden", timeout: 20_000 });
  assert.equal((await call(ALICE, "GET", "/me")).presence.state, "Available");
});

test("supervisor screen", async () => {
  const { sup } = pages;
  await sup.reload();
  await sup.getByRole("button", { name: "Refresh" }).first().waitFor(T);
  await shot(sup, "07-supervisor");
  await sup.setViewportSize({ width: 1920, height: 1080 });
  await shot(sup, "08-supervisor-1920");
});
