/**
 * `@surepush/client`: a TypeScript client for the surepush gateway
 * (docs/PROTOCOL.md). This entry runs in browsers, workers and Node and
 * has no runtime dependency: it holds the wire codec and the sans-IO
 * {@link ClientSession}.
 *
 * @module
 */

export * from "./proto/index.js";
export { defaultSessionConfig, type SessionConfig } from "./session/config.js";
export type { SendFailure, SessionEvent, SessionEventType } from "./session/events.js";
export { ClientSession, PayloadTooLargeError, type SessionPhase } from "./session/session.js";
export {
  applyChanges,
  coalesce,
  NEW_DEVICE,
  type OutboxEntry,
  type RoomPosition,
  type SessionState,
  type StoreChange,
} from "./session/state.js";
