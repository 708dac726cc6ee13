//! One admin connection: HTTP/1.1 with keep-alive, deadlines kept on the
//! glommio side.
//!
//! hyper's own header-read timeout needs a thread-safe timer that glommio
//! lacks (MACHINE-NOTES), so a watchdog races the connection instead:
//!
//! - from the accept, and from the end of each answer, the next request's
//!   head must arrive within `request_timeout` (an idle keep-alive
//!   connection closes then, and a client trickling a header slowly cannot
//!   hold one open);
//! - once its head is read, a request (body, work, answer) gets
//!   `request_timeout` again;
//! - when the server stops, an idle connection closes at once and a busy
//!   one after its answer (or its deadline).
//!
//! A client's `Connection: close` ends the connection after the answer, as
//! HTTP/1.1 says.

use std::cell::Cell;
use std::convert::Infallible;
use std::future::Future;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::future;
use hyper::body::Incoming;
use hyper::{Request, Response};

/// How often an idle connection looks at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(50);

/// The watchdog's view of the connection.
struct Deadline {
    at: Cell<Instant>,
    busy: Cell<bool>,
}

/// Serves requests on `stream` with `handle` until the client closes, a
/// deadline passes or `stop` is set.
pub(super) async fn serve<S, H, F>(
    stream: S,
    handle: H,
    request_timeout: Duration,
    stop: Rc<Cell<bool>>,
) where
    S: futures_lite::io::AsyncRead + futures_lite::io::AsyncWrite + Unpin + 'static,
    H: Fn(Request<Incoming>) -> F + 'static,
    F: Future<Output = Response<http_body_util::Full<bytes::Bytes>>> + 'static,
{
    let deadline = Rc::new(Deadline {
        at: Cell::new(Instant::now() + request_timeout),
        busy: Cell::new(false),
    });
    let watched = deadline.clone();
    let handle = Rc::new(handle);
    let service = hyper::service::service_fn(move |req| {
        let deadline = watched.clone();
        let handle = handle.clone();
        async move {
            deadline.busy.set(true);
            deadline.at.set(Instant::now() + request_timeout);
            let resp = handle(req).await;
            deadline.busy.set(false);
            deadline.at.set(Instant::now() + request_timeout);
            Ok::<_, Infallible>(resp)
        }
    });
    let io = smol_hyper::rt::FuturesIo::new(stream);
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(io, service);
    let ended = future::or(async { Ended::Served(conn.await) }, async {
        loop {
            let now = Instant::now();
            if now >= deadline.at.get() {
                return Ended::Deadline;
            }
            if stop.get() && !deadline.busy.get() {
                return Ended::Stopping;
            }
            glommio::timer::sleep((deadline.at.get() - now).min(STOP_POLL)).await;
        }
    })
    .await;
    match ended {
        Ended::Served(Err(e)) => tracing::debug!(error = %e, "admin connection error"),
        Ended::Deadline => tracing::debug!("admin connection closed at its deadline"),
        Ended::Served(Ok(())) | Ended::Stopping => {}
    }
}

/// Why a connection ended.
enum Ended {
    /// hyper finished (the client closed, or asked to).
    Served(Result<(), hyper::Error>),
    /// A deadline passed.
    Deadline,
    /// The server stops and the connection was idle.
    Stopping,
}
