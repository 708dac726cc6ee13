//! `mqtt-backlog`: offline replay over MQTT, surepush or a broker (see
//! `crate::mqtt_backlog`).

use std::process::ExitCode;

use clap::Args;

use super::{finish, SecretArgs};
use crate::{run_mqtt_backlog, MqttBacklogScenario, MqttTarget};

#[derive(Args)]
pub(super) struct MqttBacklogArgs {
    #[command(flatten)]
    scenario: MqttBacklogScenario,
    /// `--mqtt` is a plain MQTT broker (e.g. mosquitto): no tokens, topics
    /// `surepush-lg/{run}/{n}`.
    #[arg(long)]
    broker: bool,
    #[command(flatten)]
    secret: SecretArgs,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub(super) fn run(args: MqttBacklogArgs) -> Result<ExitCode, String> {
    let target = if args.broker {
        MqttTarget::Broker
    } else {
        MqttTarget::Surepush {
            secret: args.secret.load()?,
        }
    };
    Ok(finish(
        run_mqtt_backlog(&args.scenario, &target)?,
        args.json,
        |r| r.to_text(),
        |r| r.passed(),
        "a message was missing, repeated or out of order",
    ))
}
