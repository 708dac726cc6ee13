//! The WebSocket opening handshake (RFC 6455 §4.2), sans IO: an HTTP
//! upgrade request in, the 101 response and the chosen subprotocol out, or
//! an HTTP refusal.
//!
//! tungstenite parses the request and computes `Sec-WebSocket-Accept`;
//! this file adds the gateway's rules: the configured path, the allowed
//! origins, and a subprotocol the gateway speaks (`surepush.v1`, or `mqtt`
//! when MQTT is enabled) — a client must offer one, since the subprotocol
//! decides how its bytes are read.

use tungstenite::handshake::machine::TryParse;
use tungstenite::handshake::server::{create_response, write_response, Request};

use crate::config::WebSocketSettings;

/// Subprotocol of the native protocol (docs/PROTOCOL.md).
pub(crate) const NATIVE: &str = "surepush.v1";
/// Subprotocol of MQTT over WebSocket (MQTT 3.1.1 §6, MQTT 5 §6).
pub(crate) const MQTT: &str = "mqtt";
/// Largest upgrade request (request line and headers): a client sending
/// more without finishing it gets 431.
pub(crate) const MAX_REQUEST: usize = 8 * 1024;

/// Which protocol the connection speaks inside its messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Subprotocol {
    /// `surepush.v1`: native frames.
    Native,
    /// `mqtt`: MQTT packets.
    Mqtt,
}

/// What the request so far amounts to.
#[derive(Debug)]
pub(crate) enum Upgrade {
    /// Incomplete: read more.
    More,
    /// Upgraded: write `response`; `used` bytes of the input were the
    /// request (what follows is WebSocket frames).
    Accept {
        response: Vec<u8>,
        subprotocol: Subprotocol,
        used: usize,
    },
    /// Write this HTTP response, then close.
    Refuse(Vec<u8>),
}

/// Decides on the bytes received so far (`mqtt`: whether MQTT is served).
pub(crate) fn upgrade(input: &[u8], settings: &WebSocketSettings, mqtt: bool) -> Upgrade {
    let (used, request) = match Request::try_parse(input) {
        Ok(Some(parsed)) => parsed,
        Ok(None) if input.len() >= MAX_REQUEST => {
            return Upgrade::Refuse(refusal(
                431,
                "Request Header Fields Too Large",
                "",
                "request too long",
            ))
        }
        Ok(None) => return Upgrade::More,
        Err(e) => return Upgrade::Refuse(bad_request(&e.to_string())),
    };
    if request.uri().path() != settings.path {
        return Upgrade::Refuse(refusal(404, "Not Found", "", "no WebSocket endpoint here"));
    }
    let version_ok = request
        .headers()
        .get("Sec-WebSocket-Version")
        .is_some_and(|v| v == "13");
    if !version_ok {
        // §4.4: tell the client which version we speak.
        return Upgrade::Refuse(refusal(
            426,
            "Upgrade Required",
            "Sec-WebSocket-Version: 13\r\n",
            "WebSocket version 13 only",
        ));
    }
    if !settings.allowed_origins.is_empty() {
        let origin = request
            .headers()
            .get("Origin")
            .and_then(|o| o.to_str().ok());
        if !origin.is_some_and(|o| settings.allowed_origins.iter().any(|a| a == o)) {
            return Upgrade::Refuse(refusal(403, "Forbidden", "", "origin not allowed"));
        }
    }
    let mut response = match create_response(&request) {
        Ok(r) => r,
        Err(e) => return Upgrade::Refuse(bad_request(&e.to_string())),
    };
    let offered = request
        .headers()
        .get_all("Sec-WebSocket-Protocol")
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(','))
        .map(str::trim);
    let mut chosen = None;
    for name in offered {
        match name {
            NATIVE => chosen = Some((Subprotocol::Native, NATIVE)),
            MQTT if mqtt => chosen = Some((Subprotocol::Mqtt, MQTT)),
            _ => continue,
        }
        break;
    }
    let Some((subprotocol, name)) = chosen else {
        let supported = if mqtt {
            "surepush.v1 or mqtt"
        } else {
            "surepush.v1"
        };
        return Upgrade::Refuse(bad_request(&format!(
            "Sec-WebSocket-Protocol must offer {supported}"
        )));
    };
    response.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        tungstenite::http::HeaderValue::from_static(name),
    );
    let mut bytes = Vec::with_capacity(256);
    write_response(&mut bytes, &response).expect("writing to a Vec cannot fail");
    Upgrade::Accept {
        response: bytes,
        subprotocol,
        used,
    }
}

/// 400 with `why` as its body.
fn bad_request(why: &str) -> Vec<u8> {
    refusal(400, "Bad Request", "", why)
}

/// 408: the upgrade request did not arrive within the connect timeout.
pub(crate) fn timed_out() -> Vec<u8> {
    refusal(
        408,
        "Request Timeout",
        "",
        "upgrade request not complete in time",
    )
}

/// An HTTP response that closes the connection; `why` is its plain-text
/// body, `extra` more header lines.
fn refusal(status: u16, reason: &str, extra: &str, why: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} {reason}\r\n{extra}Connection: close\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{why}\n",
        why.len() + 1
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> WebSocketSettings {
        WebSocketSettings {
            enabled: true,
            allowed_origins: vec!["https://chat.example".into()],
            ..WebSocketSettings::default()
        }
    }

    fn request(extra: &str) -> String {
        format!(
            "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
        )
    }

    fn status(u: &Upgrade) -> u16 {
        match u {
            Upgrade::Refuse(r) => String::from_utf8_lossy(&r[9..12]).parse().unwrap(),
            Upgrade::Accept { .. } => 101,
            Upgrade::More => 0,
        }
    }

    #[test]
    fn a_good_request_gets_the_rfc_accept_key_and_the_offered_subprotocol() {
        let req = request(
            "Origin: https://chat.example\r\nSec-WebSocket-Protocol: chat, mqtt, surepush.v1\r\n",
        );
        let mut input = req.clone().into_bytes();
        input.extend_from_slice(b"\x82\x80");
        match upgrade(&input, &settings(), true) {
            Upgrade::Accept {
                response,
                subprotocol,
                used,
            } => {
                let text = String::from_utf8(response).unwrap();
                assert!(text.starts_with("HTTP/1.1 101"), "{text}");
                // RFC 6455 §1.3's example key and answer.
                assert!(text.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{text}");
                assert!(
                    text.to_lowercase().contains("sec-websocket-protocol: mqtt"),
                    "{text}"
                );
                assert_eq!(
                    subprotocol,
                    Subprotocol::Mqtt,
                    "the first one offered that we speak"
                );
                assert_eq!(
                    used,
                    req.len(),
                    "the frame bytes after it are not the request"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn refusals_carry_the_http_status_the_rfc_or_the_config_asks_for() {
        let s = settings();
        let ok = "Origin: https://chat.example\r\nSec-WebSocket-Protocol: surepush.v1\r\n";
        assert_eq!(status(&upgrade(request(ok).as_bytes(), &s, true)), 101);
        assert_eq!(
            status(&upgrade(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", &s, true)),
            426
        );
        assert_eq!(status(&upgrade(b"POST / HTTP/1.1\r\n\r\n", &s, true)), 400);
        assert_eq!(
            status(&upgrade(b"\x16\x03\x01garbage\r\n\r\n", &s, true)),
            400
        );
        let other_path = request(ok).replacen("GET /", "GET /x", 1);
        assert_eq!(status(&upgrade(other_path.as_bytes(), &s, true)), 404);
        let wrong_origin =
            "Origin: https://evil.example\r\nSec-WebSocket-Protocol: surepush.v1\r\n";
        assert_eq!(
            status(&upgrade(request(wrong_origin).as_bytes(), &s, true)),
            403
        );
        let no_origin = "Sec-WebSocket-Protocol: surepush.v1\r\n";
        assert_eq!(
            status(&upgrade(request(no_origin).as_bytes(), &s, true)),
            403
        );
        let any = WebSocketSettings::default();
        assert_eq!(
            status(&upgrade(request(no_origin).as_bytes(), &any, true)),
            101
        );
        let wrong_proto = "Origin: https://chat.example\r\nSec-WebSocket-Protocol: chat\r\n";
        assert_eq!(
            status(&upgrade(request(wrong_proto).as_bytes(), &s, true)),
            400
        );
        assert_eq!(
            status(&upgrade(
                request("Origin: https://chat.example\r\n").as_bytes(),
                &s,
                true
            )),
            400
        );
        let mqtt_only = "Origin: https://chat.example\r\nSec-WebSocket-Protocol: mqtt\r\n";
        assert_eq!(
            status(&upgrade(request(mqtt_only).as_bytes(), &s, false)),
            400,
            "MQTT off"
        );
        let old = request(ok).replace("Version: 13", "Version: 8");
        assert_eq!(status(&upgrade(old.as_bytes(), &s, true)), 426);
    }

    #[test]
    fn an_endless_request_is_refused_at_the_bound_and_a_partial_one_waits() {
        let s = settings();
        assert!(matches!(
            upgrade(b"GET / HTTP/1.1\r\nHost", &s, true),
            Upgrade::More
        ));
        let mut endless = b"GET / HTTP/1.1\r\nX: ".to_vec();
        endless.resize(MAX_REQUEST, b'a');
        assert_eq!(status(&upgrade(&endless, &s, true)), 431);
    }
}
