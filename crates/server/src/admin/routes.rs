//! The admin API's route table: the one list the router dispatches on.
//!
//! docs/openapi.yaml describes the same routes for client authors;
//! `tests/admin_api.rs` checks that the file documents exactly the routes in
//! [`ROUTES`] and that the running server answers each of them as
//! documented. Adding a route here without documenting it fails that test.
//!
//! Paths use OpenAPI's template syntax: a `{name}` segment matches any one
//! non-empty path segment and is handed to the endpoint as a parameter.

/// What a route does (the router maps each to its handler).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /healthz`: liveness (up, not failed, not stopping).
    Health,
    /// `GET /readyz`: readiness (every shard recovered and serves).
    Ready,
    /// `GET /metrics`: Prometheus text exposition.
    Metrics,
    /// `POST /v1/publish`: a backend message to a user, group or room.
    Publish,
    /// `POST /v1/tokens`: mint a client token.
    MintToken,
    /// `POST /demo/token`: a short-lived client token without
    /// authentication, for demos (`[admin] demo_tokens`; 404 when off).
    DemoToken,
    /// `GET /v1/groups/{n}`: a group's members.
    ReadGroup,
    /// `POST /v1/groups/{n}`: add and remove members.
    UpdateGroup,
    /// `GET /v1/rooms/{n}`: a room's members.
    ReadRoom,
    /// `POST /v1/rooms/{n}`: add and remove members.
    UpdateRoom,
    /// `POST /v1/revoke`: withdraw a token or a user's/device's tokens.
    Revoke,
    /// `POST /v1/users/{n}/disconnect`: close a user's or device's sessions.
    Disconnect,
    /// `GET /v1/users/{n}/presence`: a user's online devices.
    UserPresence,
    /// `POST /v1/presence`: the online devices of a batch of users.
    Presence,
    /// `GET /v1/users/{n}/conversations`: a page of a user's conversation
    /// summaries.
    Conversations,
    /// `GET /v1/users/{n}/conversations/{kind}/{peer}/messages`: a page of
    /// one conversation's messages.
    ConversationMessages,
    /// `GET /v1/users/{n}/messages`: a page of a user's inbox history.
    InboxMessages,
}

/// One route of the admin API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// HTTP method, upper case.
    pub method: &'static str,
    /// Path template (`{name}` matches one segment).
    pub path: &'static str,
    /// Whether the admin bearer token is required.
    pub needs_token: bool,
    /// The handler.
    pub endpoint: Endpoint,
}

/// Every route the admin server serves.
pub const ROUTES: &[Route] = &[
    Route {
        method: "GET",
        path: "/healthz",
        needs_token: false,
        endpoint: Endpoint::Health,
    },
    Route {
        method: "GET",
        path: "/readyz",
        needs_token: false,
        endpoint: Endpoint::Ready,
    },
    Route {
        method: "GET",
        path: "/metrics",
        needs_token: false,
        endpoint: Endpoint::Metrics,
    },
    Route {
        method: "POST",
        path: "/v1/publish",
        needs_token: true,
        endpoint: Endpoint::Publish,
    },
    Route {
        method: "POST",
        path: "/v1/tokens",
        needs_token: true,
        endpoint: Endpoint::MintToken,
    },
    Route {
        method: "POST",
        path: "/demo/token",
        needs_token: false,
        endpoint: Endpoint::DemoToken,
    },
    Route {
        method: "GET",
        path: "/v1/groups/{n}",
        needs_token: true,
        endpoint: Endpoint::ReadGroup,
    },
    Route {
        method: "POST",
        path: "/v1/groups/{n}",
        needs_token: true,
        endpoint: Endpoint::UpdateGroup,
    },
    Route {
        method: "GET",
        path: "/v1/rooms/{n}",
        needs_token: true,
        endpoint: Endpoint::ReadRoom,
    },
    Route {
        method: "POST",
        path: "/v1/rooms/{n}",
        needs_token: true,
        endpoint: Endpoint::UpdateRoom,
    },
    Route {
        method: "POST",
        path: "/v1/revoke",
        needs_token: true,
        endpoint: Endpoint::Revoke,
    },
    Route {
        method: "POST",
        path: "/v1/users/{n}/disconnect",
        needs_token: true,
        endpoint: Endpoint::Disconnect,
    },
    Route {
        method: "GET",
        path: "/v1/users/{n}/presence",
        needs_token: true,
        endpoint: Endpoint::UserPresence,
    },
    Route {
        method: "POST",
        path: "/v1/presence",
        needs_token: true,
        endpoint: Endpoint::Presence,
    },
    Route {
        method: "GET",
        path: "/v1/users/{n}/conversations",
        needs_token: true,
        endpoint: Endpoint::Conversations,
    },
    Route {
        method: "GET",
        path: "/v1/users/{n}/conversations/{kind}/{peer}/messages",
        needs_token: true,
        endpoint: Endpoint::ConversationMessages,
    },
    Route {
        method: "GET",
        path: "/v1/users/{n}/messages",
        needs_token: true,
        endpoint: Endpoint::InboxMessages,
    },
];

/// How a request matched the table.
#[derive(Debug, PartialEq, Eq)]
pub enum RouteMatch<'a> {
    /// A route, with the path's `{param}` segments in order.
    Found(&'static Route, Vec<&'a str>),
    /// The path exists, not with this method (HTTP 405): the methods it
    /// has, for the `Allow` header.
    WrongMethod(Vec<&'static str>),
    /// No route has this path (HTTP 404).
    NotFound,
}

/// Finds the route for `method` and `path` (no query string).
pub fn find<'a>(method: &str, path: &'a str) -> RouteMatch<'a> {
    let mut allowed = Vec::new();
    for route in ROUTES {
        let Some(params) = match_template(route.path, path) else {
            continue;
        };
        if route.method == method {
            return RouteMatch::Found(route, params);
        }
        allowed.push(route.method);
    }
    if allowed.is_empty() {
        RouteMatch::NotFound
    } else {
        RouteMatch::WrongMethod(allowed)
    }
}

/// The `{param}` segments of `path` if it fits `template`.
fn match_template<'a>(template: &str, path: &'a str) -> Option<Vec<&'a str>> {
    let mut params = Vec::new();
    let mut given = path.split('/');
    for want in template.split('/') {
        let got = given.next()?;
        if want.starts_with('{') && want.ends_with('}') {
            if got.is_empty() {
                return None;
            }
            params.push(got);
        } else if want != got {
            return None;
        }
    }
    given.next().is_none().then_some(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_match_whole_segments_and_capture_parameters() {
        fn found(m: RouteMatch<'_>) -> Option<(Endpoint, Vec<&str>)> {
            match m {
                RouteMatch::Found(r, p) => Some((r.endpoint, p)),
                _ => None,
            }
        }
        assert_eq!(
            found(find("GET", "/v1/groups/5")),
            Some((Endpoint::ReadGroup, vec!["5"]))
        );
        assert_eq!(
            found(find("POST", "/v1/groups/x")),
            Some((Endpoint::UpdateGroup, vec!["x"]))
        );
        assert_eq!(
            found(find("POST", "/v1/rooms/9")),
            Some((Endpoint::UpdateRoom, vec!["9"]))
        );
        assert_eq!(
            found(find("GET", "/healthz")),
            Some((Endpoint::Health, vec![]))
        );
        for missing in [
            "/v1/groups/",
            "/v1/groups",
            "/v1/groups/5/x",
            "/healthz/",
            "/v1/publishx",
            "/",
            "",
        ] {
            assert_eq!(find("GET", missing), RouteMatch::NotFound, "{missing}");
        }
        assert_eq!(
            find("DELETE", "/v1/groups/5"),
            RouteMatch::WrongMethod(vec!["GET", "POST"])
        );
        assert_eq!(
            find("GET", "/v1/publish"),
            RouteMatch::WrongMethod(vec!["POST"])
        );
    }

    #[test]
    fn no_two_routes_share_a_method_and_path() {
        for (i, a) in ROUTES.iter().enumerate() {
            for b in &ROUTES[i + 1..] {
                assert!(
                    (a.method, a.path) != (b.method, b.path),
                    "{} {} twice",
                    a.method,
                    a.path
                );
            }
        }
    }
}
