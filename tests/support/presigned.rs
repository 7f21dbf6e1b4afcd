//! Sending a presigned request the way a client must: to its URL, with every
//! header the broker handed out (they are signed) except `content-length`,
//! which the HTTP client computes from the body.

use serde_json::Value;

/// A PUT of `body` to the presigned request `presigned` (`{"url", "headers"}`).
pub fn put(client: &reqwest::Client, presigned: &Value, body: impl Into<reqwest::Body>) -> reqwest::RequestBuilder {
    let mut req = client.put(presigned["url"].as_str().expect("presigned url"));
    for (name, value) in presigned["headers"].as_object().expect("presigned headers") {
        if name != "content-length" {
            req = req.header(name, value.as_str().expect("header value"));
        }
    }
    req.body(body)
}
