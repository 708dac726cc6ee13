/**
 * Reconnect delays: exponential backoff with "equal jitter" (half of the
 * delay fixed, half random), so a gateway restart is not met by every
 * client at the same instant, and no client retries in a hot loop.
 *
 * @module
 */

/** Backoff bounds (ms). */
export interface BackoffOptions {
  /** The first delay's upper bound. */
  readonly initialMs: number;
  /** No delay exceeds this. */
  readonly maxMs: number;
}

/** The defaults: 250 ms doubling up to 30 s. */
export const DEFAULT_BACKOFF: BackoffOptions = { initialMs: 250, maxMs: 30_000 };

/** The delay before retry number `attempt` (0-based), given a random number in [0, 1). */
export function backoffDelay(attempt: number, options: BackoffOptions, random: number): number {
  const ceiling = Math.min(options.maxMs, options.initialMs * 2 ** Math.min(attempt, 30));
  return ceiling / 2 + (ceiling / 2) * random;
}

/** Counts attempts since the last success. */
export class Backoff {
  private attempt = 0;

  constructor(
    private readonly options: BackoffOptions,
    private readonly random: () => number,
  ) {}

  /** The next delay, growing with each call. */
  next(): number {
    return backoffDelay(this.attempt++, this.options, this.random());
  }

  /** A success: the next delay is short again. */
  reset(): void {
    this.attempt = 0;
  }
}
