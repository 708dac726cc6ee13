/**
 * What one (user, device) has shown, kept in localStorage so a reload
 * shows the same conversation: inbox messages by inbox sequence (each
 * once, even when the SDK hands the last ones over again after a crash,
 * see the SDK README "Stores"), this device's own sends by client_msg_id,
 * room messages by (room, room sequence).
 *
 * The SDK keeps the rest (the outbox, the receive cursor, room positions)
 * in IndexedDB; this file only keeps what the page displays.
 */

/** One displayed line. Ids are decimal strings (bigints do not fit JSON). */
// { kind: "in" | "out" | "room" | "lost", from, to, seq?, clientMsgId?, room?, text, status? }

/** A room id is `n | 2^62`: this keeps the room number `n`. */
const ROOM_NUMBER_MASK = (1n << 62n) - 1n;

export class Transcript {
  /** @param {string} key localStorage key of this (user, device) */
  constructor(key, storage = globalThis.localStorage) {
    this.key = key;
    this.storage = storage;
    this.entries = JSON.parse(storage.getItem(key) ?? "[]");
  }

  /**
   * An inbox message (a PUSH or a replayed one). Returns whether it is new.
   * `me` is this user; `echo` marks this device's own send (no payload).
   */
  addInbox(message, me, text) {
    const seq = String(message.seq);
    const clientMsgId = String(message.clientMsgId);
    if (this.entries.some((e) => e.seq === seq && e.kind !== "room")) return false;
    const own = this.entries.find((e) => e.kind === "out" && e.clientMsgId === clientMsgId);
    if (message.echo || (message.from === me && own)) {
      // This device's send, seen in its own inbox: it is stored.
      if (own) Object.assign(own, { seq, status: "stored" });
      else this.entries.push({ kind: "out", from: String(me), to: String(message.to), seq, clientMsgId, text: "", status: "stored" });
    } else {
      const kind = message.from === me ? "out" : "in"; // "out": sent by another device of mine
      this.entries.push({ kind, from: String(message.from), to: String(message.to), seq, clientMsgId, text, status: "stored" });
    }
    this.save();
    return true;
  }

  /** A send this device just put into the SDK's outbox. */
  addOutgoing(me, to, clientMsgId, text) {
    const id = String(clientMsgId);
    if (this.entries.some((e) => e.kind === "out" && e.clientMsgId === id)) return;
    this.entries.push({ kind: "out", from: String(me), to: String(to), clientMsgId: id, text, status: "queued" });
    this.save();
  }

  /** The gateway stored this device's send at `ownSeq` of its own inbox. */
  markStored(clientMsgId, ownSeq) {
    const e = this.entries.find((x) => x.kind === "out" && x.clientMsgId === String(clientMsgId));
    if (!e || e.status === "stored") return;
    e.status = "stored";
    if (ownSeq) e.seq = String(ownSeq);
    this.save();
  }

  /** A send the gateway refused for good. */
  markFailed(clientMsgId, reason) {
    const e = this.entries.find((x) => x.kind === "out" && x.clientMsgId === String(clientMsgId));
    if (!e) return;
    e.status = `failed: ${reason}`;
    this.save();
  }

  /** Inbox sequences first..=last are gone (retention or damage). */
  addLost(first, last) {
    this.entries.push({ kind: "lost", text: `messages ${first}..${last} were lost` });
    this.save();
  }

  /** A room message. Returns whether it is new. */
  addRoom(message, text) {
    const room = String(message.room & ROOM_NUMBER_MASK);
    const seq = String(message.seq);
    if (message.seq !== 0n && this.entries.some((e) => e.kind === "room" && e.room === room && e.seq === seq)) return false;
    this.entries.push({ kind: "room", room, seq, from: String(message.from), text });
    this.save();
    return true;
  }

  save() {
    this.storage.setItem(this.key, JSON.stringify(this.entries));
  }
}
