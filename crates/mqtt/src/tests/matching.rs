//! Topic matching: the examples of MQTT 5.0 section 4.7 and the `$` rule.

use super::*;

#[test]
fn matcher_table() {
    #[rustfmt::skip]
    let table: &[(&str, &str, bool)] = &[
        // Multi-level wildcard (4.7.1.2).
        ("sport/tennis/player1/#", "sport/tennis/player1", true),
        ("sport/tennis/player1/#", "sport/tennis/player1/ranking", true),
        ("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true),
        ("sport/#", "sport", true),
        ("a/#", "a", true),
        ("a/#", "a/", true),
        ("a/#", "ab", false),
        ("#", "sport/tennis", true),
        ("#", "/", true),
        // Single-level wildcard (4.7.1.3).
        ("sport/tennis/+", "sport/tennis/player1", true),
        ("sport/tennis/+", "sport/tennis/player2", true),
        ("sport/tennis/+", "sport/tennis/player1/ranking", false),
        ("sport/+", "sport", false),
        ("sport/+", "sport/", true),
        ("+/+", "/finance", true),
        ("/+", "/finance", true),
        ("+", "/finance", false),
        ("a/+/c", "a//c", true),
        ("+/#", "a", true),
        ("+/tennis/#", "sport/tennis/x", true),
        // Plain levels are compared exactly, case-sensitively.
        ("a/b", "a/b", true),
        ("a/b", "a/c", false),
        ("a/b", "A/b", false),
        ("a", "a/b", false),
        ("a/b", "a", false),
        ("a/b", "a/b/", false),
        // Topics starting with '$' (4.7.2).
        ("#", "$SYS/monitor/Clients", false),
        ("+/monitor/Clients", "$SYS/monitor/Clients", false),
        ("$SYS/#", "$SYS/monitor/Clients", true),
        ("$SYS/monitor/+", "$SYS/monitor/Clients", true),
        ("$SYS", "$SYS", true),
        ("a/$b", "a/$b", true),
        ("a/+", "a/$b", true),
        // Invalid filters and empty topics never match.
        ("a/#/b", "a/x/b", false),
        ("a#", "a#", false),
        ("a/b+", "a/b+", false),
        ("", "", false),
        ("#", "", false),
    ];
    for (filter, topic, want) in table {
        assert_eq!(
            topic_matches(filter, topic),
            *want,
            "{filter:?} vs {topic:?}"
        );
    }
}

proptest! {
    #[test]
    fn a_topic_name_matches_itself_and_hash(topic in arb_topic()) {
        let t = topic.as_str();
        prop_assert!(topic_matches(t, t));
        prop_assert_eq!(topic_matches("#", t), !t.starts_with('$'));
    }

    /// Replacing any one level of a topic by '+' still matches it, unless
    /// that turns the first level of a '$' topic into a wildcard.
    #[test]
    fn plus_replaces_any_level(topic in arb_topic(), at in any::<prop::sample::Index>()) {
        let levels: Vec<&str> = topic.as_str().split('/').collect();
        let i = at.index(levels.len());
        let mut filter = levels.clone();
        filter[i] = "+";
        let filter = filter.join("/");
        prop_assert_eq!(
            topic_matches(&filter, topic.as_str()),
            !(i == 0 && topic.as_str().starts_with('$'))
        );
    }

    /// Every generated filter passes validation (the generators are sound).
    #[test]
    fn generated_filters_are_valid(f in arb_filter(true)) {
        prop_assert!(validate_topic_filter(f.as_str(), true).is_ok());
    }
}
