//! Index maths of the wheel: which level and slot a deadline belongs to,
//! and when a slot's time window starts. Pure functions, tested exhaustively.
//!
//! | level | slot covers         | level covers          | at 1 ms ticks |
//! |------:|---------------------|-----------------------|---------------|
//! | 0     | 1 tick              | 64 ticks              | 64 ms         |
//! | 1     | 64 ticks            | 64^2 ticks            | ~4 s          |
//! | 2     | 64^2 ticks          | 64^3 ticks            | ~4.4 min      |
//! | 3     | 64^3 ticks          | 64^4 ticks            | ~4.7 h        |
//! | 4     | 64^4 ticks          | 64^5 ticks            | ~12.4 days    |
//! | 5     | 64^5 ticks          | 64^6 ticks            | ~2.2 years    |
//!
//! Deadlines beyond level 5's range wait in an overflow list.

/// Bits of a deadline resolved per level.
pub const BITS_PER_LEVEL: u32 = 6;
/// Slots per level.
pub const SLOTS: usize = 1 << BITS_PER_LEVEL;
/// Levels in the wheel.
pub const NUM_LEVELS: usize = 6;
/// Ticks covered by the whole wheel from any starting tick.
pub const WHEEL_RANGE: u64 = 1 << (BITS_PER_LEVEL * NUM_LEVELS as u32);

/// Ticks one slot of `level` covers.
pub const fn slot_range(level: usize) -> u64 {
    1 << (BITS_PER_LEVEL * level as u32)
}

/// Ticks all slots of `level` cover.
pub const fn level_range(level: usize) -> u64 {
    slot_range(level + 1)
}

/// Level for a deadline `when` seen from tick `now` (`when > now`): the
/// 6-bit group of the highest bit in which they differ. `NUM_LEVELS` or
/// more means "beyond the wheel".
pub fn level_for(now: u64, when: u64) -> usize {
    // Masking in the low bits makes a difference only there land on level 0.
    let masked = (now ^ when) | (SLOTS as u64 - 1);
    let significant = 63 - masked.leading_zeros();
    (significant / BITS_PER_LEVEL) as usize
}

/// Slot of `when` on `level`.
pub fn slot_for(when: u64, level: usize) -> usize {
    ((when >> (BITS_PER_LEVEL * level as u32)) & (SLOTS as u64 - 1)) as usize
}

/// Start tick of `slot` on `level`, the first such start at or after the
/// window of `now` (slots behind `now`'s slot belong to the next rotation).
pub fn slot_start(now: u64, level: usize, slot: usize) -> u64 {
    let level_start = now & !(level_range(level) - 1);
    let start = level_start + slot as u64 * slot_range(level);
    if slot < slot_for(now, level) {
        start.saturating_add(level_range(level))
    } else {
        start
    }
}

/// First occupied slot at or after `from` in `occupied`, rotating.
pub fn next_occupied(occupied: u64, from: usize) -> Option<usize> {
    if occupied == 0 {
        return None;
    }
    let rotated = occupied.rotate_right(from as u32);
    Some((rotated.trailing_zeros() as usize + from) % SLOTS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_for_matches_a_brute_force_definition() {
        // Brute force: the smallest level whose range, aligned at `now`,
        // also contains `when`.
        let shr = |v: u64, by: u32| v.checked_shr(by).unwrap_or(0);
        let brute = |now: u64, when: u64| {
            (0..=10usize)
                .find(|&l| {
                    let by = BITS_PER_LEVEL * (l as u32 + 1);
                    shr(now, by) == shr(when, by)
                })
                .unwrap()
        };
        for now in (0..20_000u64).step_by(7) {
            for when in now + 1..now + 5_000 {
                assert_eq!(
                    level_for(now, when),
                    brute(now, when),
                    "now {now} when {when}"
                );
            }
        }
        for (now, when) in [
            (0, u64::MAX),
            (5, WHEEL_RANGE),
            (WHEEL_RANGE - 1, WHEEL_RANGE),
        ] {
            assert_eq!(level_for(now, when), brute(now, when));
        }
    }

    #[test]
    fn a_deadline_falls_inside_its_slot_window() {
        for now in (0..300_000u64).step_by(997) {
            for delta in [
                1u64, 2, 63, 64, 65, 4095, 4096, 4097, 262_143, 262_144, 16_777_215,
            ] {
                let when = now + delta;
                let level = level_for(now, when);
                let slot = slot_for(when, level);
                let start = slot_start(now, level, slot);
                assert!(
                    start <= when && when < start + slot_range(level),
                    "now {now} when {when} level {level}"
                );
                assert!(start > now, "the slot window lies after now");
            }
        }
    }

    #[test]
    fn next_occupied_rotates_from_the_position() {
        assert_eq!(next_occupied(0, 5), None);
        assert_eq!(next_occupied(1 << 5, 5), Some(5));
        assert_eq!(next_occupied(1 << 3, 5), Some(3));
        assert_eq!(next_occupied((1 << 3) | (1 << 40), 5), Some(40));
        for bit in 0..SLOTS {
            for from in 0..SLOTS {
                assert_eq!(next_occupied(1 << bit, from), Some(bit));
            }
        }
    }
}
