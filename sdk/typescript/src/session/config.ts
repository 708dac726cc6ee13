/**
 * Session behaviour knobs, with the defaults of docs/PROTOCOL.md (SDK
 * timeouts) and of the Rust SDK.
 *
 * @module
 */

/** Timings (ms) and sizes of a {@link ClientSession}. */
export interface SessionConfig {
  /** This device's id; must equal the token's `dev` claim. */
  readonly device: bigint;
  /** Keepalive asked for; the gateway's value in CONNACK wins. A PING goes out after half of it without traffic. */
  readonly keepaliveMs: number;
  /** A SEND or REL without answer is sent again after this long. */
  readonly sendTimeoutMs: number;
  /** A SYNC without its page is sent again (with a new request id) after this long. */
  readonly syncTimeoutMs: number;
  /** The connection counts as lost without CONNACK after this long. */
  readonly connectTimeoutMs: number;
  /** Page size of the replay (SYNC After). */
  readonly page: number;
  /** How many of the newest messages a new device fetches first (SYNC Latest). */
  readonly initialLatest: number;
  /** Out-of-order pushes buffered at most; the gateway retransmits what is dropped. */
  readonly reorderLimit: number;
  /** A QoS 1 room is acknowledged at least every this many messages... */
  readonly roomAckEvery: number;
  /** ...and at most this long after its first unacknowledged message. */
  readonly roomAckDelayMs: number;
  /**
   * First client message id when the store has none. Ids must never repeat
   * for a (user, device): a repeated id is taken as a retry and nothing new
   * is stored. The client passes the wall clock in microseconds.
   */
  readonly firstClientMsgId: bigint;
}

/** The defaults, for `device`. */
export function defaultSessionConfig(device: bigint): SessionConfig {
  return {
    device,
    keepaliveMs: 30_000,
    sendTimeoutMs: 3_000,
    syncTimeoutMs: 5_000,
    connectTimeoutMs: 10_000,
    page: 200,
    initialLatest: 50,
    reorderLimit: 4096,
    roomAckEvery: 32,
    roomAckDelayMs: 250,
    firstClientMsgId: 1n,
  };
}
