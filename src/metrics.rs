//! Prometheus metrics, served as text at `/metrics`: requests by route and
//! status, presigns, confirms by outcome, bytes confirmed, WebSocket
//! connections, rate-limiter keys and sweeper results.

use std::{
    collections::BTreeMap,
    fmt::Write,
    sync::{
        Mutex,
        atomic::{AtomicI64, AtomicU64, Ordering},
    },
};

/// Distinct (method, route, status) series kept at most; the rest count as `other`.
const MAX_ROUTE_SERIES: usize = 500;

/// Counters and gauges of one broker instance.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    presigns: AtomicU64,
    confirms: Mutex<BTreeMap<&'static str, u64>>,
    bytes_confirmed: AtomicU64,
    ws_connections: AtomicI64,
    sweeper: Mutex<BTreeMap<&'static str, u64>>,
    ignored_failures: Mutex<BTreeMap<&'static str, u64>>,
    photo_metadata: Mutex<BTreeMap<&'static str, u64>>,
}

/// A method label: the methods the service answers, anything else `OTHER`.
fn method_of(method: &str) -> &'static str {
    ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"].into_iter().find(|m| *m == method).unwrap_or("OTHER")
}

/// A label value as the text exposition requires (`\`, `"` and newlines escaped).
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

impl Metrics {
    /// Counts a request under its route template (`route`, from the route
    /// table, never from the client).
    pub fn request(&self, method: &str, route: &str, status: u16) {
        let mut requests = self.requests.lock().expect("metrics lock");
        let mut key = (method_of(method).to_owned(), route.to_owned(), status);
        if !requests.contains_key(&key) && requests.len() >= MAX_ROUTE_SERIES {
            key.1 = "other".to_owned();
        }
        *requests.entry(key).or_default() += 1;
    }

    pub fn presigned(&self) {
        self.presigns.fetch_add(1, Ordering::Relaxed);
    }

    /// A confirm (or upload through the broker) ended with `outcome`; `bytes` recorded.
    pub fn confirmed(&self, outcome: &'static str, bytes: u64) {
        *self.confirms.lock().expect("metrics lock").entry(outcome).or_default() += 1;
        self.bytes_confirmed.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn ws_opened(&self) {
        self.ws_connections.fetch_add(1, Ordering::Relaxed);
    }

    pub fn ws_closed(&self) {
        self.ws_connections.fetch_sub(1, Ordering::Relaxed);
    }

    /// Adds a sweep's results (`step` → count).
    pub fn swept(&self, results: &[(&'static str, u64)]) {
        let mut sweeper = self.sweeper.lock().expect("metrics lock");
        for (step, count) in results {
            *sweeper.entry(step).or_default() += count;
        }
    }

    /// A failure that was logged where it happened and gone on from (no
    /// request failed because of it); `what` names it. Store cleanups left
    /// behind are retried by the sweeper.
    pub fn ignored_failure(&self, what: &'static str) {
        *self.ignored_failures.lock().expect("metrics lock").entry(what).or_default() += 1;
    }

    /// An image original was checked for metadata: `removed`, `none_found`,
    /// `over_limit` (stored as uploaded) or `malformed` (refused).
    pub fn photo_metadata(&self, outcome: &'static str) {
        *self.photo_metadata.lock().expect("metrics lock").entry(outcome).or_default() += 1;
    }

    /// The Prometheus text exposition.
    pub fn render(&self, limiter_keys: usize) -> String {
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        family("cgf_http_requests_total", "counter", "HTTP requests by method, route and status.");
        let mut body = String::new();
        for ((method, route, status), count) in self.requests.lock().expect("metrics lock").iter() {
            let _ = writeln!(
                body,
                "cgf_http_requests_total{{method=\"{}\",route=\"{}\",status=\"{status}\"}} {count}",
                escape(method),
                escape(route)
            );
        }
        out.push_str(&body);
        let _ =
            writeln!(out, "# HELP cgf_presigns_total Presigned uploads handed out.\n# TYPE cgf_presigns_total counter");
        let _ = writeln!(out, "cgf_presigns_total {}", self.presigns.load(Ordering::Relaxed));
        let _ = writeln!(
            out,
            "# HELP cgf_confirms_total Confirms and uploads through the broker by outcome.\n# TYPE cgf_confirms_total counter"
        );
        for (outcome, count) in self.confirms.lock().expect("metrics lock").iter() {
            let _ = writeln!(out, "cgf_confirms_total{{outcome=\"{outcome}\"}} {count}");
        }
        let _ = writeln!(
            out,
            "# HELP cgf_bytes_confirmed_total Bytes of files recorded.\n# TYPE cgf_bytes_confirmed_total counter"
        );
        let _ = writeln!(out, "cgf_bytes_confirmed_total {}", self.bytes_confirmed.load(Ordering::Relaxed));
        let _ = writeln!(
            out,
            "# HELP cgf_websocket_connections Open WebSocket connections.\n# TYPE cgf_websocket_connections gauge"
        );
        let _ = writeln!(out, "cgf_websocket_connections {}", self.ws_connections.load(Ordering::Relaxed));
        let _ = writeln!(
            out,
            "# HELP cgf_rate_limiter_keys Users tracked by the rate limiters.\n# TYPE cgf_rate_limiter_keys gauge"
        );
        let _ = writeln!(out, "cgf_rate_limiter_keys {limiter_keys}");
        let _ =
            writeln!(out, "# HELP cgf_sweeper_total What the sweeper did, by step.\n# TYPE cgf_sweeper_total counter");
        for (step, count) in self.sweeper.lock().expect("metrics lock").iter() {
            let _ = writeln!(out, "cgf_sweeper_total{{step=\"{step}\"}} {count}");
        }
        let _ = writeln!(
            out,
            "# HELP cgf_ignored_failures_total Failures logged and gone on from: store cleanups (the sweeper retries), download statistics, event delivery, sweeps.\n\
             # TYPE cgf_ignored_failures_total counter"
        );
        for (what, count) in self.ignored_failures.lock().expect("metrics lock").iter() {
            let _ = writeln!(out, "cgf_ignored_failures_total{{what=\"{what}\"}} {count}");
        }
        let _ = writeln!(
            out,
            "# HELP cgf_photo_metadata_total Image originals checked for metadata, by outcome: removed, none_found, over_limit (stored as uploaded), malformed (refused).\n\
             # TYPE cgf_photo_metadata_total counter"
        );
        for (outcome, count) in self.photo_metadata.lock().expect("metrics lock").iter() {
            let _ = writeln!(out, "cgf_photo_metadata_total{{outcome=\"{outcome}\"}} {count}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped_and_methods_bounded() {
        let metrics = Metrics::default();
        metrics.request("GET", "/files/download/{file_id}", 302);
        metrics.request("GET", "/a\"b", 404);
        metrics.request("BREW", "/health", 405);
        let text = metrics.render(0);
        assert!(text.contains(r#"method="GET",route="/files/download/{file_id}",status="302""#), "{text}");
        assert!(text.contains(r#"method="GET",route="/a\"b",status="404""#), "{text}");
        assert!(text.contains(r#"method="OTHER",route="/health",status="405""#), "{text}");
        assert_eq!(escape("a\"b\\c\nd"), r#"a\"b\\c\nd"#);
    }
}
