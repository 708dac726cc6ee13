/**
 * A small {@link OutboxStore} for Node: one append-only journal file.
 *
 * Each `apply` appends its whole batch as one JSON line and fdatasyncs the
 * file before resolving, so a batch is durable and all or nothing: after a
 * crash, a torn last line (no newline, or not JSON) is a batch that never
 * resolved, and it is cut off at load. A damaged line before the last is
 * real corruption and fails `load` with {@link StoreCorruptError} rather
 * than restoring a state with holes. When the journal holds more than
 * `compactAfter` lines it is rewritten as one snapshot line (temporary file,
 * fsync, rename, fsync of the directory).
 *
 * One process at a time may use a journal (nothing here locks it).
 *
 * @module
 */

import { mkdir, open, rename, type FileHandle } from "node:fs/promises";
import { dirname } from "node:path";

import { changeFromJson, changeToJson, StoreCorruptError } from "../store/codec.js";
import type { OutboxStore } from "../store/store.js";
import { applyChanges, NEW_DEVICE, type SessionState, type StoreChange } from "../session/state.js";

/** Where and how the journal is kept. */
export interface FileStoreOptions {
  /** The journal file (its directory is created if missing). One per (user, device). */
  readonly path: string;
  /** Rewrite the journal as a snapshot beyond this many lines (default 1,000). */
  readonly compactAfter?: number;
  /** fdatasync after every batch (default true; false only for throwaway data). */
  readonly sync?: boolean;
}

const NEWLINE = 0x0a;

/** Session state in an append-only journal file. */
export class FileStore implements OutboxStore {
  private state: SessionState = NEW_DEVICE;
  private lines = 0;
  /** Bytes of whole batches in the journal (a failed append is cut back to it). */
  private size = 0;

  private constructor(
    private readonly options: Required<FileStoreOptions>,
    private file: FileHandle,
  ) {}

  /** Opens (creating if needed) the journal and reads it, cutting off a torn last batch. */
  static async open(options: FileStoreOptions): Promise<FileStore> {
    const full = { compactAfter: 1000, sync: true, ...options };
    await mkdir(dirname(full.path), { recursive: true });
    const file = await open(full.path, "a+");
    const store = new FileStore(full, file);
    try {
      await store.read();
    } catch (e) {
      await file.close();
      throw e;
    }
    return store;
  }

  async load(): Promise<SessionState> {
    return this.state;
  }

  async apply(changes: readonly StoreChange[]): Promise<void> {
    if (changes.length === 0) return;
    const next = applyChanges(this.state, changes);
    await this.append(changes);
    this.state = next;
    if (this.lines > this.options.compactAfter) await this.compact();
  }

  async close(): Promise<void> {
    await this.file.close();
  }

  private async read(): Promise<void> {
    const raw = await this.file.readFile();
    let state = NEW_DEVICE;
    let start = 0;
    let lines = 0;
    while (start < raw.length) {
      const end = raw.indexOf(NEWLINE, start);
      const text = raw.subarray(start, end < 0 ? raw.length : end).toString("utf8");
      let changes: StoreChange[];
      try {
        changes = parseLine(text);
      } catch (e) {
        const last = end < 0 || end === raw.length - 1;
        if (!last) throw e instanceof StoreCorruptError ? e : new StoreCorruptError(String(e));
        // A torn final batch never resolved: drop it.
        await this.file.truncate(start);
        break;
      }
      if (end < 0) {
        // Complete JSON but no newline: the write was cut before its end.
        await this.file.truncate(start);
        break;
      }
      state = applyChanges(state, changes);
      lines++;
      start = end + 1;
    }
    this.state = state;
    this.lines = lines;
    this.size = Math.min(start, raw.length);
  }

  private async append(changes: readonly StoreChange[]): Promise<void> {
    const line = Buffer.from(lineOf(changes), "utf8");
    try {
      await this.file.appendFile(line);
      if (this.options.sync) await this.file.datasync();
    } catch (e) {
      // Leave no partial line for the next batch to be glued onto.
      await this.file.truncate(this.size).catch(() => undefined);
      throw e;
    }
    this.size += line.length;
    this.lines++;
  }

  private async compact(): Promise<void> {
    const s = this.state;
    const snapshot: StoreChange[] = [
      ...s.outbox.map((entry) => ({ type: "outbox-put", entry }) as const),
      ...s.rooms.map((position) => ({ type: "room-put", position }) as const),
    ];
    if (s.delivered !== undefined) snapshot.push({ type: "delivered", seq: s.delivered });
    if (s.nextClientMsgId !== undefined) snapshot.push({ type: "next-id", next: s.nextClientMsgId });
    const tmp = `${this.options.path}.tmp`;
    const out = await open(tmp, "w");
    try {
      await out.writeFile(snapshot.length > 0 ? lineOf(snapshot) : "");
      await out.sync();
    } finally {
      await out.close();
    }
    await rename(tmp, this.options.path);
    await syncDirectory(dirname(this.options.path));
    await this.file.close();
    this.file = await open(this.options.path, "a+");
    this.lines = snapshot.length > 0 ? 1 : 0;
    this.size = (await this.file.stat()).size;
  }
}

function lineOf(changes: readonly StoreChange[]): string {
  return `${JSON.stringify(changes.map(changeToJson))}\n`;
}

function parseLine(text: string): StoreChange[] {
  const value: unknown = JSON.parse(text);
  if (!Array.isArray(value)) throw new StoreCorruptError("a journal line is not a batch");
  return value.map(changeFromJson);
}

/** Makes a rename durable. */
async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
