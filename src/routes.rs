//! The service's route table: every path template of the OpenAPI spec with
//! its methods, plus the routes outside the spec. It names a request's route
//! for the metrics (so clients cannot invent label values) and lists the
//! methods of a path for the `Allow` header of a 405.

use std::sync::LazyLock;

use poem::http::Method;

/// A path template (`/files/{id}`) and the methods it answers.
struct Route {
    segments: Vec<Segment>,
    template: String,
    methods: Vec<Method>,
}

enum Segment {
    Literal(String),
    Param,
    /// Anything from here on (`/ui/*`, `/docs/*`).
    Rest,
}

/// The label of requests no route matches.
pub const UNMATCHED: &str = "unmatched";

/// Routes served beside the API operations.
const EXTRA: &[(&str, &[&str])] = &[
    ("/", &["GET"]),
    ("/metrics", &["GET"]),
    ("/openapi.json", &["GET"]),
    ("/docs", &["GET"]),
    ("/docs/*", &["GET"]),
    ("/ui/*", &["GET"]),
];

static TABLE: LazyLock<Vec<Route>> = LazyLock::new(|| {
    let spec: serde_json::Value = serde_json::from_str(crate::api::spec()).expect("the spec is JSON");
    let mut routes: Vec<Route> = spec["paths"]
        .as_object()
        .expect("the spec has paths")
        .iter()
        .map(|(template, operations)| {
            let methods = operations
                .as_object()
                .into_iter()
                .flat_map(|ops| ops.keys())
                .filter_map(|m| Method::from_bytes(m.to_ascii_uppercase().as_bytes()).ok())
                .collect();
            route(template, methods)
        })
        .collect();
    routes.extend(EXTRA.iter().map(|(template, methods)| {
        route(template, methods.iter().map(|m| Method::from_bytes(m.as_bytes()).expect("a method")).collect())
    }));
    // Literal segments win over parameters (`/files/upload` before `/files/{id}`).
    routes.sort_by_key(|r| r.segments.iter().map(|s| !matches!(s, Segment::Literal(_))).collect::<Vec<_>>());
    routes
});

fn route(template: &str, methods: Vec<Method>) -> Route {
    let segments = template
        .trim_start_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| match s {
            "*" => Segment::Rest,
            s if s.starts_with('{') => Segment::Param,
            s => Segment::Literal(s.to_owned()),
        })
        .collect();
    Route { segments, template: template.to_owned(), methods }
}

fn find(path: &str) -> Option<&'static Route> {
    // `//health` and `/health/` are other paths (the router answers 404).
    let parts: Vec<&str> = match path.strip_prefix('/') {
        Some("") => Vec::new(),
        Some(rest) => rest.split('/').collect(),
        None => return None,
    };
    if parts.iter().any(|part| part.is_empty()) {
        return None;
    }
    TABLE.iter().find(|route| {
        let mut parts = parts.iter();
        for segment in &route.segments {
            match segment {
                Segment::Rest => return parts.next().is_some(),
                Segment::Param => {
                    if parts.next().is_none() {
                        return false;
                    }
                }
                Segment::Literal(literal) => {
                    if parts.next() != Some(&literal.as_str()) {
                        return false;
                    }
                }
            }
        }
        parts.next().is_none()
    })
}

/// The route template serving `path` (`/files/{file_id}`), or [`UNMATCHED`].
pub fn label(path: &str) -> &'static str {
    find(path).map_or(UNMATCHED, |route| route.template.as_str())
}

/// The methods `path` answers, for an `Allow` header (`GET, HEAD, DELETE`:
/// every GET route answers HEAD too).
pub fn allow(path: &str) -> Option<String> {
    let route = find(path)?;
    let mut methods: Vec<&str> = route.methods.iter().map(Method::as_str).collect();
    if let Some(get) = methods.iter().position(|m| *m == "GET") {
        methods.insert(get + 1, "HEAD");
    }
    Some(methods.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_their_templates_and_nothing_else() {
        assert_eq!(label("/files/upload"), "/files/upload");
        assert_eq!(label("/files/42"), "/files/{file_id}");
        assert_eq!(label("/channels/7/members/9"), "/channels/{channel_id}/members/{user_id}");
        assert_eq!(label("/ui/app.js"), "/ui/*");
        assert_eq!(label("/"), "/");
        assert_eq!(label("/a\"b"), UNMATCHED);
        assert_eq!(label("/files/1/2/3/4"), UNMATCHED);
        assert_eq!(label("//health"), UNMATCHED);
        assert_eq!(label("/health/"), UNMATCHED);
        assert_eq!(allow("/health").as_deref(), Some("GET, HEAD"));
        assert_eq!(allow("/nowhere"), None);
    }
}
