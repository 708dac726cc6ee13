//! MQTT 5 Message Expiry Interval of stored messages (issue #21 item 3):
//! a message is stored with the interval its publisher gave and the
//! gateway's receive time; when it is handed to a subscriber's connection
//! the interval left is what the PUBLISH carries (MQTT-3.3.2-6), and once
//! none is left it is not sent (MQTT-3.3.2-5). Pure arithmetic on the
//! wall clock the server hands the bridge (`Bridge::set_clock`).

/// Seconds of `expiry_s` left for a message received at `ts_ms` when it
/// is sent at `now_ms` (both ms since the Unix epoch); `None`: expired.
/// Whole seconds waited count (a message that waited 0.9 s of a 1 s
/// interval still goes, with 1 s); a receive time ahead of the clock
/// counts as no wait.
pub(super) fn remaining_expiry(expiry_s: u32, ts_ms: u64, now_ms: u64) -> Option<u32> {
    let waited_s = now_ms.saturating_sub(ts_ms) / 1000;
    let left = u64::from(expiry_s).checked_sub(waited_s)?;
    u32::try_from(left).ok().filter(|&left| left > 0)
}

#[cfg(test)]
mod tests {
    use super::remaining_expiry;

    #[test]
    fn the_interval_left_is_the_interval_less_whole_seconds_waited() {
        let t = 1_800_000_000_000;
        assert_eq!(remaining_expiry(60, t, t), Some(60));
        assert_eq!(remaining_expiry(60, t, t + 999), Some(60));
        assert_eq!(remaining_expiry(60, t, t + 1_000), Some(59));
        assert_eq!(remaining_expiry(60, t, t + 59_999), Some(1));
        assert_eq!(remaining_expiry(60, t, t + 60_000), None, "expired");
        assert_eq!(remaining_expiry(60, t, t + 3_600_000), None);
        assert_eq!(remaining_expiry(1, t + 5_000, t), Some(1), "clock behind");
        assert_eq!(remaining_expiry(u32::MAX, 0, u64::MAX), None);
        assert_eq!(remaining_expiry(u32::MAX, t, t), Some(u32::MAX));
    }
}
