//! What the browser example needs from the admin server (issue #19 item
//! 4): static files under a path, and the demo token route that is off by
//! default.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;

use super::*;

/// One raw request on its own connection; the whole answer (head and body).
fn exchange(addr: SocketAddr, method: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    let raw = format!("{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    s.write_all(raw.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn status(answer: &str) -> u16 {
    answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn header<'a>(answer: &'a str, name: &str) -> Option<&'a str> {
    let (head, _) = answer.split_once("\r\n\r\n")?;
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn body(answer: &str) -> &str {
    answer.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

fn serving(static_files: Option<StaticFiles>, demo_token_ttl_s: Option<u64>) -> SocketAddr {
    let config = AdminHttpConfig {
        admin_token: Some("sekret".into()),
        static_files,
        demo_token_ttl_s,
        ..AdminHttpConfig::default()
    };
    start_configured(false, true, config)
}

/// A site directory inside `root`, and a secret file next to it (outside)
/// with a symbolic link to it from inside.
fn site(root: &Path) -> std::path::PathBuf {
    let dir = root.join("site");
    std::fs::create_dir_all(dir.join("sdk")).unwrap();
    std::fs::write(dir.join("index.html"), "<h1>chat</h1>").unwrap();
    std::fs::write(dir.join("app.js"), "export const x = 1;").unwrap();
    std::fs::write(dir.join("sdk/index.js"), "export {};").unwrap();
    std::fs::write(root.join("secret.txt"), "do not serve").unwrap();
    std::os::unix::fs::symlink(root.join("secret.txt"), dir.join("leak.txt")).unwrap();
    dir
}

#[test]
fn static_files_are_served_under_their_path_and_nothing_outside_it() {
    let root = tempfile::tempdir().unwrap();
    let dir = site(root.path());
    let addr = serving(Some(StaticFiles::new(dir, "/web/".into())), None);

    let index = exchange(addr, "GET", "/web/");
    assert_eq!(status(&index), 200, "{index}");
    assert_eq!(body(&index), "<h1>chat</h1>");
    assert_eq!(
        header(&index, "content-type"),
        Some("text/html; charset=utf-8")
    );
    let js = exchange(addr, "GET", "/web/sdk/index.js");
    assert_eq!((status(&js), body(&js)), (200, "export {};"));
    assert_eq!(
        header(&js, "content-type"),
        Some("text/javascript; charset=utf-8")
    );
    let head = exchange(addr, "HEAD", "/web/app.js");
    assert_eq!((status(&head), body(&head)), (200, ""));
    let redirect = exchange(addr, "GET", "/web");
    assert_eq!(status(&redirect), 308);
    assert_eq!(header(&redirect, "location"), Some("/web/"));

    for outside in [
        "/web/../secret.txt",
        "/web/sdk/../../secret.txt",
        "/web/%2e%2e/secret.txt",
        "/web/leak.txt",
        "/web/missing.js",
        "/web/sdk",
    ] {
        let answer = exchange(addr, "GET", outside);
        assert_eq!(status(&answer), 404, "{outside}: {answer}");
        assert!(!answer.contains("do not serve"), "{outside}");
    }
    assert_eq!(status(&exchange(addr, "POST", "/web/app.js")), 405);
    // The API around it is unchanged.
    assert_eq!(status(&exchange(addr, "GET", "/healthz")), 200);
    assert_eq!(status(&exchange(addr, "GET", "/v1/nothing")), 404);
}

#[test]
fn without_a_static_dir_nothing_is_served() {
    let addr = serving(None, None);
    assert_eq!(status(&exchange(addr, "GET", "/web/")), 404);
    assert_eq!(status(&exchange(addr, "GET", "/web/index.html")), 404);
}

#[test]
fn demo_tokens_are_off_by_default_and_mint_short_lived_tokens_when_on() {
    let demo = r#"{"user": 42, "device": 7}"#;
    let off = serving(None, AdminHttpConfig::default().demo_token_ttl_s);
    let (code, answer) = post(off, "/demo/token", demo, None);
    assert_eq!(code, 404, "{answer}");
    assert!(answer.contains("not_found"), "{answer}");
    // Off even for the admin: the route does not exist.
    assert_eq!(post(off, "/demo/token", demo, Some("sekret")).0, 404);

    let on = serving(None, Some(600));
    let (code, answer) = post(on, "/demo/token", demo, None);
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer, r#"{"token":"token-42-7-600","ttl_s":600}"#);
    let group_id = format!(r#"{{"user": {}, "device": 1}}"#, 1u64 << 62);
    for bad in [
        group_id.as_str(),
        r#"{"user": 1}"#,
        r#"{"user": 1, "device": 1, "ttl_s": 9}"#,
    ] {
        assert_eq!(post(on, "/demo/token", bad, None).0, 400, "{bad}");
    }
}
