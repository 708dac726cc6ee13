//! Every `surepush-loadgen` command line written in README.md and
//! BENCHMARKS.md still parses (issue #18 item 5: the split of the command
//! line must keep documented commands working). Placeholders the docs use
//! for a number (`P`, `N`, `M`, `Q`, `K`, `8|64`) or a path (`DATA`) are
//! filled in first.

use clap::Parser;
use surepush_loadgen::cli::Cli;

const SUBCOMMANDS: [&str; 10] = [
    "one-to-one",
    "room",
    "compare",
    "group",
    "backlog",
    "storm",
    "idle",
    "mixed",
    "mqtt-backlog",
    "cluster",
];

/// The command lines in `text`: after `surepush-loadgen` (and cargo's
/// `--`), a subcommand and its arguments, up to the closing backtick of an
/// inline code span (which may wrap lines) or the end of a code-block line
/// (with `\` continuations, without a trailing `# comment`).
fn commands(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("surepush-loadgen") {
        let before = &rest[..at];
        let inline = before
            .rsplit('\n')
            .next()
            .is_some_and(|line| line.matches('`').count() % 2 == 1);
        rest = &rest[at + "surepush-loadgen".len()..];
        let args = rest
            .trim_start()
            .strip_prefix("-- ")
            .unwrap_or(rest.trim_start());
        if !SUBCOMMANDS.iter().any(|s| {
            args.strip_prefix(s)
                .is_some_and(|tail| tail.starts_with([' ', '\n', '`']) || tail.is_empty())
        }) {
            continue;
        }
        let end = if inline {
            args.find('`').unwrap_or(args.len())
        } else {
            let mut end = 0;
            for line in args.split_inclusive('\n') {
                end += line.len();
                if !line.trim_end().ends_with('\\') {
                    break;
                }
            }
            end
        };
        let command: String = args[..end]
            .lines()
            .map(|l| l.split(" #").next().unwrap_or(l).trim_end_matches('\\'))
            .collect::<Vec<_>>()
            .join(" ");
        found.push(command);
    }
    found
}

/// Fills in the docs' placeholders.
fn concrete(command: &str) -> Vec<String> {
    command
        .split_whitespace()
        .map(|w| match w {
            "P" | "N" | "M" | "Q" | "K" | "GATEWAY_PID" | "SUREPUSH_PID" | "MOSQUITTO_PID" => {
                "1".to_string()
            }
            "8|64" => "8".to_string(),
            "DATA" => "data".to_string(),
            w => w.to_string(),
        })
        .collect()
}

#[test]
fn every_documented_loadgen_command_parses() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut checked = 0;
    for doc in ["README.md", "BENCHMARKS.md"] {
        let text = std::fs::read_to_string(root.join(doc)).unwrap();
        for command in commands(&text) {
            let args = concrete(&command);
            let argv = std::iter::once("surepush-loadgen".to_string()).chain(args);
            if let Err(e) = Cli::try_parse_from(argv) {
                panic!("{doc}: `surepush-loadgen {command}` does not parse:\n{e}");
            }
            eprintln!("{doc}: parses: {command}");
            checked += 1;
        }
    }
    // README.md alone documents one command of each kind but `mixed`.
    assert!(checked >= 20, "only {checked} commands found");
}

#[test]
fn a_wrong_option_is_refused() {
    // The check above can fail: an unknown flag and a bad value are errors.
    assert!(Cli::try_parse_from(["surepush-loadgen", "room", "--subscriber", "5"]).is_err());
    assert!(Cli::try_parse_from(["surepush-loadgen", "room", "--sub-qos", "2"]).is_err());
    assert!(Cli::try_parse_from(["surepush-loadgen", "storm", "--drop-mode", "x"]).is_err());
    assert!(Cli::try_parse_from(["surepush-loadgen", "room", "--mqtt-broker"]).is_err());
}
