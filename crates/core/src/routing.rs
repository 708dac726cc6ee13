//! Which shard owns a user.
//!
//! Jump consistent hashing (Lamping & Veach, 2014): when the shard count
//! changes from n to n+1 only 1/(n+1) of the users move, which keeps a
//! later resharding of a node's log cheap.

use surepush_proto::UserId;

/// Owner shard of `user` among `shards` shards (`shards >= 1`).
pub fn shard_of(user: UserId, shards: u16) -> u16 {
    let shards = i64::from(shards.max(1));
    // Mix first: user ids are often sequential, jump hash wants spread keys.
    let mut key = splitmix64(user.0);
    let (mut b, mut j) = (-1i64, 0i64);
    while j < shards {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b as u16
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_user_maps_inside_the_range() {
        for n in 1..=16u16 {
            for u in 0..2_000 {
                assert!(shard_of(UserId(u), n) < n);
            }
        }
    }

    #[test]
    fn sequential_users_spread_evenly() {
        let n = 4u16;
        let mut counts = [0u32; 4];
        for u in 0..40_000 {
            counts[shard_of(UserId(u), n) as usize] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn growing_by_one_shard_moves_about_one_in_n_plus_one() {
        let moved = (0..30_000u64)
            .filter(|u| shard_of(UserId(*u), 3) != shard_of(UserId(*u), 4))
            .count();
        // Expect 1/4 of 30,000 = 7,500.
        assert!((6_500..8_500).contains(&moved), "moved {moved}");
        // And nobody moves except to the new shard.
        for u in 0..30_000u64 {
            let (a, b) = (shard_of(UserId(u), 3), shard_of(UserId(u), 4));
            assert!(a == b || b == 3);
        }
    }
}
