/**
 * Raw TCP transport for Node (`node:net`): the gateway's native listener
 * (default port 7400). Frames are written back to back with Nagle off;
 * received bytes are handed over as they come (the session reassembles
 * frames).
 *
 * @module
 */

import { connect as netConnect, type Socket } from "node:net";

import { parseHostPort, type Connector, type Transport, type TransportHandlers } from "../transport/transport.js";

/** How to open TCP connections. */
export interface TcpConnectorOptions {
  /** Give up connecting after this long (ms; default 10,000). */
  readonly connectTimeoutMs?: number;
}

/** Connects to `host:port` endpoints. */
export function tcpConnector(options: TcpConnectorOptions = {}): Connector {
  const timeoutMs = options.connectTimeoutMs ?? 10_000;
  return {
    connect(endpoint, handlers) {
      let target: { host: string; port: number };
      try {
        target = parseHostPort(endpoint);
      } catch (e) {
        return Promise.reject(e);
      }
      return openSocket(netConnect({ ...target, noDelay: true }), timeoutMs, handlers);
    },
    redirect(_endpoint, hostPort) {
      parseHostPort(hostPort);
      return hostPort;
    },
  };
}

function openSocket(socket: Socket, timeoutMs: number, handlers: TransportHandlers): Promise<Transport> {
  return new Promise((resolve, reject) => {
    let open = false;
    let failure: Error | undefined;
    const timer = setTimeout(() => socket.destroy(new Error(`connect timed out after ${timeoutMs} ms`)), timeoutMs);
    socket.once("connect", () => {
      clearTimeout(timer);
      open = true;
      resolve({
        write(frames) {
          socket.cork();
          for (const f of frames) socket.write(f);
          socket.uncork();
        },
        close() {
          socket.end();
          // A gateway that stops reading must not keep the socket alive.
          socket.destroySoon();
        },
      });
    });
    socket.on("data", (chunk: Buffer) => {
      handlers.onData(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    });
    socket.on("error", (e) => {
      failure = e;
    });
    socket.once("close", () => {
      clearTimeout(timer);
      if (open) handlers.onClose(failure);
      else reject(failure ?? new Error("connection closed before it opened"));
    });
  });
}
