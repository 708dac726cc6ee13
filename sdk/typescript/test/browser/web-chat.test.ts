/**
 * The browser chat (examples/web-chat) in a real headless Chromium (issue
 * #19 item 4): Debian's `/usr/bin/chromium` driven by puppeteer-core (no
 * browser is downloaded), the real gateway binary serving the page from
 * its admin listener (`[admin] static_dir`, demo tokens on) and the SDK's
 * native protocol over its WebSocket listener over TLS (`wss://`,
 * `[tls] ws_listen`, a certificate minted for the run that Chromium
 * trusts by its key: `--ignore-certificate-errors-spki-list`).
 *
 * Checked through what the pages show (each line carries its sender,
 * addressee, sequence and client_msg_id): two users exchange messages with
 * identity and order; a page reloads in the middle of an incoming stream
 * and in the middle of its own sends and ends with every message exactly
 * once; a room page gets live messages; an offline user catches up. A
 * screenshot goes to target/web-chat-screenshot.png.
 *
 * Needs `cargo build` (target/debug/surepush), `npm run build` (the SDK's
 * browser build in examples/web-chat/sdk), Chromium (`apt-get install
 * chromium`; `CHROMIUM=/path` for another one) and the openssl CLI.
 */

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { after, before, test } from "node:test";

import puppeteer, { type Browser, type Page } from "puppeteer-core";

import { gatewayForThisFile } from "../support/device.js";
import { REPO_ROOT } from "../support/gateway.js";
import { testCertificate } from "../support/tls.js";

const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const WEB_CHAT = join(REPO_ROOT, "examples", "web-chat");
const SCREENSHOT = join(REPO_ROOT, "target", "web-chat-screenshot.png");
/** Longest wait for what a page should show. */
const SHOWN_MS = 15_000;

const certificate = testCertificate();
const gateway = gatewayForThisFile({
  // The pages come from the admin listener: only that origin may connect.
  websocket: { onlyAdminOrigin: true },
  wss: certificate,
  tables: ["[admin]", `static_dir = ${JSON.stringify(WEB_CHAT)}`, 'static_path = "/web/"', "demo_tokens = true"].join("\n"),
});

let browser: Browser;
before(async () => {
  assert.ok(existsSync(CHROMIUM), `no Chromium at ${CHROMIUM}: apt-get install chromium (or set CHROMIUM)`);
  assert.ok(existsSync(join(WEB_CHAT, "sdk", "index.js")), "no SDK browser build: npm run build in sdk/typescript");
  browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    // Every page is a background tab but one: without these Chromium
    // throttles their timers (the SDK's keepalive and retries) and
    // animation frames.
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-dev-shm-usage",
      "--disable-background-timer-throttling",
      "--disable-renderer-backgrounding",
      "--disable-backgrounding-occluded-windows",
      // The gateway's test certificate, pinned by its key: no CA to
      // install, and any other certificate error still fails.
      `--ignore-certificate-errors-spki-list=${certificate.spki}`,
    ],
  });
});
after(async () => {
  await browser?.close();
});

/** One line of a page's list, as the page shows it. */
interface Line {
  readonly kind: string;
  readonly from?: string;
  readonly to?: string;
  readonly seq?: string;
  readonly clientMsgId?: string;
  readonly room?: string;
  readonly status?: string;
  readonly text: string;
}

/** Opens the chat as `user`; resolves once its client is live. */
async function openChat(user: number): Promise<Page> {
  const page = await browser.newPage();
  await page.setViewport({ width: 1100, height: 700 });
  page.on("pageerror", (e) => console.error(`[user ${user}] page error:`, e));
  await page.goto(chatUrl(user));
  await live(page);
  return page;
}

function chatUrl(user: number): string {
  return `${gateway().adminUrl}/web/?user=${user}&ws=${encodeURIComponent(gateway().wssUrl)}`;
}

async function live(page: Page): Promise<void> {
  await page.waitForSelector('#state[data-state="live"]', { timeout: SHOWN_MS });
}

async function lines(page: Page, list: "#messages" | "#room-messages"): Promise<Line[]> {
  return page.$$eval(`${list} li`, (items) =>
    items.map((li) => ({ ...(li as HTMLElement).dataset, text: li.querySelector(".text")?.textContent ?? "" }) as Line),
  );
}

/** Waits until `list` of `page` has at least `n` lines that `accept`. */
async function shown(page: Page, list: string, n: number, accept: string): Promise<void> {
  await page
    .waitForFunction(
      (list: string, n: number, accept: string) =>
        [...document.querySelectorAll(`${list} li`)].filter((li) => li.querySelector(".text")?.textContent?.startsWith(accept)).length >= n,
      { timeout: SHOWN_MS, polling: "mutation" },
      list,
      n,
      accept,
    )
    .catch(async (e: unknown) => {
      throw new Error(`${n} lines starting ${JSON.stringify(accept)} not shown in ${list}: ${JSON.stringify((await lines(page, list as "#messages")).slice(-12))} (the last 12)`, { cause: e });
    });
}

/**
 * Types into the page's fields and clicks `button`, as a person would.
 * The page is brought to the front first: Chromium runs no rendering
 * steps (so no clicks land) in a background tab.
 */
async function typeAndClick(page: Page, fields: Array<[string, string]>, button: string): Promise<void> {
  await page.bringToFront();
  for (const [selector, text] of fields) {
    await page.$eval(selector, (e) => ((e as HTMLInputElement).value = ""));
    await page.type(selector, text);
  }
  await page.click(button);
}

/** Sends each text to `to` through the page's compose form, in order. */
async function sendAll(page: Page, to: number, texts: string[], gapMs = 0): Promise<void> {
  await page.evaluate(
    async (to: number, texts: string[], gapMs: number) => {
      const form = document.querySelector<HTMLFormElement>("#compose")!;
      for (const t of texts) {
        document.querySelector<HTMLInputElement>("#to")!.value = String(to);
        document.querySelector<HTMLInputElement>("#text")!.value = t;
        form.requestSubmit();
        if (gapMs) await new Promise((r) => setTimeout(r, gapMs)); // a pace for the stream, not a wait for an outcome
      }
    },
    to,
    texts,
    gapMs,
  );
}

/** The `kind` lines of `got` that start with `prefix`: exactly `texts`, in order, each once, from `from` to `to`. */
function assertExactly(got: Line[], kind: string, prefix: string, texts: string[], from: number, to: number): void {
  const mine = got.filter((l) => l.kind === kind && l.text.startsWith(prefix));
  assert.deepEqual(
    mine.map((l) => l.text),
    texts,
    `${kind} lines ${prefix}*: each exactly once, in order`,
  );
  for (const l of mine) {
    assert.equal(l.from, String(from), `sender of ${l.text}`);
    assert.equal(l.to, String(to), `addressee of ${l.text}`);
    assert.ok(l.seq && l.clientMsgId, `${l.text} has a sequence and a client_msg_id`);
  }
  const seqs = mine.map((l) => BigInt(l.seq!));
  for (let i = 1; i < seqs.length; i++) assert.ok(seqs[i]! > seqs[i - 1]!, `sequences ascend at ${mine[i]!.text}`);
  assert.equal(new Set(mine.map((l) => l.clientMsgId)).size, mine.length, "client_msg_ids unique");
}

const range = (prefix: string, n: number): string[] => Array.from({ length: n }, (_, i) => `${prefix}${i}`);

test("web chat in Chromium: 1:1 with identity, reloads without loss or duplicates, a live room, an offline user catches up", async (t) => {
  const [ANN, BOB, CAT, DAN] = [1001, 1002, 1003, 1004];
  const ann = await openChat(ANN);
  const bob = await openChat(BOB);
  // Live over TLS: the pages know only the wss:// address.
  for (const page of [ann, bob]) assert.match(await page.$eval("#ws", (e) => (e as HTMLInputElement).value), /^wss:\/\/127\.0\.0\.1:\d+\/$/);

  // 1:1 both ways, typed into the page like a person would.
  for (const text of ["hi bob", "how are you?"]) {
    await typeAndClick(ann, [["#to", String(BOB)], ["#text", text]], "#send");
  }
  await shown(bob, "#messages", 1, "how are you?");
  await sendAll(bob, ANN, ["fine, thanks"]);
  await shown(ann, "#messages", 1, "fine, thanks");
  assertExactly(await lines(bob, "#messages"), "in", "h", ["hi bob", "how are you?"], ANN, BOB);
  assertExactly(await lines(ann, "#messages"), "out", "h", ["hi bob", "how are you?"], ANN, BOB);
  assertExactly(await lines(ann, "#messages"), "in", "fine", ["fine, thanks"], BOB, ANN);
  await ann.waitForFunction(() => [...document.querySelectorAll("#messages li.out")].every((li) => (li as HTMLElement).dataset.status === "stored"), {
    timeout: SHOWN_MS,
    polling: "mutation",
  });

  // Ann reloads while Bob's stream comes in: every message once, in order.
  const stream = range("stream-", 40);
  const streaming = sendAll(bob, ANN, stream, 15);
  await shown(ann, "#messages", 8, "stream-");
  const beforeReload = (await lines(ann, "#messages")).filter((l) => l.text.startsWith("stream-")).length;
  await ann.reload();
  await live(ann);
  await streaming;
  await shown(ann, "#messages", stream.length, "stream-");
  assertExactly(await lines(ann, "#messages"), "in", "stream-", stream, BOB, ANN);
  t.diagnostic(`stream of ${stream.length}: ann reloaded after ${beforeReload} had been shown`);

  // Ann queues sends while the gateway is down (kill -9), so none can be
  // acknowledged, and reloads: they wait in the SDK's outbox in IndexedDB
  // and go out once the gateway is back. Bob gets each exactly once, and
  // Ann's page shows them all stored.
  const queued = range("queued-", 10);
  await gateway().kill9();
  await sendAll(ann, BOB, queued);
  await shown(ann, "#messages", queued.length, "queued-");
  const unacked = (await lines(ann, "#messages")).filter((l) => l.text.startsWith("queued-") && l.status === "queued");
  assert.equal(unacked.length, queued.length, "every send is queued, none acknowledged");
  // The page's own server is down too: the reload shows an error page.
  await ann.reload().catch(() => undefined);
  await gateway().restart();
  await ann.goto(chatUrl(ANN));
  await live(ann);
  await shown(bob, "#messages", queued.length, "queued-");
  assertExactly(await lines(bob, "#messages"), "in", "queued-", queued, ANN, BOB);
  await ann.waitForFunction(() => [...document.querySelectorAll("#messages li.out")].every((li) => (li as HTMLElement).dataset.status === "stored"), {
    timeout: SHOWN_MS,
    polling: "mutation",
  });
  assertExactly(await lines(ann, "#messages"), "out", "queued-", queued, ANN, BOB);

  // A room: Cat follows room 7 and sees Ann's and the backend's messages live.
  const cat = await openChat(CAT);
  for (const page of [cat, ann]) {
    await typeAndClick(page, [["#room", "7"]], "#join-room");
    await page.waitForSelector('#room-messages[data-room="7"]');
  }
  await typeAndClick(ann, [["#room-text", "room: hello all"]], "#room-send");
  await shown(cat, "#room-messages", 1, "room: hello all");
  const published = await gateway().admin("POST", "/v1/publish", { room: 7, payload: "room: from the backend", from: 0 });
  assert.equal(published.status, 200);
  await shown(cat, "#room-messages", 1, "room: from the backend");
  const room = (await lines(cat, "#room-messages")).filter((l) => l.text.startsWith("room: "));
  assert.deepEqual(
    room.map((l) => [l.text, l.from, l.room]),
    [
      ["room: hello all", String(ANN), "7"],
      ["room: from the backend", "0", "7"],
    ],
  );
  assert.ok(BigInt(room[1]!.seq!) === BigInt(room[0]!.seq!) + 1n, "room sequences follow each other");
  await shown(ann, "#room-messages", 1, "room: from the backend");

  // Dan was never online: he gets what was sent while he was away.
  const away = range("while away ", 3);
  await sendAll(ann, DAN, away);
  await ann.waitForFunction(
    () => [...document.querySelectorAll("#messages li.out")].every((li) => (li as HTMLElement).dataset.status === "stored"),
    { timeout: SHOWN_MS, polling: "mutation" },
  );
  const dan = await openChat(DAN);
  await shown(dan, "#messages", away.length, "while away ");
  assertExactly(await lines(dan, "#messages"), "in", "while away ", away, ANN, DAN);

  await mkdir(join(REPO_ROOT, "target"), { recursive: true });
  await ann.screenshot({ path: SCREENSHOT as `${string}.png`, fullPage: true });
  t.diagnostic(`screenshot: ${SCREENSHOT}`);
});
