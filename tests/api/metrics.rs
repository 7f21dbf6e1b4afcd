//! `/metrics` counts what happened, in Prometheus text format.

use serde_json::json;

use crate::helpers::spawn_app;

fn value(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn metrics_count_requests_presigns_confirms_bytes_and_sockets() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let channel = app.create_channel(&alice, "general").await;
    app.upload(&alice, channel, None, "a.txt", "text/plain", b"12345").await;
    let missing = app
        .post(
            &alice,
            "/files/presign",
            json!({ "channel_id": channel, "file_name": "b.txt", "content_type": "text/plain", "size": 3 }),
        )
        .await
        .json::<serde_json::Value>()
        .await
        .unwrap();
    let path = format!("/files/uploads/{}/confirm", missing["upload_id"].as_str().unwrap());
    assert_eq!(app.post(&alice, &path, json!({})).await.status(), 422);
    let req = format!("ws://{}/ws?token={}", app.addr, alice.token);
    let (_socket, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;

    let resp = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = resp.text().await.unwrap();
    assert_eq!(value(&text, "cgf_presigns_total"), Some(2.0), "{text}");
    assert_eq!(value(&text, "cgf_confirms_total{outcome=\"created\"}"), Some(1.0));
    assert_eq!(value(&text, "cgf_confirms_total{outcome=\"object_missing\"}"), Some(1.0));
    assert_eq!(value(&text, "cgf_bytes_confirmed_total"), Some(5.0));
    assert_eq!(value(&text, "cgf_websocket_connections"), Some(1.0));
    assert_eq!(
        value(&text, "cgf_http_requests_total{method=\"POST\",route=\"/files/presign\",status=\"201\"}"),
        Some(2.0)
    );
    assert_eq!(
        value(
            &text,
            "cgf_http_requests_total{method=\"POST\",route=\"/files/uploads/{upload_id}/confirm\",status=\"422\"}"
        ),
        Some(1.0)
    );
    assert!(value(&text, "cgf_rate_limiter_keys").is_some_and(|keys| keys >= 1.0));
}
