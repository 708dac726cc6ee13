//! TLS on every listener (issue #19 item 2) against real clients: our
//! native client session over a rustls client, `mosquitto_pub`/`_sub
//! --cafile` on the MQTT TLS listener, `curl --cacert` (and `--cert`) on the
//! admin port, our SDK and paho-mqtt over WebSocket over TLS (WSS); bad
//! input (plain bytes, TLS 1.0, a stalled handshake, a wrong client
//! certificate, bad upgrades and frames inside TLS); certificates reloaded
//! on SIGHUP.
//!
//! Certificates are minted per test with rcgen: a CA, and leaves for
//! `localhost` / 127.0.0.1 that it signs.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{next_message, TestServer};
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use surepush::client::{BlockingClient, Event, Gateway, TlsGateway, Transport};
use surepush::proto::{Push, Qos, UserId};

/// A CA that signs test certificates.
struct TestCa {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl TestCa {
    fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        TestCa {
            cert: params.self_signed(&key).unwrap(),
            key,
        }
    }

    /// A server certificate for `localhost` and 127.0.0.1: (cert PEM, key
    /// PEM, cert DER).
    fn server_cert(&self, cn: &str) -> (String, String, Vec<u8>) {
        self.leaf(cn, ExtendedKeyUsagePurpose::ServerAuth)
    }

    fn leaf(&self, cn: &str, usage: ExtendedKeyUsagePurpose) -> (String, String, Vec<u8>) {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key.serialize_pem(), cert.der().to_vec())
    }

    fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, self.cert.pem()).unwrap();
        path
    }
}

/// A gateway with TLS listeners next to the plain ones.
struct TlsNode {
    server: TestServer,
    /// The native protocol over TLS.
    tls: SocketAddr,
    /// MQTT over TLS.
    mqtt_tls: SocketAddr,
    /// WebSocket over TLS (`wss://`).
    wss: SocketAddr,
    ca: TestCa,
    /// The CA file clients trust.
    ca_file: PathBuf,
    cert_file: PathBuf,
    key_file: PathBuf,
    /// DER of the certificate the gateway was started with.
    first_cert: Vec<u8>,
    _dir: tempfile::TempDir,
}

fn port() -> SocketAddr {
    let port = surepush::server::limits::free_loopback_port().unwrap();
    format!("127.0.0.1:{port}").parse().unwrap()
}

impl TlsNode {
    /// `admin`: extra lines of the `[tls]` table for the admin port.
    fn start(shards: u16, admin: &str) -> TlsNode {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new("surepush test CA");
        let ca_file = ca.write(dir.path(), "ca.pem");
        let (cert, key, first_cert) = ca.server_cert("first");
        let cert_file = dir.path().join("cert.pem");
        let key_file = dir.path().join("key.pem");
        std::fs::write(&cert_file, cert).unwrap();
        std::fs::write(&key_file, key).unwrap();
        let (tls, mqtt_tls, ws, wss) = (port(), port(), port(), port());
        let top = format!(
            "[tls]\ncert = \"{}\"\nkey = \"{}\"\nlisten = \"{tls}\"\nmqtt_listen = \"{mqtt_tls}\"\n\
             ws_listen = \"{wss}\"\n{admin}\n\
             [websocket]\nenabled = true\nlisten = \"{ws}\"\n[core]\nconnect_timeout_ms = 1000\n",
            cert_file.display(),
            key_file.display(),
        );
        let mut server = TestServer::unstarted(shards, &top, "");
        server.spawn();
        TlsNode {
            server,
            tls,
            mqtt_tls,
            wss,
            ca,
            ca_file,
            cert_file,
            key_file,
            first_cert,
            _dir: dir,
        }
    }

    /// How our SDK reaches the TLS listener at `addr`.
    fn gateway_at(&self, addr: SocketAddr) -> Gateway {
        Gateway {
            addr,
            tls: Some(TlsGateway::with_ca_file(&self.ca_file, "localhost").unwrap()),
        }
    }

    /// How our SDK reaches the native TLS listener.
    fn gateway(&self) -> Gateway {
        self.gateway_at(self.tls)
    }

    /// Our SDK's client over TLS, live (replay done).
    fn connect(&self, user: u64, device: u64) -> BlockingClient {
        let c = BlockingClient::connect(
            self.gateway(),
            self.server.client_config(user, device),
            None,
            Duration::from_secs(5),
        )
        .expect("TLS connect");
        live(c)
    }

    /// Our SDK's client over WebSocket over TLS (`wss://`), live.
    fn connect_wss(&self, user: u64, device: u64) -> BlockingClient {
        let c = BlockingClient::connect_over(
            self.gateway_at(self.wss),
            &Transport::WebSocket { path: "/".into() },
            self.server.client_config(user, device),
            None,
            Duration::from_secs(5),
        )
        .expect("WSS connect");
        live(c)
    }
}

/// `c` once its replay is done.
fn live(mut c: BlockingClient) -> BlockingClient {
    match c.wait_for(Duration::from_secs(10), |e| {
        matches!(e, Event::CaughtUp | Event::Error(_))
    }) {
        Ok(Some(Event::CaughtUp)) => c,
        other => panic!("expected a live session, got {other:?}"),
    }
}

/// The certificate the gateway presented to `c`.
fn server_cert(c: &BlockingClient) -> Vec<u8> {
    c.peer_certificate().expect("a TLS session").to_vec()
}

/// Sends a QoS 1 message (its delivery, checked by the receiver, proves
/// it was stored).
fn send(c: &mut BlockingClient, to: u64, payload: &str) {
    c.send(
        UserId(to),
        Qos::AtLeastOnce,
        Bytes::copy_from_slice(payload.as_bytes()),
    )
    .expect("send");
}

/// The next message from someone else (own sends come back as echoes).
fn message(c: &mut BlockingClient) -> Push {
    loop {
        let p = next_message(c);
        if !p.echo {
            return p;
        }
    }
}

fn assert_message(p: &Push, from: u64, payload: &str) {
    assert_eq!(p.from, UserId(from));
    assert_eq!(p.payload, payload.as_bytes());
    assert_eq!(
        p.prev_seq.0 + 1,
        p.seq.0,
        "stored messages are numbered in order"
    );
}

/// Users on two shards over TLS: most connections are accepted on a shard
/// that does not own their user, so the TLS session is handed off with
/// the socket and continues on the owner. Plain and TLS clients talk to
/// each other through the same core.
#[test]
fn native_clients_over_tls_talk_across_shards_and_with_plain_clients() {
    let gw = TlsNode::start(2, "");
    let users: Vec<u64> = (7001..7007).collect();
    let mut clients: Vec<BlockingClient> = users.iter().map(|&u| gw.connect(u, 1)).collect();
    for (i, &to) in users.iter().enumerate() {
        let from = users[(i + 1) % users.len()];
        let sender = &mut clients[(i + 1) % users.len()];
        assert_eq!(server_cert(sender), gw.first_cert);
        send(sender, to, &format!("tls {from} to {to}"));
    }
    for (i, &to) in users.iter().enumerate() {
        let from = users[(i + 1) % users.len()];
        let p = message(&mut clients[i]);
        assert_message(&p, from, &format!("tls {from} to {to}"));
        assert_eq!(p.to, UserId(to));
    }
    // Plain → TLS and TLS → plain.
    let (mut plain, _) = gw.server.connect(7100, 1, None);
    plain
        .send(
            UserId(7001),
            Qos::AtLeastOnce,
            Bytes::from_static(b"from plain"),
        )
        .unwrap();
    assert_message(&message(&mut clients[0]), 7100, "from plain");
    send(&mut clients[1], 7100, "from tls");
    assert_message(&message(&mut plain), 7002, "from tls");
}

/// A large message and many small ones interleaved: the writer's gathered
/// chunks go through TLS records in order (no chunk lost or reordered).
#[test]
fn large_and_small_messages_over_tls_arrive_whole_and_in_order() {
    let gw = TlsNode::start(1, "");
    let mut rx = gw.connect(7201, 1);
    let mut tx = gw.connect(7202, 1);
    let big: String = (0..200_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let mut sent = Vec::new();
    for i in 0..50 {
        let payload = match i % 10 {
            0 => format!("{i}:{big}"),
            _ => format!("{i}:small"),
        };
        send(&mut tx, 7201, &payload);
        sent.push(payload);
    }
    for payload in &sent {
        assert_message(&message(&mut rx), 7202, payload);
    }
}

/// Issue #19 item 2: SIGHUP reloads the certificate: an open TLS session
/// keeps working, a new one gets the new certificate; a bad new file is
/// refused with its reason and the one in force stays.
#[test]
fn sighup_reloads_the_certificate_without_dropping_connections() {
    let gw = TlsNode::start(2, "");
    let mut old = gw.connect(7301, 1);
    let mut peer = gw.connect(7302, 1);
    let mut old_wss = gw.connect_wss(7305, 1);
    assert_eq!(server_cert(&old), gw.first_cert);
    assert_eq!(server_cert(&old_wss), gw.first_cert);

    let (cert, key, second) = gw.ca.server_cert("second");
    std::fs::write(&gw.cert_file, cert).unwrap();
    std::fs::write(&gw.key_file, key).unwrap();
    let before = gw.server.log.lock().unwrap().len();
    gw.server.sighup();
    gw.server
        .wait_for_line(before, |l| l.contains("reloaded for new connections"));

    let mut new = gw.connect(7303, 1);
    assert_eq!(server_cert(&new), second);
    assert_ne!(second, gw.first_cert);
    // The session opened before the reload still carries messages both ways.
    send(&mut old, 7302, "after reload, old session");
    assert_message(&message(&mut peer), 7301, "after reload, old session");
    send(&mut peer, 7301, "to the old session");
    assert_message(&message(&mut old), 7302, "to the old session");
    send(&mut new, 7301, "from the new session");
    assert_message(&message(&mut old), 7303, "from the new session");
    // WSS: the same certificate for new handshakes, the old session lives.
    let mut new_wss = gw.connect_wss(7306, 1);
    assert_eq!(server_cert(&new_wss), second);
    send(&mut old_wss, 7306, "old wss to new wss");
    assert_message(&message(&mut new_wss), 7305, "old wss to new wss");
    send(&mut new_wss, 7305, "new wss to old wss");
    assert_message(&message(&mut old_wss), 7306, "new wss to old wss");

    // A broken key: refused, named, and the second certificate stays.
    std::fs::write(&gw.key_file, "-----BEGIN PRIVATE KEY-----\nnot base64\n").unwrap();
    let before = gw.server.log.lock().unwrap().len();
    gw.server.sighup();
    let line = gw
        .server
        .wait_for_line(before, |l| l.contains("TLS certificate not reloaded"));
    let line = gw.server.log.lock().unwrap()[line].clone();
    assert!(line.contains("tls.key"), "{line}");
    let mut after = gw.connect(7304, 1);
    assert_eq!(server_cert(&after), second);
    send(&mut after, 7301, "still served");
    assert_message(&message(&mut old), 7304, "still served");
}

/// Reads what the gateway writes until it closes (or 10 s pass); how long
/// that took.
fn read_until_closed(stream: &mut TcpStream) -> (Vec<u8>, Duration) {
    let start = Instant::now();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (got, start.elapsed()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return (got, start.elapsed())
            }
            Err(e) => panic!("the gateway did not close the connection: {e}"),
        }
    }
}

/// A TLS alert record: content type 21, then level and description.
fn alert(bytes: &[u8]) -> Option<(u8, u8)> {
    match bytes {
        [21, 3, _, 0, 2, level, description, ..] => Some((*level, *description)),
        _ => None,
    }
}

/// A TLS 1.0 ClientHello (no supported_versions extension): one cipher
/// suite and the signature_algorithms extension (without it rustls
/// refuses the hello before it looks at the version).
fn tls10_client_hello() -> Vec<u8> {
    let mut body = vec![3, 1]; // client_version TLS 1.0
    body.extend_from_slice(&[7u8; 32]); // random
    body.push(0); // no session id
    body.extend_from_slice(&[0, 2, 0x00, 0x2f]); // TLS_RSA_WITH_AES_128_CBC_SHA
    body.extend_from_slice(&[1, 0]); // null compression
                                     // extensions: signature_algorithms = [rsa_pkcs1_sha256]
    body.extend_from_slice(&[0, 8, 0x00, 0x0d, 0, 4, 0, 2, 0x04, 0x01]);
    let mut handshake = vec![1, 0, (body.len() >> 8) as u8, body.len() as u8];
    handshake.extend_from_slice(&body);
    let mut record = vec![
        22,
        3,
        1,
        (handshake.len() >> 8) as u8,
        handshake.len() as u8,
    ];
    record.extend_from_slice(&handshake);
    record
}

/// docs/BAD_INPUT.md (TLS rows): plain protocol bytes, a TLS 1.0 hello and
/// a stalled handshake on TLS ports are refused and closed; the gateway
/// goes on serving TLS and plain clients.
#[test]
fn bad_input_on_tls_ports_is_refused_and_closed() {
    let gw = TlsNode::start(1, "");
    for addr in [gw.tls, gw.mqtt_tls] {
        // A plain MQTT CONNECT / native bytes where a ClientHello belongs.
        let mut plain = TcpStream::connect(addr).unwrap();
        plain
            .write_all(b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00")
            .unwrap();
        let (got, _) = read_until_closed(&mut plain);
        assert!(
            got.is_empty() || alert(&got).is_some(),
            "only an alert, if anything: {got:?}"
        );

        // TLS 1.0: protocol_version (70), fatal.
        let mut old = TcpStream::connect(addr).unwrap();
        old.write_all(&tls10_client_hello()).unwrap();
        let (got, _) = read_until_closed(&mut old);
        assert_eq!(alert(&got), Some((2, 70)), "{got:?}");

        // Half a ClientHello, then nothing: closed at the connect timeout
        // (1 s here), not held open.
        let mut stalled = TcpStream::connect(addr).unwrap();
        stalled.write_all(&tls10_client_hello()[..5]).unwrap();
        let (_, took) = read_until_closed(&mut stalled);
        assert!(
            took >= Duration::from_millis(800) && took < Duration::from_secs(5),
            "closed after {took:?}"
        );
    }
    let mut a = gw.connect(7401, 1);
    let (mut b, _) = gw.server.connect(7402, 1, None);
    send(&mut a, 7402, "still serving");
    assert_message(&message(&mut b), 7401, "still serving");
}

fn assert_ok(out: &std::process::Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// mosquitto's clients with `--cafile` on the MQTT TLS listener, next to
/// a publisher on the plain MQTT listener.
#[test]
fn mosquitto_clients_over_tls_verify_the_gateway_and_round_trip() {
    let gw = TlsNode::start(2, "");
    let tls_port = gw.mqtt_tls.port().to_string();
    let plain_port = gw.server.mqtt.port().to_string();
    let ca = gw.ca_file.to_str().unwrap().to_string();
    let sub_token = gw.server.token(7502, 1);
    let sub = |extra: &[&str]| {
        Command::new("mosquitto_sub")
            .args(["-h", "localhost", "-p", &tls_port, "--cafile", &ca])
            .args(["-u", "x", "-P", &sub_token, "-t", "user/7502", "-q", "1"])
            .args(["-c", "-i", "tls-sub"])
            .args(extra)
            .output()
            .expect("mosquitto_sub (apt-get install mosquitto-clients)")
    };
    // Register a persistent session over TLS, then publish while it is away.
    let registered = sub(&["-W", "1"]);
    assert!(registered.stdout.is_empty(), "{registered:?}");
    let publish = |port: &str, tls: bool, msg: &str| {
        let token = gw.server.token(7501, 1);
        let mut cmd = Command::new("mosquitto_pub");
        cmd.args(["-h", "localhost", "-p", port]);
        if tls {
            cmd.args(["--cafile", &ca]);
        }
        let out = cmd
            .args([
                "-u",
                "x",
                "-P",
                &token,
                "-t",
                "user/7502",
                "-q",
                "1",
                "-m",
                msg,
            ])
            .output()
            .expect("mosquitto_pub");
        assert_ok(&out, "mosquitto_pub");
    };
    publish(&tls_port, true, "over tls");
    publish(&plain_port, false, "over plain");
    let out = sub(&["-C", "2", "-W", "20", "-v"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .collect::<Vec<_>>(),
        vec!["user/7502 over tls", "user/7502 over plain"]
    );
    // A client that does not trust the gateway's CA refuses it.
    let other = TestCa::new("another CA");
    let other_file = other.write(gw._dir.path(), "other-ca.pem");
    let out = Command::new("mosquitto_pub")
        .args(["-h", "localhost", "-p", &tls_port, "--cafile"])
        .arg(&other_file)
        .args(["-u", "x", "-P", &sub_token, "-t", "user/7502", "-m", "x"])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "an untrusted certificate was accepted"
    );
}

/// `curl` against the admin port over HTTPS; (exit status, HTTP code).
fn curl(url: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "10",
        ])
        .args(args)
        .arg(url)
        .output()
        .expect("curl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The admin port with HTTPS and client certificates: curl with
/// `--cacert` and a client certificate from the configured CA is served;
/// none, or one from another CA, is refused in the handshake; plain HTTP
/// gets no answer.
#[test]
fn admin_https_with_client_certificates_serves_only_trusted_clients() {
    let dir = tempfile::tempdir().unwrap();
    let clients = TestCa::new("admin clients CA");
    let clients_file = clients.write(dir.path(), "clients-ca.pem");
    let gw = TlsNode::start(
        1,
        &format!(
            "admin = true\nadmin_client_ca = \"{}\"",
            clients_file.display()
        ),
    );
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    let (cert, key, _) = clients.leaf("ops", ExtendedKeyUsagePurpose::ClientAuth);
    let (cert, key) = (write("client.pem", &cert), write("client-key.pem", &key));
    let stranger = TestCa::new("stranger CA");
    let (s_cert, s_key, _) = stranger.leaf("ops", ExtendedKeyUsagePurpose::ClientAuth);
    let (s_cert, s_key) = (write("s.pem", &s_cert), write("s-key.pem", &s_key));
    let ca = gw.ca_file.to_str().unwrap();
    let url = format!("https://localhost:{}/healthz", gw.server.admin.port());

    let served = curl(&url, &["--cacert", ca, "--cert", &cert, "--key", &key]);
    assert_eq!(served, (true, "200".to_string()));
    let no_cert = curl(&url, &["--cacert", ca]);
    assert!(!no_cert.0 || no_cert.1 == "000", "{no_cert:?}");
    let wrong = curl(&url, &["--cacert", ca, "--cert", &s_cert, "--key", &s_key]);
    assert!(!wrong.0 || wrong.1 == "000", "{wrong:?}");
    let plain = curl(
        &format!("http://localhost:{}/healthz", gw.server.admin.port()),
        &[],
    );
    assert!(!plain.0 || plain.1 == "000", "{plain:?}");
    // Still serving after the refusals.
    assert_eq!(
        curl(&url, &["--cacert", ca, "--cert", &cert, "--key", &key]),
        (true, "200".to_string())
    );
}

/// HTTPS on the admin port without client certificates: `curl --cacert`.
#[test]
fn admin_https_serves_curl_with_the_ca() {
    let gw = TlsNode::start(1, "admin = true");
    let url = format!("https://localhost:{}/healthz", gw.server.admin.port());
    let ca = gw.ca_file.to_str().unwrap();
    assert_eq!(curl(&url, &["--cacert", ca]), (true, "200".to_string()));
    // Without the CA, curl refuses the gateway's certificate.
    assert!(!curl(&url, &[]).0);
}

/// Issue #19 item 1/2: WebSocket over TLS (`tls.ws_listen`). Users on two
/// shards over WSS: most are accepted by a shard that does not own them,
/// and their TLS session and WebSocket state move together to the owner
/// (`connections_adopted_total{layers="wss"}` counts it). WSS, TLS and
/// plain TCP clients talk to each other through the same core.
#[test]
fn native_clients_over_wss_talk_across_shards_with_tls_and_plain_clients() {
    let gw = TlsNode::start(2, "");
    // 16 users: all accepted by their owner has odds of 2^-16.
    let users: Vec<u64> = (7601..7617).collect();
    let mut clients: Vec<BlockingClient> = users.iter().map(|&u| gw.connect_wss(u, 1)).collect();
    for (i, &to) in users.iter().enumerate() {
        let sender = &mut clients[(i + 1) % users.len()];
        assert_eq!(server_cert(sender), gw.first_cert, "verified over WSS");
        let from = users[(i + 1) % users.len()];
        for n in 0..2 {
            send(sender, to, &format!("wss {from} to {to} #{n}"));
        }
    }
    for (i, &to) in users.iter().enumerate() {
        let from = users[(i + 1) % users.len()];
        for n in 0..2 {
            let p = message(&mut clients[i]);
            assert_message(&p, from, &format!("wss {from} to {to} #{n}"));
            assert_eq!(p.to, UserId(to));
        }
    }
    // WSS ↔ TLS ↔ plain.
    let mut tls = gw.connect(7650, 1);
    let (mut plain, _) = gw.server.connect(7651, 1, None);
    send(&mut clients[0], 7650, "wss to tls");
    assert_message(&message(&mut tls), 7601, "wss to tls");
    send(&mut tls, 7602, "tls to wss");
    assert_message(&message(&mut clients[1]), 7650, "tls to wss");
    plain
        .send(
            UserId(7603),
            Qos::AtLeastOnce,
            Bytes::from_static(b"plain to wss"),
        )
        .unwrap();
    assert_message(&message(&mut clients[2]), 7651, "plain to wss");
    let (_, metrics) = gw.server.http("GET", "/metrics", "", true);
    let adopted = |layers: &str| -> u64 {
        metrics
            .lines()
            .filter(|l| l.starts_with("surepush_connections_adopted_total{"))
            .filter(|l| l.contains(&format!("layers=\"{layers}\"")))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum()
    };
    let wss = adopted("wss");
    assert!(
        wss > 0 && wss <= users.len() as u64,
        "WSS connections handed to their owner: {wss}\n{metrics}"
    );
    assert_eq!(adopted("ws"), 0, "no plain WebSocket client here");
}

// Issue #19: MQTT over WebSocket over TLS with a real client (paho-mqtt,
// `transport="websockets"` and `tls_set` with the test CA), 3.1.1 and 5,
// on two shards.
#[test]
fn paho_clients_speak_mqtt_over_wss() {
    let gw = TlsNode::start(2, "");
    let ca = gw.ca_file.to_str().unwrap().to_string();
    for scenario in ["roundtrip", "room", "will"] {
        let extra = [
            "--room",
            "31",
            "--transport",
            "websockets",
            "--ws-path",
            "/",
            "--cafile",
            &ca,
        ];
        let out = common::paho_check(&gw.server, gw.wss.port(), scenario, &extra);
        common::assert_ok(&out, &format!("{scenario} over WSS"));
    }
}

/// A raw WebSocket client inside TLS, for bad input and hand-off edges.
mod raw_wss {
    use std::io::Write;
    use std::net::{SocketAddr, TcpStream};
    use std::path::Path;
    use std::sync::Arc;
    use std::time::Duration;

    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    use rustls::{ClientConfig, ClientConnection, StreamOwned};

    pub type Tls = StreamOwned<ClientConnection, TcpStream>;

    /// A TLS connection to `addr` trusting the CA in `ca` (handshake done).
    pub fn connect(addr: SocketAddr, ca: &Path) -> Tls {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        #[allow(deprecated)] // ring, as the gateway
        let provider = rustls::crypto::ring::default_provider();
        let config = ClientConfig::builder_with_provider(Arc::new(provider))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from("localhost").unwrap();
        let conn = ClientConnection::new(Arc::new(config), name).unwrap();
        let tcp = TcpStream::connect(addr).unwrap();
        tcp.set_nodelay(true).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut tls = StreamOwned::new(conn, tcp);
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock).expect("TLS handshake");
        }
        tls
    }

    /// An upgrade request for subprotocol `protocol` on `path`.
    pub fn request(path: &str, protocol: &str) -> String {
        format!(
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Protocol: {protocol}\r\n\r\n"
        )
    }

    pub use crate::common::ws_wire::{read_frame, read_head};

    /// A client frame (masked unless `masked` is false).
    pub fn frame(first: u8, payload: &[u8], masked: bool) -> Vec<u8> {
        crate::common::ws_wire::masked(
            first,
            payload,
            masked.then_some(crate::common::ws_wire::MASK),
        )
    }

    /// Writes `bytes` and sends them now.
    pub fn write(s: &mut Tls, bytes: &[u8]) {
        s.write_all(bytes).unwrap();
        s.flush().unwrap();
    }
}

use common::connect_frame;

/// Issue #19 items 1 and 3: what the accepting shard had begun travels
/// with a WSS connection to the owner: a WebSocket ping sent before the
/// hello is answered (its pong was queued on the accepting shard), and a
/// native frame whose bytes were only partly read completes there. 8 users
/// on 2 shards: most are accepted by a shard that does not own them.
#[test]
fn a_wss_connection_keeps_its_pong_and_partial_frame_across_the_handoff() {
    use surepush::proto::{Decoder, Frame};
    let gw = TlsNode::start(2, "");
    for user in 7701..=7708u64 {
        let mut s = raw_wss::connect(gw.wss, &gw.ca_file);
        raw_wss::write(&mut s, raw_wss::request("/", "surepush.v1").as_bytes());
        let head = raw_wss::read_head(&mut s);
        assert!(head.starts_with("HTTP/1.1 101"), "{head:?}");
        let ping_payload = format!("ping {user}");
        let connect = connect_frame(&gw.server, user);
        let mut native_ping = bytes::BytesMut::new();
        Frame::Ping(0xbeef_0000 + user).encode(&mut native_ping);
        // A WebSocket ping, then CONNECT and a native PING in one binary
        // message, cut 3 bytes before its end.
        let mut wire = raw_wss::frame(0x89, ping_payload.as_bytes(), true);
        wire.extend(raw_wss::frame(
            0x82,
            &[&connect[..], &native_ping[..]].concat(),
            true,
        ));
        let (first, last) = wire.split_at(wire.len() - 3);
        raw_wss::write(&mut s, first);
        let mut decoder = Decoder::new(1 << 20);
        let mut pong = None;
        let mut next = |s: &mut raw_wss::Tls, pong: &mut Option<Vec<u8>>| loop {
            if let Some(frame) = decoder.decode().unwrap() {
                return frame;
            }
            match raw_wss::read_frame(s).expect("open") {
                (0x2, payload) => decoder.feed(&payload),
                (0xa, payload) => *pong = Some(payload),
                other => panic!("user {user}: unexpected frame {other:?}"),
            }
        };
        assert!(
            matches!(next(&mut s, &mut pong), Frame::ConnAck(_)),
            "user {user}"
        );
        raw_wss::write(&mut s, last);
        match next(&mut s, &mut pong) {
            Frame::Pong(n) => assert_eq!(n, 0xbeef_0000 + user, "user {user}"),
            other => panic!("user {user}: expected PONG, got {other:?}"),
        }
        assert_eq!(
            pong.as_deref(),
            Some(ping_payload.as_bytes()),
            "user {user}: the WebSocket ping before the hello is answered"
        );
    }
}

/// docs/BAD_INPUT.md (WSS rows): on the WSS port, bytes that are not TLS
/// are refused in the handshake; inside TLS a bad upgrade gets its HTTP
/// status, a frame that breaks RFC 6455 its close code, and an upgrade
/// that never comes 408 at the connect timeout; the gateway goes on
/// serving WSS.
#[test]
fn bad_input_on_the_wss_port_is_refused_inside_tls() {
    let gw = TlsNode::start(1, "");
    // A plain WebSocket upgrade where a ClientHello belongs.
    let mut plain = TcpStream::connect(gw.wss).unwrap();
    plain
        .write_all(raw_wss::request("/", "surepush.v1").as_bytes())
        .unwrap();
    let (got, _) = read_until_closed(&mut plain);
    assert!(
        got.is_empty() || alert(&got).is_some(),
        "only an alert, if anything: {got:?}"
    );
    // TLS fine, then a bad upgrade: its status, inside TLS.
    for (path, protocol, status) in [("/other", "surepush.v1", "404"), ("/", "chat", "400")] {
        let mut s = raw_wss::connect(gw.wss, &gw.ca_file);
        raw_wss::write(&mut s, raw_wss::request(path, protocol).as_bytes());
        let head = raw_wss::read_head(&mut s);
        assert!(
            head.starts_with(&format!("HTTP/1.1 {status}")),
            "{path} {protocol}: {head:?}"
        );
    }
    // Upgraded, then an unmasked client frame: 1002.
    let mut s = raw_wss::connect(gw.wss, &gw.ca_file);
    raw_wss::write(&mut s, raw_wss::request("/", "surepush.v1").as_bytes());
    assert!(raw_wss::read_head(&mut s).starts_with("HTTP/1.1 101"));
    raw_wss::write(&mut s, &raw_wss::frame(0x82, b"x", false));
    let frames: Vec<_> = std::iter::from_fn(|| raw_wss::read_frame(&mut s)).collect();
    let (opcode, payload) = frames.last().expect("a close frame");
    assert_eq!(*opcode, 0x8, "{frames:?}");
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1002);
    // TLS done, no upgrade request: 408 at the connect timeout (1 s).
    let started = Instant::now();
    let mut idle = raw_wss::connect(gw.wss, &gw.ca_file);
    let head = raw_wss::read_head(&mut idle);
    assert!(head.starts_with("HTTP/1.1 408"), "{head:?}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_secs(5),
        "{took:?}"
    );
    // Still serving.
    let mut a = gw.connect_wss(7801, 1);
    let mut b = gw.connect_wss(7802, 1);
    send(&mut a, 7802, "still serving wss");
    assert_message(&message(&mut b), 7801, "still serving wss");
}
