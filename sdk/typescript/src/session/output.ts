/**
 * The one sink the parts of a session write to: frames to transmit, events
 * for the application, changes to persist. Parts never reach each other
 * through it; the session dispatches.
 *
 * @module
 */

import type { Frame } from "../proto/frames.js";
import type { SessionEvent } from "./events.js";
import type { StoreChange } from "./state.js";

/** Where a session part puts what it produces. */
export interface SessionOutput {
  frame(frame: Frame): void;
  event(event: SessionEvent): void;
  store(change: StoreChange): void;
}
