//! A real HTTP/1.1 receiver for the webhook tests: a std `TcpListener` on
//! loopback that records every request (headers, body, the status it
//! answered) and answers with the status the test sets. It is the peer
//! the gateway talks to, not the thing tested. Keep-alive is served (the
//! gateway's client reuses connections); `stop` closes the listener and
//! every open connection, so the gateway sees a receiver that is down.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One request as received.
#[derive(Clone, Debug)]
pub struct Request {
    /// Header names in lower case.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    /// The status the receiver answered.
    pub answered: u16,
}

impl Request {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map_or("", String::as_str)
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

#[derive(Default)]
struct Shared {
    requests: Mutex<Vec<Request>>,
    arrived: Condvar,
    conns: Mutex<Vec<TcpStream>>,
}

pub struct Receiver {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    status: Arc<AtomicU16>,
    stopping: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Receiver {
    /// Listens on `addr` (port 0: any), answering 200.
    pub fn start(addr: SocketAddr) -> Receiver {
        let listener = TcpListener::bind(addr).expect("bind the receiver");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        let status = Arc::new(AtomicU16::new(200));
        let stopping = Arc::new(AtomicBool::new(false));
        let accept = {
            let (shared, status, stopping) = (shared.clone(), status.clone(), stopping.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stopping.load(Ordering::Acquire) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    if let Ok(clone) = stream.try_clone() {
                        shared.conns.lock().unwrap().push(clone);
                    }
                    let (shared, status) = (shared.clone(), status.clone());
                    std::thread::spawn(move || serve(stream, &shared, &status));
                }
            })
        };
        Receiver {
            addr,
            shared,
            status,
            stopping,
            accept: Some(accept),
        }
    }

    /// The status answered from now on.
    pub fn answer(&self, status: u16) {
        self.status.store(status, Ordering::Release);
    }

    /// Closes the listener and every connection (requests stay recorded).
    pub fn stop(&mut self) {
        self.stopping.store(true, Ordering::Release);
        let _ = TcpStream::connect(self.addr); // wakes the accept loop
        if let Some(t) = self.accept.take() {
            t.join().unwrap();
        }
        for c in self.shared.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    /// Waits (up to `timeout`) until `done` holds for the requests so far;
    /// returns them, or panics with `what` and what arrived.
    pub fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&[Request]) -> bool,
    ) -> Vec<Request> {
        let deadline = Instant::now() + timeout;
        let mut requests = self
            .shared
            .requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        loop {
            if done(&requests) {
                return requests.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "timed out waiting for {what}; got {} requests: {:#?}",
                requests.len(),
                requests.iter().map(|r| r.json()).collect::<Vec<_>>()
            );
            requests = self.shared.arrived.wait_timeout(requests, left).unwrap().0;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if self.accept.is_some() {
            self.stop();
        }
    }
}

/// Serves requests on one connection until it closes.
fn serve(stream: TcpStream, shared: &Shared, status: &AtomicU16) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let len: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let answered = status.load(Ordering::Acquire);
        let response =
            format!("HTTP/1.1 {answered} X\r\ncontent-length: 0\r\nconnection: keep-alive\r\n\r\n");
        // Recorded before answering: a test that saw the request may kill
        // the gateway before the answer is read.
        shared
            .requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Request {
                headers,
                body,
                answered,
            });
        shared.arrived.notify_all();
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}
