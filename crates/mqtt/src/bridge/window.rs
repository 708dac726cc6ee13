//! The replay window (issue #24): how much of an inbox replay a session
//! holds, how much of it is on the wire, and when the next page is read.
//!
//! Rules:
//! - the bridge holds at most `inflight` replayed messages (sent and not
//!   acknowledged, or read and waiting to be sent): a page is asked for
//!   no more than the room left, so the count bound is exact;
//! - reading ahead stops while the held payload reaches `inflight_bytes`;
//!   the page read last may pass it by up to one page (the core keeps a
//!   page within `core.max_frame`);
//! - at most `inflight` less a reserve (up to a page, at most half the
//!   window) are on the wire unacknowledged, and no more than the client's
//!   Receive Maximum: the reserve waits in the bridge, so every PUBACK that
//!   frees a slot finds the next PUBLISH ready and answers it at once.
//!   That answer is what carries the TCP acknowledgement a client without
//!   TCP_NODELAY waits for before it sends its next PUBACKs (Nagle); with
//!   nothing to send, the server's delayed ACK held them ~40 ms per window
//!   (mosquitto streams the same way with `max_inflight_messages` 20);
//! - the next page is asked while at least half the reserve is still
//!   waiting, so a page read does not leave the wire idle either.
//!
//! Pure arithmetic: `outbound.rs` applies it.

/// The replay window's bounds (from `BridgeParams`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct ReplayWindow {
    /// Replayed messages held at most.
    count: usize,
    /// Replayed payload bytes held before reading ahead stops.
    bytes: usize,
    /// Items per page asked of the core.
    page: usize,
}

impl ReplayWindow {
    pub(super) fn new(count: u32, bytes: usize, page: u32) -> ReplayWindow {
        ReplayWindow {
            count: (count as usize).max(1),
            bytes: bytes.max(1),
            page: (page as usize).max(1),
        }
    }

    /// Messages kept waiting in the bridge, ready for the next PUBACK.
    fn reserve(&self) -> usize {
        self.page.min(self.count / 2)
    }

    /// QoS 1/2 PUBLISHes on the wire unacknowledged at most, for a client
    /// whose Receive Maximum is `client_receive_max`.
    pub(super) fn send_max(&self, client_receive_max: usize) -> usize {
        (self.count - self.reserve()).min(client_receive_max).max(1)
    }

    /// The limit of the next page to ask for while `held` replayed messages
    /// of `held_bytes` payload are held, or `None`: not now.
    pub(super) fn next_page(&self, held: usize, held_bytes: usize) -> Option<u32> {
        let room = self.count.saturating_sub(held);
        let worth = (self.reserve() / 2).max(1);
        if room < worth || held_bytes >= self.bytes {
            return None;
        }
        Some(room.min(self.page) as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::ReplayWindow;

    #[test]
    fn the_default_window_keeps_a_page_in_reserve() {
        let w = ReplayWindow::new(256, 1 << 20, 64);
        assert_eq!(w.send_max(65_535), 192);
        assert_eq!(w.send_max(10), 10, "the client's Receive Maximum bounds it");
        assert_eq!(w.next_page(0, 0), Some(64));
        assert_eq!(w.next_page(224, 0), Some(32));
        assert_eq!(w.next_page(225, 0), None, "less than half the reserve");
        assert_eq!(w.next_page(0, 1 << 20), None, "the byte bound");
    }

    #[test]
    fn held_plus_the_page_asked_never_passes_the_count() {
        for count in 1..=80u32 {
            for page in 1..=70u32 {
                let w = ReplayWindow::new(count, usize::MAX, page);
                let send = w.send_max(usize::MAX);
                assert!(send >= 1 && send <= count as usize, "{count} {page}");
                for held in 0..=count as usize + 2 {
                    if let Some(limit) = w.next_page(held, 0) {
                        assert!(limit >= 1, "{count} {page} {held}");
                        assert!(held + limit as usize <= count as usize);
                    }
                }
                // An empty window always reads.
                assert!(w.next_page(0, 0).is_some());
            }
        }
    }

    #[test]
    fn a_small_window_still_keeps_a_reserve() {
        // As mosquitto's default `max_inflight_messages` 20.
        let w = ReplayWindow::new(20, 1 << 20, 64);
        assert_eq!(w.send_max(65_535), 10);
        assert_eq!(w.next_page(15, 0), Some(5));
        assert_eq!(w.next_page(16, 0), None);
        let one = ReplayWindow::new(1, 1 << 20, 64);
        assert_eq!((one.send_max(65_535), one.next_page(0, 0)), (1, Some(1)));
        assert_eq!(one.next_page(1, 0), None);
    }
}
