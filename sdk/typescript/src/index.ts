/**
 * `@surepush/client`: a TypeScript client for the surepush gateway
 * (docs/PROTOCOL.md). This entry runs in browsers, workers and Node and
 * has no runtime dependency.
 *
 * @module
 */

export * from "./proto/index.js";
