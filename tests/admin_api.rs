//! docs/openapi.yaml against the gateway (issue 16 item 8: the admin API
//! was documented nowhere a client author could use). The file must
//! document exactly the routes the server serves (`routes::ROUTES`, the
//! router's own table), and a running gateway must answer every documented
//! request example as documented: status, content type and body schema.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{http_exchange, HttpResponse, TestServer, ADMIN_TOKEN};
use serde_json::Value;
use surepush::server::admin::routes::ROUTES;
use surepush::server::admin::ApiError;
use yaml_rust2::{Yaml, YamlLoader};

/// The operation keys of an OpenAPI path item.
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn spec() -> Yaml {
    let text = include_str!("../docs/openapi.yaml");
    YamlLoader::load_from_str(text)
        .expect("docs/openapi.yaml is YAML")
        .remove(0)
}

/// Follows local `$ref`s (`#/components/...`).
fn resolve<'a>(doc: &'a Yaml, mut node: &'a Yaml) -> &'a Yaml {
    while let Some(target) = node["$ref"].as_str() {
        let path = target.strip_prefix("#/").expect("only local $refs");
        node = path.split('/').fold(doc, |n, key| &n[key]);
        assert!(!node.is_badvalue(), "dangling $ref {target}");
    }
    node
}

/// One documented operation.
struct Operation<'a> {
    method: String,
    template: String,
    path_item: &'a Yaml,
    op: &'a Yaml,
}

fn operations(doc: &Yaml) -> Vec<Operation<'_>> {
    let paths = doc["paths"].as_hash().expect("paths");
    let mut ops = Vec::new();
    for (template, item) in paths {
        for method in METHODS {
            if !item[method].is_badvalue() {
                ops.push(Operation {
                    method: method.to_uppercase(),
                    template: template.as_str().expect("path").to_string(),
                    path_item: item,
                    op: &item[method],
                });
            }
        }
    }
    ops
}

fn to_json(y: &Yaml) -> Value {
    match y {
        // A number beyond i64 stays text in the YAML tree: parse it as JSON.
        Yaml::Real(text) => serde_json::from_str(text).expect("a JSON number"),
        Yaml::Integer(i) => Value::from(*i),
        Yaml::String(s) => Value::from(s.as_str()),
        Yaml::Boolean(b) => Value::from(*b),
        Yaml::Array(a) => Value::Array(a.iter().map(to_json).collect()),
        Yaml::Hash(h) => Value::Object(
            h.iter()
                .map(|(k, v)| (k.as_str().expect("string keys").to_string(), to_json(v)))
                .collect(),
        ),
        Yaml::Null => Value::Null,
        other => panic!("no JSON value for {other:?}"),
    }
}

/// Checks `value` against the part of JSON Schema the file uses: type,
/// const, enum, minimum, maximum, pattern, required, properties,
/// additionalProperties: false, items, oneOf, allOf.
fn check(doc: &Yaml, schema: &Yaml, value: &Value, at: &str) -> Result<(), String> {
    let schema = resolve(doc, schema);
    if let Some(t) = schema["type"].as_str() {
        let fits = match t {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "integer" => value.is_u64() || value.is_i64(),
            "boolean" => value.is_boolean(),
            other => panic!("{at}: the checker does not know type {other}"),
        };
        if !fits {
            return Err(format!("{at}: {value} is not of type {t}"));
        }
    }
    if !schema["const"].is_badvalue() && to_json(&schema["const"]) != *value {
        return Err(format!("{at}: {value} is not {:?}", schema["const"]));
    }
    if let Some(options) = schema["enum"].as_vec() {
        if !options.iter().any(|o| to_json(o) == *value) {
            return Err(format!("{at}: {value} is not one of the enum"));
        }
    }
    if let (Some(pattern), Some(text)) = (schema["pattern"].as_str(), value.as_str()) {
        let re = regex::Regex::new(pattern).unwrap_or_else(|e| panic!("{at}: pattern {e}"));
        if !re.is_match(text) {
            return Err(format!("{at}: {text:?} does not match {pattern}"));
        }
    }
    if let Some(n) = value.as_u64() {
        let bound = |key: &str| match &schema[key] {
            Yaml::BadValue => None,
            b => to_json(b).as_u64(),
        };
        if bound("minimum").is_some_and(|min| n < min)
            || bound("maximum").is_some_and(|max| n > max)
        {
            return Err(format!("{at}: {n} out of range"));
        }
    }
    if let Some(object) = value.as_object() {
        for key in schema["required"].as_vec().into_iter().flatten() {
            let key = key.as_str().expect("required names");
            if !object.contains_key(key) {
                return Err(format!("{at}: {key} missing"));
            }
        }
        let properties = schema["properties"].as_hash();
        for (key, v) in object {
            let sub = properties.and_then(|p| p.get(&Yaml::String(key.clone())));
            match sub {
                Some(sub) => check(doc, sub, v, &format!("{at}.{key}"))?,
                None if schema["additionalProperties"] == Yaml::Boolean(false) => {
                    return Err(format!("{at}: {key} is not a documented field"))
                }
                None => {}
            }
        }
    }
    if let (Some(items), false) = (value.as_array(), schema["items"].is_badvalue()) {
        for (i, item) in items.iter().enumerate() {
            check(doc, &schema["items"], item, &format!("{at}[{i}]"))?;
        }
    }
    if let Some(alternatives) = schema["oneOf"].as_vec() {
        let fitting = alternatives
            .iter()
            .filter(|a| check(doc, a, value, at).is_ok())
            .count();
        if fitting != 1 {
            return Err(format!("{at}: {fitting} of oneOf fit {value}"));
        }
    }
    for all in schema["allOf"].as_vec().into_iter().flatten() {
        check(doc, all, value, at)?;
    }
    Ok(())
}

/// The path with each `{param}` replaced by its documented example.
fn example_path(doc: &Yaml, op: &Operation) -> String {
    let mut path = op.template.clone();
    let params = [&op.path_item["parameters"], &op.op["parameters"]];
    for p in params.into_iter().filter_map(Yaml::as_vec).flatten() {
        let p = resolve(doc, p);
        if p["in"].as_str() == Some("path") {
            let name = p["name"].as_str().expect("parameter name");
            // A string example goes into the path as it is, not quoted.
            let example = match to_json(&p["example"]) {
                Value::String(text) => text,
                other => other.to_string(),
            };
            path = path.replace(&format!("{{{name}}}"), &example);
        }
    }
    assert!(
        !path.contains('{'),
        "{}: a path parameter without example",
        op.template
    );
    path
}

/// The documented request examples (name, JSON body); one empty body for
/// an operation without a request body.
fn request_examples(doc: &Yaml, op: &Operation) -> Vec<(String, String)> {
    let body = resolve(doc, &op.op["requestBody"]);
    if body.is_badvalue() {
        return vec![("no body".into(), String::new())];
    }
    let media = &body["content"]["application/json"];
    let examples = media["examples"].as_hash().expect("request examples");
    assert!(
        !examples.is_empty(),
        "{} {}: no example",
        op.method,
        op.template
    );
    examples
        .iter()
        .map(|(name, e)| {
            let name = name.as_str().expect("example name").to_string();
            let value = to_json(&resolve(doc, e)["value"]);
            check(doc, &media["schema"], &value, &name)
                .unwrap_or_else(|e| panic!("the example itself breaks the schema: {e}"));
            (name, value.to_string())
        })
        .collect()
}

/// Asserts that `resp` is the documented answer `status` of `op`.
fn assert_documented(doc: &Yaml, op: &Operation, status: u16, resp: &HttpResponse, what: &str) {
    let at = format!("{} {} ({what})", op.method, op.template);
    assert_eq!(resp.status, status, "{at}: {}", resp.body);
    let documented = resolve(doc, &op.op["responses"][status.to_string().as_str()]);
    assert!(
        !documented.is_badvalue(),
        "{at}: status {status} is not documented"
    );
    let content = documented["content"].as_hash().expect("response content");
    let (media, described) = content.iter().next().expect("one media type");
    let media = media.as_str().expect("media type");
    assert_eq!(
        resp.header("content-type"),
        Some(media),
        "{at}: content type"
    );
    let value = if media == "application/json" {
        serde_json::from_str(&resp.body).unwrap_or_else(|e| panic!("{at}: not JSON: {e}"))
    } else {
        Value::String(resp.body.clone())
    };
    check(doc, &described["schema"], &value, &at).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn the_openapi_file_documents_exactly_the_routes_the_router_serves() {
    let doc = spec();
    assert_eq!(doc["openapi"].as_str(), Some("3.1.0"));
    let documented: BTreeSet<(String, String)> = operations(&doc)
        .iter()
        .map(|o| (o.method.clone(), o.template.clone()))
        .collect();
    let served: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_string()))
        .collect();
    assert_eq!(
        documented, served,
        "docs/openapi.yaml and server::admin::routes::ROUTES differ"
    );
    for op in operations(&doc) {
        let route = ROUTES
            .iter()
            .find(|r| (r.method, r.path) == (op.method.as_str(), op.template.as_str()))
            .expect("compared above");
        // `security: []` opts out of the file-wide bearer requirement.
        let open = op.op["security"].as_vec().is_some_and(Vec::is_empty);
        assert_eq!(
            open, !route.needs_token,
            "{} {}: documented and served authentication differ",
            op.method, op.template
        );
    }
}

#[test]
fn a_running_gateway_answers_every_documented_example_as_documented() {
    let doc = spec();
    // Demo tokens on: the documented 200 of POST /demo/token (off by default).
    let server = TestServer::start(2, "[admin]\ndemo_tokens = true");
    let ask = |method: &str, path: &str, body: &str, token: Option<&str>| {
        http_exchange(
            server.admin,
            method,
            path,
            body,
            token,
            Duration::from_secs(10),
        )
        .expect("admin HTTP")
    };
    // The group examples publish to group 5, which needs members.
    let setup = ask(
        "POST",
        "/v1/groups/5",
        r#"{"add": [1, 2, 42]}"#,
        Some(ADMIN_TOKEN),
    );
    assert_eq!(setup.status, 200, "{}", setup.body);
    let mut examples_sent = 0;
    for op in operations(&doc) {
        let path = example_path(&doc, &op);
        let needs_token = !op.op["security"].as_vec().is_some_and(Vec::is_empty);
        for (name, body) in request_examples(&doc, &op) {
            let resp = ask(&op.method, &path, &body, Some(ADMIN_TOKEN));
            assert_documented(&doc, &op, 200, &resp, &name);
            examples_sent += 1;
            if needs_token {
                let resp = ask(&op.method, &path, &body, None);
                assert_documented(&doc, &op, 401, &resp, &format!("{name} without token"));
                let resp = ask(&op.method, &path, &body, Some("wrong"));
                assert_documented(&doc, &op, 401, &resp, &format!("{name}, wrong token"));
            }
        }
        if !op.op["requestBody"].is_badvalue() {
            let resp = ask(&op.method, &path, "not json", Some(ADMIN_TOKEN));
            assert_documented(&doc, &op, 400, &resp, "a body that is not JSON");
        }
    }
    assert!(examples_sent >= ROUTES.len(), "{examples_sent} examples");
    // What the description promises for everything else: JSON errors.
    let error = |resp: HttpResponse| {
        let body: Value = serde_json::from_str(&resp.body).expect("JSON error body");
        check(&doc, &doc["components"]["schemas"]["Error"], &body, "error")
            .unwrap_or_else(|e| panic!("{e}"));
        resp.status
    };
    assert_eq!(error(ask("GET", "/v1/nothing", "", Some(ADMIN_TOKEN))), 404);
    // A 405 names the methods the path has (RFC 9110; found by schemathesis).
    for (method, path, allow) in [
        ("DELETE", "/v1/groups/5", "GET, POST"),
        ("GET", "/v1/publish", "POST"),
        ("POST", "/healthz", "GET"),
    ] {
        let resp = ask(method, path, "", Some(ADMIN_TOKEN));
        assert_eq!(resp.header("allow"), Some(allow), "{method} {path}");
        assert_eq!(error(resp), 405, "{method} {path}");
    }
    // Whole numbers in any JSON spelling are integers (JSON Schema's
    // reading, which the file's `type: integer` promises).
    let resp = ask(
        "POST",
        "/v1/tokens",
        r#"{"user": 4.2e1, "device": 7.0, "ttl_s": 60}"#,
        Some(ADMIN_TOKEN),
    );
    assert_eq!(resp.status, 200, "{}", resp.body);
    let too_big = format!(r#"{{"to": 1, "payload": "{}"}}"#, "x".repeat(1 << 20));
    assert_eq!(
        error(ask("POST", "/v1/publish", &too_big, Some(ADMIN_TOKEN))),
        413
    );
}

/// Issue 22 item 5: every error code the server can answer is documented,
/// and the file lists no code the server never answers.
#[test]
fn the_documented_error_codes_are_the_servers() {
    let doc = spec();
    let documented: BTreeSet<String> = doc["components"]["schemas"]["Error"]["properties"]["error"]
        ["properties"]["code"]["enum"]
        .as_vec()
        .expect("the code enum")
        .iter()
        .map(|c| c.as_str().expect("a code").to_string())
        .collect();
    let served: BTreeSet<String> = ApiError::CODES.iter().map(|c| c.to_string()).collect();
    assert_eq!(documented, served);
}

/// Issue 22 item 5: ids may be strings; the documented patterns accept
/// exactly the strings the server accepts (checked at the boundaries).
#[test]
fn string_ids_are_accepted_exactly_as_documented() {
    let doc = spec();
    let server = TestServer::start(1, "");
    let schema = |name: &str| &doc["components"]["schemas"][name];
    /// (schema, field, the request body with the field's JSON value).
    type Case = (&'static str, &'static str, fn(&str) -> String);
    let cases: [Case; 3] = [
        ("Id62", "user", |v| {
            format!(r#"{{"user": {v}, "device": 1}}"#)
        }),
        ("Id64", "device", |v| {
            format!(r#"{{"user": 1, "device": {v}}}"#)
        }),
        ("Id63", "id", |v| {
            format!(r#"{{"to": 1, "payload": "x", "id": {v}}}"#)
        }),
    ];
    let mut accepted = 0;
    for (name, field, body) in cases {
        let path = if field == "id" {
            "/v1/publish"
        } else {
            "/v1/tokens"
        };
        for value in [
            "0",
            "42",
            "4611686018427387903",
            "4611686018427387904",
            "9223372036854775807",
            "9223372036854775808",
            "18446744073709551615",
            "18446744073709551616",
            "042",
            "-1",
            " 1",
            "1.0",
            "",
        ] {
            let json = Value::String(value.to_string());
            let documented = check(&doc, schema(name), &json, field).is_ok();
            let resp = http_exchange(
                server.admin,
                "POST",
                path,
                &body(&json.to_string()),
                Some(ADMIN_TOKEN),
                Duration::from_secs(10),
            )
            .expect("admin HTTP");
            assert_eq!(
                resp.status == 200,
                documented,
                "{field} = {json}: documented {documented}, answered {} {}",
                resp.status,
                resp.body
            );
            accepted += usize::from(documented);
        }
    }
    assert!(accepted >= 8, "{accepted}");
}
