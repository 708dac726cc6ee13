/**
 * A test certificate for the gateway's TLS listeners (`wss://`), minted
 * per run with the openssl CLI: self-signed ECDSA P-256 for `localhost`
 * and 127.0.0.1, valid for a day. `spki` is the base64 SHA-256 of its
 * public key, for Chromium's `--ignore-certificate-errors-spki-list`:
 * the browser then trusts this one key (a pinned test certificate), and
 * still refuses any other certificate error.
 */

import { execFileSync } from "node:child_process";
import { createHash, X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface TestCertificate {
  /** The certificate, PEM (`[tls] cert`). */
  readonly certFile: string;
  /** Its private key, PEM, PKCS#8 (`[tls] key`). */
  readonly keyFile: string;
  /** base64(SHA-256(SubjectPublicKeyInfo DER)). */
  readonly spki: string;
}

/** Mints a certificate into a new temporary directory. */
export function testCertificate(): TestCertificate {
  const dir = mkdtempSync(join(tmpdir(), "surepush-ts-cert-"));
  const certFile = join(dir, "cert.pem");
  const keyFile = join(dir, "key.pem");
  execFileSync(
    "openssl",
    [
      ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"],
      ["-keyout", keyFile, "-out", certFile, "-days", "1", "-subj", "/CN=localhost"],
      ["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
    ].flat(),
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  const der = new X509Certificate(readFileSync(certFile)).publicKey.export({ type: "spki", format: "der" });
  return { certFile, keyFile, spki: createHash("sha256").update(der).digest("base64") };
}
