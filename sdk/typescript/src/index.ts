/**
 * `@surepush/client`: a TypeScript client for the surepush gateway
 * (docs/PROTOCOL.md). This entry runs in browsers, workers and Node and
 * has no runtime dependency: it holds the wire codec, the sans-IO
 * {@link ClientSession}, the reconnecting {@link Client}, the WebSocket
 * transport and the memory and IndexedDB stores. Node's TCP transport,
 * file store and `ws`-based WebSocket live in `@surepush/client/node`.
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
export { MemoryStore, type OutboxStore } from "./store/store.js";
export { IndexedDbStore, type IndexedDbStoreOptions } from "./store/indexeddb.js";
export { StoreCorruptError } from "./store/codec.js";
export { parseHostPort, type Connector, type Transport, type TransportHandlers } from "./transport/transport.js";
export {
  WEBSOCKET_SUBPROTOCOL,
  webSocketConnector,
  type WebSocketConnectorOptions,
  type WebSocketConstructor,
  type WebSocketLike,
} from "./transport/websocket.js";
export { backoffDelay, DEFAULT_BACKOFF, type BackoffOptions } from "./client/backoff.js";
export type { Unsubscribe } from "./client/emitter.js";
export {
  Client,
  type ClientEvents,
  type ClientOptions,
  type ClientState,
  type OlderPage,
  type SendOutcome,
  type SendReceipt,
} from "./client/client.js";
