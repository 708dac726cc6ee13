//! What a seed makes of a run: shards, users and devices, how much each
//! sends, the faults and their rates, the group and the rooms.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use surepush::proto::{DeviceId, UserId};

use super::mqtt::MqttPlan;
use super::rooms::RoomPlan;

/// Knobs of one run, all drawn from the seed.
#[derive(Clone, Debug)]
pub struct Plan {
    pub shards: u16,
    pub users: u64,
    pub devices: Vec<(UserId, DeviceId, bool)>,
    pub sends_per_device: u32,
    pub drop: f64,
    pub dup: f64,
    pub max_delay_us: u64,
    pub kill_every_ms: u64,
    pub crash_every_ms: u64,
    pub storage_fail: f64,
    pub fault_phase_ms: u64,
    /// Members of the one group (empty: no group traffic this run).
    pub group_members: Vec<UserId>,
    /// Rooms, their subscribers and the gateway's room limits (some seeds).
    pub rooms: Option<RoomPlan>,
    /// MQTT users, devices and rooms (some seeds).
    pub mqtt: Option<MqttPlan>,
}

/// The group of every run that has one.
pub const GROUP: UserId = UserId(UserId::GROUP_BIT | 1);

impl Plan {
    pub fn from_seed(seed: u64) -> Plan {
        let mut rng = SmallRng::seed_from_u64(seed ^ 0x5EED);
        let shards = rng.random_range(1..=3);
        let users = rng.random_range(2..=4);
        let mut devices = Vec::new();
        for u in 1..=users {
            for d in 0..rng.random_range(1..=2u64) {
                // Some devices start with a cursor, some as new devices.
                devices.push((UserId(u), DeviceId(d + 1), rng.random_bool(0.5)));
            }
        }
        let calm = rng.random_bool(0.2);
        // A group of all users but possibly the last (who then never sends
        // to it: only members may).
        let group_members: Vec<UserId> = if rng.random_bool(0.6) {
            let n = if users > 2 && rng.random_bool(0.5) {
                users - 1
            } else {
                users
            };
            (1..=n).map(UserId).collect()
        } else {
            Vec::new()
        };
        let rooms = RoomPlan::from_seed(seed, devices.len());
        Plan {
            group_members,
            rooms,
            mqtt: MqttPlan::from_seed(seed),
            shards,
            users,
            devices,
            sends_per_device: rng.random_range(1..=12),
            drop: if calm {
                0.0
            } else {
                rng.random_range(0.0..0.15)
            },
            dup: if calm {
                0.0
            } else {
                rng.random_range(0.0..0.1)
            },
            max_delay_us: rng.random_range(10..3_000),
            kill_every_ms: if calm { 0 } else { rng.random_range(50..2_000) },
            crash_every_ms: if calm || rng.random_bool(0.3) {
                0
            } else {
                rng.random_range(100..3_000)
            },
            storage_fail: if rng.random_bool(0.1) { 0.02 } else { 0.0 },
            fault_phase_ms: rng.random_range(200..4_000),
        }
    }
}
