//! tuning/grafana-surepush.json against a live node (issue 22 item 6): every
//! query of the dashboard, parsed by a PromQL parser, names only series a
//! real `/metrics` has, and only labels those series carry.

use std::collections::{BTreeMap, BTreeSet};

use promql_parser::label::Matchers;
use promql_parser::parser::{self, Expr, LabelModifier, VectorSelector};
use serde_json::Value;

use super::{scrape, Family};
use crate::common::TestServer;

/// Labels Prometheus adds to every scraped series (its target labels); the
/// node never writes them.
const TARGET_LABELS: [&str; 2] = ["instance", "job"];

/// What a Grafana variable stands for, with a value that parses as PromQL.
const GRAFANA_VARIABLES: [(&str, &str); 3] = [
    ("$__rate_interval", "1m"),
    ("$__interval", "1m"),
    ("$instance", ".*"),
];

/// Sample name (`x_total`, `x_bucket`, ...) -> the label names it carries.
fn series_labels(families: &BTreeMap<String, Family>) -> BTreeMap<String, BTreeSet<String>> {
    let mut series: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for sample in families.values().flat_map(|f| &f.samples) {
        series
            .entry(sample.name.clone())
            .or_default()
            .extend(sample.labels.keys().cloned());
    }
    series
}

/// Every PromQL query in the dashboard: the panels' targets (rows' nested
/// panels too) and the metric of `label_values(metric, label)` variables.
fn dashboard_queries(dashboard: &Value) -> Vec<(String, String)> {
    fn panels<'a>(list: &'a Value, into: &mut Vec<&'a Value>) {
        for panel in list.as_array().into_iter().flatten() {
            into.push(panel);
            panels(&panel["panels"], into);
        }
    }
    let mut all = Vec::new();
    panels(&dashboard["panels"], &mut all);
    let mut queries = Vec::new();
    for panel in all {
        let title = panel["title"].as_str().unwrap_or("?");
        let targets = panel["targets"].as_array();
        if panel["type"] != "row" {
            assert!(
                targets.is_some_and(|t| !t.is_empty()),
                "panel {title} has no query"
            );
        }
        for target in targets.into_iter().flatten() {
            let expr = target["expr"].as_str().expect("a target's expr");
            queries.push((format!("panel {title}"), expr.to_string()));
        }
    }
    for variable in dashboard["templating"]["list"].as_array().expect("list") {
        if variable["type"] != "query" {
            continue;
        }
        let query = variable["query"]["query"].as_str().expect("query");
        let inner = query
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .unwrap_or_else(|| panic!("variable query {query}"));
        let (metric, label) = inner.rsplit_once(',').expect("label_values(metric, label)");
        assert!(TARGET_LABELS.contains(&label.trim()), "{query}");
        let name = variable["name"].as_str().unwrap_or("?");
        queries.push((format!("variable {name}"), metric.trim().to_string()));
    }
    queries
}

/// A PromQL problem: what and where.
type Problems = Vec<String>;

/// The selectors under `expr`; checks the labels each aggregation groups
/// by and each vector match joins on against those selectors' series.
fn check<'e>(
    expr: &'e Expr,
    series: &BTreeMap<String, BTreeSet<String>>,
    problems: &mut Problems,
) -> Vec<&'e VectorSelector> {
    match expr {
        Expr::VectorSelector(vs) => vec![vs],
        Expr::MatrixSelector(ms) => vec![&ms.vs],
        Expr::Aggregate(a) => {
            let selectors = check(&a.expr, series, problems);
            check_grouping(&selectors, &a.modifier, series, problems);
            selectors
        }
        Expr::Binary(b) => {
            let mut selectors = check(&b.lhs, series, problems);
            selectors.extend(check(&b.rhs, series, problems));
            if let Some(m) = &b.modifier {
                check_grouping(&selectors, &m.matching, series, problems);
            }
            selectors
        }
        Expr::Unary(u) => check(&u.expr, series, problems),
        Expr::Paren(p) => check(&p.expr, series, problems),
        Expr::Subquery(s) => check(&s.expr, series, problems),
        Expr::Call(c) => c
            .args
            .args
            .iter()
            .flat_map(|arg| check(arg, series, problems))
            .collect(),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => Vec::new(),
    }
}

/// The labels of `by (...)` or `on (...)`: each on one of `selectors`'
/// series at least (else the grouping silently merges everything).
fn check_grouping(
    selectors: &[&VectorSelector],
    modifier: &Option<LabelModifier>,
    series: &BTreeMap<String, BTreeSet<String>>,
    problems: &mut Problems,
) {
    let Some(LabelModifier::Include(labels)) = modifier else {
        return;
    };
    for label in &labels.labels {
        let carried = selectors.iter().any(|s| {
            s.name
                .as_ref()
                .and_then(|n| series.get(n))
                .is_some_and(|on| on.contains(label))
        });
        if !carried && !TARGET_LABELS.contains(&label.as_str()) {
            problems.push(format!("no series under it has label {label}"));
        }
    }
}

fn check_selector(
    vs: &VectorSelector,
    series: &BTreeMap<String, BTreeSet<String>>,
    problems: &mut Problems,
) {
    let Some(name) = &vs.name else {
        problems.push(format!("a selector without a metric name: {vs}"));
        return;
    };
    let Some(labels) = series.get(name) else {
        problems.push(format!("no series {name} in /metrics"));
        return;
    };
    let Matchers {
        matchers,
        or_matchers,
    } = &vs.matchers;
    for matcher in matchers.iter().chain(or_matchers.iter().flatten()) {
        let label = matcher.name.as_str();
        if label != "__name__" && !TARGET_LABELS.contains(&label) && !labels.contains(label) {
            problems.push(format!("{name} has no label {label}"));
        }
    }
}

/// Issue 22 item 6: the dashboard is checked against what the node exports,
/// so a renamed series or label fails here rather than as an empty panel.
#[test]
fn grafana_dashboard_queries_name_only_exported_series() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tuning/grafana-surepush.json");
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("read")).expect("JSON");
    let queries = dashboard_queries(&dashboard);
    assert!(queries.len() >= 20, "{queries:?}");

    let server = TestServer::start(2, "");
    let series = series_labels(&scrape(&server));

    let mut problems = Vec::new();
    let mut names = BTreeSet::new();
    for (place, query) in &queries {
        let promql = GRAFANA_VARIABLES
            .iter()
            .fold(query.clone(), |q, (var, value)| q.replace(var, value));
        assert!(
            !promql.contains('$'),
            "{place}: unknown variable in {query}"
        );
        let expr = parser::parse(&promql).unwrap_or_else(|e| panic!("{place}: {e}: {promql}"));
        let mut found = Vec::new();
        let selectors = check(&expr, &series, &mut found);
        if selectors.is_empty() {
            found.push("no series at all".into());
        }
        for vs in selectors {
            check_selector(vs, &series, &mut found);
            names.extend(vs.name.clone());
        }
        problems.extend(found.into_iter().map(|p| format!("{place}: {p}: {query}")));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The dashboard covers each area the brief lists.
    for wanted in [
        "surepush_sends_total",
        "surepush_pushes_total",
        "surepush_acks_total",
        "surepush_log_fsync_seconds_bucket",
        "surepush_connections",
        "surepush_slow_consumers_total",
        "surepush_storage_failures_total",
    ] {
        assert!(names.contains(wanted), "no panel shows {wanted}");
    }
}
