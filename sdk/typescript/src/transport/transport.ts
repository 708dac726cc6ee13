/**
 * The seam between the client and the network. A transport carries whole
 * encoded frames out and any slices of the byte stream in; the session
 * never knows whether it is TCP, WebSocket or a test's in-memory pipe.
 *
 * @module
 */

/** What a transport tells its owner. Called at most once per byte, in order. */
export interface TransportHandlers {
  /** Bytes from the gateway; the transport gives up ownership of them. */
  onData(bytes: Uint8Array): void;
  /** The connection is over (by either side); `error` if it broke. Called once. */
  onClose(error?: Error): void;
}

/** One open connection. */
export interface Transport {
  /** Writes whole frames, in order (a WebSocket sends one binary message per frame). */
  write(frames: readonly Uint8Array[]): void;
  /** Closes the connection; `onClose` follows. */
  close(): void;
}

/** Opens transports to an endpoint. */
export interface Connector {
  /** Connects to `endpoint`; resolves once bytes can flow, rejects if it cannot. */
  connect(endpoint: string, handlers: TransportHandlers): Promise<Transport>;
  /**
   * The endpoint for a DISCONNECT redirect `host:port` received on a
   * connection to `endpoint` (a WebSocket keeps its scheme and path).
   */
  redirect(endpoint: string, hostPort: string): string;
}

/** Splits `host:port` (`[v6]:port` too); a `TypeError` if it is not one. */
export function parseHostPort(text: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text);
  const port = Number(m?.[3]);
  const host = m?.[1] ?? m?.[2];
  if (!m || host === undefined || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new TypeError(`not a host:port: ${JSON.stringify(text)}`);
  }
  return { host, port };
}
