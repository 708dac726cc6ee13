/**
 * The browser chat: the surepush TypeScript SDK (built into ./sdk by
 * `npm run build` in sdk/typescript) over the gateway's WebSocket listener.
 *
 * - Who: the user id typed in (or `?user=`); the device id is picked once
 *   per browser and user and kept in localStorage. Tokens come from the
 *   gateway's demo endpoint (`POST /demo/token`, `[admin] demo_tokens`),
 *   asked for on every connection: a real app asks its own backend.
 * - Nothing is lost on reload: the SDK keeps its outbox, receive cursor and
 *   room positions in IndexedDB (`IndexedDbStore`), so a reload resumes
 *   after the last message delivered and sends what was still queued; the
 *   page keeps what it shows in localStorage (transcript.js), each message
 *   once by its sequence.
 * - `?user=` and `?ws=` in the URL connect at once; after Connect they are
 *   put there, so a reload reconnects as the same user.
 */

import { Client, IndexedDbStore, roomId, webSocketConnector } from "./sdk/index.js";
import { Transcript } from "./transcript.js";

const $ = (selector) => document.querySelector(selector);
const params = new URLSearchParams(location.search);
const utf8 = new TextDecoder();

/**
 * The WebSocket URL the gateway's example config listens on: `wss://` on
 * `[tls] ws_listen` for a page served over https (it may open no `ws://`).
 */
const DEFAULT_WS =
  location.protocol === "https:" ? `wss://${location.hostname}:7403/` : `ws://${location.hostname || "127.0.0.1"}:7402/`;
/** Where demo tokens come from (the admin listener serving this page). */
const TOKEN_URL = params.get("token_url") ?? "/demo/token";

$("#ws").value = params.get("ws") ?? localStorage.getItem("web-chat:ws") ?? DEFAULT_WS;
$("#user").value = params.get("user") ?? "";
$("#login").addEventListener("submit", (ev) => {
  ev.preventDefault();
  void start(BigInt($("#user").value), $("#ws").value);
});
if (params.get("user")) void start(BigInt(params.get("user")), $("#ws").value);

/** This browser's device id for `user` (1 ..= 2^31 - 1, picked once). */
function deviceFor(user) {
  const key = `web-chat:device:${user}`;
  let device = localStorage.getItem(key);
  if (!device) {
    device = String(1 + Math.floor(Math.random() * 0x7fff_fffe));
    localStorage.setItem(key, device);
  }
  return BigInt(device);
}

async function fetchToken(user, device) {
  const answer = await fetch(TOKEN_URL, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ user: String(user), device: String(device) }),
  });
  if (!answer.ok) throw new Error(`demo token: HTTP ${answer.status} (is [admin] demo_tokens on?)`);
  return (await answer.json()).token;
}

async function start(user, ws) {
  $("#login").hidden = true;
  $("main").hidden = false;
  localStorage.setItem("web-chat:ws", ws);
  const url = new URL(location.href);
  url.searchParams.set("user", String(user));
  url.searchParams.set("ws", ws);
  history.replaceState(null, "", url);

  const device = deviceFor(user);
  $("#who").textContent = `(user ${user}, device ${device})`;
  const transcript = new Transcript(`web-chat:transcript:${user}:${device}`);
  const rooms = JSON.parse(localStorage.getItem(`web-chat:rooms:${user}`) ?? "[]");
  const client = new Client({
    endpoint: ws,
    connector: webSocketConnector(),
    token: () => fetchToken(user, device),
    device,
    store: await IndexedDbStore.open({ name: `web-chat-${user}-${device}` }),
  });
  const render = () => renderTranscript(transcript);

  client.on("state", ({ state }) => {
    $("#state").textContent = state;
    $("#state").dataset.state = state;
  });
  client.on("caught-up", () => ($("#state").dataset.caughtUp = "yes"));
  client.on("message", ({ message }) => {
    if (transcript.addInbox(message, user, utf8.decode(message.payload))) render();
  });
  client.on("lost", ({ first, last }) => {
    transcript.addLost(first, last);
    render();
  });
  client.on("send-acked", ({ ack }) => {
    transcript.markStored(ack.clientMsgId, ack.ownSeq);
    render();
  });
  client.on("send-failed", ({ clientMsgId, reason }) => {
    transcript.markFailed(clientMsgId, reason);
    render();
  });
  client.on("room-message", ({ message }) => {
    if (transcript.addRoom(message, utf8.decode(message.payload))) render();
  });
  client.on("connect-failed", ({ endpoint, error }) => console.warn(`connect to ${endpoint} failed:`, error));

  await client.start();
  for (const n of rooms) await client.subscribe(roomId(BigInt(n)), { qos: 1 });
  showRoom(rooms.at(-1));
  render();

  $("#compose").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const to = BigInt($("#to").value);
    const text = $("#text").value;
    $("#text").value = "";
    // Resolves once the message is in the stored outbox: from then on it
    // survives reconnects and reloads.
    const receipt = await client.send(to, text, { qos: 1 });
    transcript.addOutgoing(user, to, receipt.clientMsgId, text);
    render();
    const outcome = await receipt.outcome;
    if (outcome.status === "stored") transcript.markStored(receipt.clientMsgId, outcome.ownSeq);
    render();
  });
  $("#join").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const n = $("#room").value;
    await client.subscribe(roomId(BigInt(n)), { qos: 1 });
    if (!rooms.includes(n)) rooms.push(n);
    localStorage.setItem(`web-chat:rooms:${user}`, JSON.stringify(rooms));
    showRoom(n);
    render();
  });
  $("#room-compose").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const n = rooms.at(-1);
    if (n === undefined) return;
    const text = $("#room-text").value;
    $("#room-text").value = "";
    await client.send(roomId(BigInt(n)), text, { qos: 1 });
  });
  document.body.dataset.ready = "yes";
}

function showRoom(n) {
  $("#room-name").textContent = n === undefined ? "(none)" : `#${n}`;
  $("#room-messages").dataset.room = n ?? "";
}

function renderTranscript(transcript) {
  const current = $("#room-messages").dataset.room;
  const inbox = [];
  const room = [];
  for (const e of transcript.entries) {
    if (e.kind === "room") {
      if (e.room === current) room.push(line(e, `user ${e.from} · #${e.seq}`));
    } else if (e.kind === "lost") {
      inbox.push(line(e, ""));
    } else {
      const meta = e.kind === "in" ? `from user ${e.from}` : `to user ${e.to}`;
      inbox.push(line(e, e.seq ? `${meta} · #${e.seq}` : meta));
    }
  }
  $("#messages").replaceChildren(...inbox);
  $("#room-messages").replaceChildren(...room);
  for (const list of [$("#messages"), $("#room-messages")]) list.scrollTop = list.scrollHeight;
}

/** One list item; its data attributes carry the identity (sender, sequence, id). */
function line(entry, meta) {
  const li = document.createElement("li");
  li.className = entry.kind;
  for (const [k, v] of Object.entries(entry)) if (k !== "text" && v !== undefined) li.dataset[k] = v;
  const text = document.createElement("span");
  text.className = "text";
  text.textContent = entry.text;
  const m = document.createElement("span");
  m.className = "meta";
  m.textContent = meta;
  li.append(text, m);
  return li;
}
