/**
 * `@surepush/client/node`: what only Node can do. A raw TCP transport to
 * the gateway's native listener, a WebSocket transport on Node's global
 * `WebSocket` or the optional `ws` package, and a journal-file store.
 * Everything of the main entry is re-exported, so a Node app imports from
 * here only.
 *
 * @module
 */

export * from "./index.js";
export { tcpConnector, type TcpConnectorOptions } from "./node/tcp.js";
export { nodeWebSocketConnector } from "./node/ws.js";
export { FileStore, type FileStoreOptions } from "./node/file-store.js";
