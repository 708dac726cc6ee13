//! A wake-up flag one task waits on, held inline in the struct it signals
//! about ([`super::ConnIo`]).
//!
//! Every connection needs three (output queued, closing, reader gone), and
//! a glommio `local_channel` costs a heap allocation of ~110 bytes each
//! plus a handle on both sides: thousands of idle connections paid ~330
//! bytes apiece for three bits (issue #17 goal 4, found with a heap
//! profile). A [`Signal`] is a `Cell<bool>` and the waiter's waker.
//!
//! Ground rules: one waiter at a time (the connection's write loop); the
//! raising side never blocks and never runs the waiter inline (waking only
//! schedules it).

use std::cell::Cell;
use std::future::poll_fn;
use std::task::{Context, Poll, Waker};

/// A flag raised by one side and awaited by one task.
#[derive(Default)]
pub(crate) struct Signal {
    raised: Cell<bool>,
    waiter: Cell<Option<Waker>>,
}

impl Signal {
    /// Raises the flag and wakes the waiter, if one waits.
    pub(crate) fn raise(&self) {
        self.raised.set(true);
        self.nudge();
    }

    /// Wakes the waiter without raising the flag (it has another reason
    /// to look: [`super::ConnIo::stop_writer`]).
    pub(crate) fn nudge(&self) {
        if let Some(waker) = self.waiter.take() {
            waker.wake();
        }
    }

    /// Lowers the flag (what it said no longer holds).
    pub(crate) fn lower(&self) {
        self.raised.set(false);
    }

    /// Whether the flag is raised (and not yet taken).
    pub(crate) fn is_raised(&self) -> bool {
        self.raised.get()
    }

    /// Waits until the flag is raised and lowers it again: a later
    /// [`Signal::raise`] wakes the next wait (raises in between coalesce).
    pub(crate) async fn take(&self) {
        self.wait(true).await
    }

    /// Waits until the flag is raised and leaves it raised: for events that
    /// happen once (every later wait returns at once).
    pub(crate) async fn raised(&self) {
        self.wait(false).await
    }

    async fn wait(&self, lower: bool) {
        poll_fn(|cx| self.poll_wait(cx, lower)).await
    }

    /// [`Signal::take`] as a poll.
    pub(crate) fn poll_take(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.poll_wait(cx, true)
    }

    fn poll_wait(&self, cx: &mut Context<'_>, lower: bool) -> Poll<()> {
        if self.raised.get() {
            if lower {
                self.raised.set(false);
            }
            self.waiter.set(None);
            return Poll::Ready(());
        }
        let waker = match self.waiter.take() {
            Some(w) if w.will_wake(cx.waker()) => w,
            _ => cx.waker().clone(),
        };
        self.waiter.set(Some(waker));
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::Signal;
    use futures_lite::future;
    use std::future::Future;
    use std::rc::Rc;

    /// Runs `f` on a glommio executor of its own (a signal's waiter is a
    /// task).
    fn on_executor(f: impl Future<Output = ()> + 'static) {
        glommio::LocalExecutorBuilder::default()
            .io_memory(512 << 10)
            .make()
            .expect("executor")
            .run(f);
    }

    #[test]
    fn take_lowers_the_flag_and_coalesces_raises() {
        on_executor(async {
            let s = Rc::new(Signal::default());
            s.raise();
            s.raise();
            s.take().await;
            // Lowered: the next take waits for the next raise.
            assert!(future::poll_once(s.take()).await.is_none());
            let raiser = s.clone();
            glommio::spawn_local(async move { raiser.raise() }).detach();
            s.take().await;
            assert!(future::poll_once(s.take()).await.is_none());
        });
    }

    #[test]
    fn raised_stays_raised() {
        on_executor(async {
            let s = Rc::new(Signal::default());
            assert!(future::poll_once(s.raised()).await.is_none());
            let raiser = s.clone();
            glommio::spawn_local(async move { raiser.raise() }).detach();
            s.raised().await;
            s.raised().await;
            assert!(future::poll_once(s.raised()).await.is_some());
        });
    }
}
