/**
 * Runs the real `surepush` binary for end-to-end tests: a temporary data
 * dir, ports below 32768 picked here (the ephemeral range starts at 32768
 * on this machine), `token_secret` in the config so tests mint HS256
 * tokens themselves (docs/PROTOCOL.md §4), readiness taken from the
 * "serving" line of every shard. `kill9` and `restart` keep the data dir
 * and ports, as a crashed and restarted gateway would. `damageMessage` and
 * `logTool` play a damaged disk and the operator's `surepush log salvage`.
 *
 * The binary is `$SUREPUSH_BIN`, else `target/debug/surepush` of this
 * repository (`cargo build` first).
 */

import { execFile, spawn, type ChildProcess } from "node:child_process";
import { createHmac } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { request } from "node:http";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

export const TOKEN_SECRET = "typescript-sdk-e2e-secret";
export const ADMIN_TOKEN = "typescript-sdk-e2e-admin";

const usedPorts = new Set<number>();

/**
 * Where a message record's payload starts (src/log/format.rs): record
 * header `[len u32][crc32c u32][kind u8]`, then the message body
 * `inbox, seq, from, from_device, to, client_msg_id, ts_ms` (u64 each) and
 * `qos` (u8). The inbox is the body's first field.
 */
const RECORD_HEADER_LEN = 9;
const MESSAGE_PAYLOAD_AT = RECORD_HEADER_LEN + 7 * 8 + 1;

/** The repository's root directory. */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../../../..");

/** The gateway binary to run. */
export function gatewayBinary(): string {
  const bin = process.env.SUREPUSH_BIN ?? join(REPO_ROOT, "target", "debug", "surepush");
  if (!existsSync(bin)) {
    throw new Error(`no gateway binary at ${bin}: run \`cargo build\` in ${REPO_ROOT} or set SUREPUSH_BIN`);
  }
  return bin;
}

/** An HS256 JWT for (user, device), as the application backend would mint it. */
export function mintToken(user: bigint, device: bigint, secret = TOKEN_SECRET, expS = 4_000_000_000): string {
  const b64 = (s: string | Buffer): string => Buffer.from(s).toString("base64url");
  const header = b64('{"alg":"HS256","typ":"JWT"}');
  // Built by hand: JSON.stringify cannot write a u64 above 2^53 as a number.
  const claims = b64(`{"sub":"${user}","dev":${device},"exp":${expS}}`);
  const sig = createHmac("sha256", secret).update(`${header}.${claims}`).digest("base64url");
  return `${header}.${claims}.${sig}`;
}

/** A port below 32768 that nothing listens on now (and this process has not handed out). */
export function freePort(): Promise<number> {
  return pickPort(usedPorts);
}

async function pickPort(taken: Set<number>): Promise<number> {
  for (let tries = 0; tries < 200; tries++) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    if (taken.has(port)) continue;
    const free = await new Promise<boolean>((done) => {
      const server = createServer();
      server.once("error", () => done(false));
      server.listen(port, "127.0.0.1", () => server.close(() => done(true)));
    });
    if (free) {
      taken.add(port);
      return port;
    }
  }
  throw new Error("no free port below 32768");
}


/** Settings of a test gateway. */
export interface GatewayOptions {
  readonly shards?: number;
  /** TOML lines for the `[core]` table. */
  readonly core?: string;
  /** Top-level TOML lines (e.g. `shutdown_redirect = "..."`). */
  readonly top?: string;
  /**
   * Serve the native protocol over WebSocket too (`[websocket]`, path `/`,
   * on {@link Gateway.wsPort}). `onlyAdminOrigin`: only pages served by
   * the admin listener may connect (`allowed_origins`); else any origin.
   */
  readonly websocket?: { readonly onlyAdminOrigin?: boolean };
  /**
   * With `websocket`: WebSocket over TLS too (`[tls] ws_listen`, on
   * {@link Gateway.wssPort}) with this certificate and key (PEM files).
   */
  readonly wss?: { readonly certFile: string; readonly keyFile: string };
  /** TOML tables appended to the config (e.g. `[admin]` settings). */
  readonly tables?: string;
}

/** A running (or killed) gateway process. */
export class Gateway {
  private child: ChildProcess | undefined;
  /** Everything the process wrote to stderr, across restarts. */
  readonly log: string[] = [];

  private constructor(
    readonly dir: string,
    readonly port: number,
    readonly adminPort: number,
    /** The WebSocket listener's port (listening when `options.websocket`). */
    readonly wsPort: number,
    /** The WebSocket TLS listener's port (listening when `options.wss`). */
    readonly wssPort: number,
    private readonly options: GatewayOptions,
  ) {}

  /** Starts a gateway on a fresh data dir. */
  static async start(options: GatewayOptions = {}): Promise<Gateway> {
    const dir = await mkdtemp(join(tmpdir(), "surepush-ts-e2e-"));
    const g = new Gateway(dir, await freePort(), await freePort(), await freePort(), await freePort(), options);
    await g.spawn();
    return g;
  }

  /** `host:port` of the native TCP listener. */
  get endpoint(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** URL of the WebSocket listener (`options.websocket`). */
  get wsUrl(): string {
    return `ws://127.0.0.1:${this.wsPort}/`;
  }

  /** URL of the WebSocket TLS listener (`options.wss`). */
  get wssUrl(): string {
    return `wss://127.0.0.1:${this.wssPort}/`;
  }

  /** Base URL of the admin HTTP listener. */
  get adminUrl(): string {
    return `http://127.0.0.1:${this.adminPort}`;
  }

  get running(): boolean {
    return this.child !== undefined;
  }

  token(user: bigint, device: bigint): string {
    return mintToken(user, device);
  }

  /** SIGKILL: no flush, no goodbye. */
  async kill9(): Promise<void> {
    await this.signal("SIGKILL");
  }

  /** SIGTERM: graceful shutdown (DISCONNECT ShuttingDown to every client). */
  async terminate(): Promise<void> {
    await this.signal("SIGTERM");
  }

  /** Starts the process again on the same data dir and ports. */
  async restart(): Promise<void> {
    if (this.child) throw new Error("still running");
    await this.spawn();
  }

  /** The config file the gateway runs with (for the offline tools). */
  get configPath(): string {
    return join(this.dir, "gateway.toml");
  }

  /**
   * A damaged disk: flips one bit inside the payload of the stored message
   * record in `inbox` whose payload is `payload` (the process must be
   * stopped). Exactly one such record must exist.
   */
  async damageMessage(inbox: bigint, payload: string): Promise<void> {
    if (this.child) throw new Error("still running");
    const needle = Buffer.from(payload);
    const inboxBytes = Buffer.alloc(8);
    inboxBytes.writeBigUInt64LE(inbox);
    const hits: Array<{ path: string; bytes: Buffer; at: number }> = [];
    const data = join(this.dir, "data");
    for (const shard of await readdir(data)) {
      if (!shard.startsWith("shard-")) continue;
      for (const name of await readdir(join(data, shard))) {
        if (!name.endsWith(".seg")) continue;
        const path = join(data, shard, name);
        const bytes = await readFile(path);
        for (let at = bytes.indexOf(needle); at >= 0; at = bytes.indexOf(needle, at + 1)) {
          const record = at - MESSAGE_PAYLOAD_AT;
          const inboxAt = record + RECORD_HEADER_LEN;
          if (record >= 0 && bytes.subarray(inboxAt, inboxAt + 8).equals(inboxBytes)) hits.push({ path, bytes, at });
        }
      }
    }
    if (hits.length !== 1) throw new Error(`${hits.length} records of inbox ${inbox} hold ${JSON.stringify(payload)}`);
    const { path, bytes, at } = hits[0]!;
    bytes[at] = bytes[at]! ^ 0x20;
    await writeFile(path, bytes);
  }

  /** Runs `surepush log <tool>` (`verify`, `salvage`) on this gateway's data dir; its output and success. */
  logTool(tool: string): Promise<{ ok: boolean; output: string }> {
    return new Promise((done) => {
      execFile(gatewayBinary(), ["log", tool, "--config", this.configPath], (error, stdout, stderr) =>
        done({ ok: error === null, output: stdout + stderr }),
      );
    });
  }

  /** Kills the process and removes the data dir. */
  async stop(): Promise<void> {
    await this.kill9();
    await rm(this.dir, { recursive: true, force: true });
  }

  /** One admin API call; returns status and parsed JSON body. */
  admin(method: string, path: string, body?: unknown): Promise<{ status: number; body: unknown }> {
    const data = body === undefined ? "" : JSON.stringify(body);
    return new Promise((done, fail) => {
      const req = request(
        {
          host: "127.0.0.1",
          port: this.adminPort,
          method,
          path,
          headers: { Authorization: `Bearer ${ADMIN_TOKEN}`, "Content-Type": "application/json", "Content-Length": data.length },
        },
        (res) => {
          let text = "";
          res.on("data", (c: Buffer) => (text += c.toString()));
          res.on("end", () => done({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : undefined }));
        },
      );
      req.on("error", fail);
      req.end(data);
    });
  }

  private async signal(signal: NodeJS.Signals): Promise<void> {
    const child = this.child;
    if (!child) return;
    this.child = undefined;
    const exited = new Promise((done) => child.once("exit", done));
    child.kill(signal);
    await exited;
  }

  private websocketTable(): string[] {
    const ws = this.options.websocket;
    if (!ws) return [];
    const origins = ws.onlyAdminOrigin ? JSON.stringify(this.adminUrl) : "";
    const table = ["[websocket]", "enabled = true", `listen = "127.0.0.1:${this.wsPort}"`, 'path = "/"', `allowed_origins = [${origins}]`];
    const wss = this.options.wss;
    if (!wss) return table;
    const tls = ["[tls]", `cert = ${JSON.stringify(wss.certFile)}`, `key = ${JSON.stringify(wss.keyFile)}`, `ws_listen = "127.0.0.1:${this.wssPort}"`];
    return [...table, ...tls];
  }

  private async spawn(): Promise<void> {
    const shards = this.options.shards ?? 1;
    const config = this.configPath;
    await writeFile(
      config,
      [
        `listen = "127.0.0.1:${this.port}"`,
        `admin_listen = "127.0.0.1:${this.adminPort}"`,
        `data_dir = "${join(this.dir, "data")}"`,
        `shards = ${shards}`,
        "pin_cores = false",
        "io_memory_kib = 1024",
        `token_secret = "${TOKEN_SECRET}"`,
        `admin_token = "${ADMIN_TOKEN}"`,
        "shutdown_grace_ms = 2000",
        this.options.top ?? "",
        "[mqtt]",
        "enabled = false",
        "[core]",
        this.options.core ?? "",
        "[log]",
        "segment_mib = 8",
        ...this.websocketTable(),
        this.options.tables ?? "",
        "",
      ].join("\n"),
    );
    const child = spawn(gatewayBinary(), ["serve", "--config", config], {
      env: { ...process.env, RUST_LOG: process.env.TEST_SERVER_RUST_LOG ?? "info" },
      stdio: ["ignore", "ignore", "pipe"],
    });
    this.child = child;
    const lines = createInterface({ input: child.stderr! });
    await new Promise<void>((ready, fail) => {
      let serving = 0;
      const timer = setTimeout(() => fail(new Error(`gateway not ready in 30 s:\n${this.log.slice(-20).join("\n")}`)), 30_000);
      child.once("exit", (code) => {
        clearTimeout(timer);
        fail(new Error(`gateway exited (${code}) while starting:\n${this.log.slice(-20).join("\n")}`));
      });
      lines.on("line", (raw) => {
        // eslint-disable-next-line no-control-regex
        const line = raw.replace(/\x1b\[[0-9;]*m/g, "");
        this.log.push(line);
        if (process.env.TEST_SERVER_LOG) process.stderr.write(`[gateway] ${line}\n`);
        if (/\bserving\b/.test(line) && ++serving === shards) {
          clearTimeout(timer);
          ready();
        }
      });
    });
    child.removeAllListeners("exit");
  }
}
