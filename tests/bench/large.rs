//! One 1 GiB file, uploaded the direct way (multipart with presigned part URLs)
//! and through `POST /files/upload`: the broker's CPU time and peak RSS for
//! each. The broker runs as its own process, a fresh one per path (so its peak
//! RSS is that path's); the S3 endpoint runs in this process, so its work is
//! not counted as the broker's.

use std::time::{Duration, Instant};

use bytes::Bytes;
use chatgenius_files::embedded_s3::EmbeddedS3;
use futures_util::stream;
use serde_json::{Value, json};

use crate::{login_and_channel, process::BrokerProcess};

const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;
const CHUNK: usize = MIB as usize;
/// Small direct uploads measured back to back, and after a cache flush.
const SMALL_UPLOADS: usize = 50;
const COLD_UPLOADS: usize = 10;

async fn start_broker(s3: &EmbeddedS3, part_size_mb: u32) -> BrokerProcess {
    let settings = [
        ("AWS_S3_ENDPOINT", s3.endpoint().as_str().to_owned()),
        ("AWS_ACCESS_KEY_ID", s3.access_key_id.clone()),
        ("AWS_SECRET_ACCESS_KEY", s3.secret_access_key.expose().to_owned()),
        ("MAX_FILE_SIZE_MB", "2048".to_owned()),
        ("MULTIPART_PART_SIZE_MB", part_size_mb.to_string()),
        ("SWEEP_INTERVAL_SECS", "0".to_owned()),
        ("PRESIGN_RATE_PER_MIN", "100000".to_owned()),
        ("CONFIRM_RATE_PER_MIN", "100000".to_owned()),
    ];
    BrokerProcess::start(env!("CARGO_BIN_EXE_chatgenius-files"), &settings).await
}

/// CPU time of every thread of `pid`, from the scheduler (nanosecond resolution).
pub(crate) fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Writes 256 MiB, more than the CPU caches hold: the broker's code and data
/// are read from memory again afterwards.
fn flush_caches() {
    let mut junk = vec![0u8; 256 << 20];
    for i in (0..junk.len()).step_by(64) {
        junk[i] = i as u8;
    }
    std::hint::black_box(&junk);
}

pub(crate) fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// 1 MiB of file content: a PNG signature first, then a pattern.
pub(crate) fn chunk(first: bool) -> Bytes {
    let mut bytes: Vec<u8> = (0..CHUNK).map(|i| (i % 251) as u8).collect();
    if first {
        bytes[..8].copy_from_slice(b"\x89PNG\r\n\x1a\n");
    }
    Bytes::from(bytes)
}

pub(crate) fn body_of(len: u64) -> reqwest::Body {
    let chunks = (len as usize).div_ceil(CHUNK);
    reqwest::Body::wrap_stream(stream::iter((0..chunks).map(|i| Ok::<_, std::io::Error>(chunk(i == 0)))))
}

/// The direct path: start, PUT every part straight to S3, complete.
async fn direct(client: &reqwest::Client, addr: &str, token: &str, channel: i64, size: u64) {
    direct_as(client, addr, token, channel, size, ("big.png", "image/png")).await
}

/// [`direct`] for a file named and typed `(name, content_type)`.
pub(crate) async fn direct_as(
    client: &reqwest::Client,
    addr: &str,
    token: &str,
    channel: i64,
    size: u64,
    (name, content_type): (&str, &str),
) {
    let started: Value = client
        .post(format!("http://{addr}/files/multipart"))
        .bearer_auth(token)
        .json(&json!({ "channel_id": channel, "file_name": name, "content_type": content_type, "size": size }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let upload_id = started["upload_id"].as_str().unwrap();
    let part_count = started["part_count"].as_u64().unwrap();
    let part_size = started["part_size"].as_u64().unwrap();
    let mut urls: Vec<Value> = started["parts"].as_array().unwrap().clone();
    if (urls.len() as u64) < part_count {
        let rest: Vec<u64> = (urls.len() as u64 + 1..=part_count).collect();
        for batch in rest.chunks(100) {
            let more: Value = client
                .post(format!("http://{addr}/files/uploads/{upload_id}/parts"))
                .bearer_auth(token)
                .json(&json!({ "part_numbers": batch }))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            urls.extend(more["parts"].as_array().unwrap().iter().cloned());
        }
    }
    let mut parts = Vec::new();
    for part in &urls {
        let n = part["part_number"].as_u64().unwrap();
        let len = part_size.min(size - (n - 1) * part_size);
        let resp = client
            .put(part["url"].as_str().unwrap())
            .header("content-length", len)
            .body(body_of(len))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "part {n}: {}", resp.status());
        let etag = resp.headers()["etag"].to_str().unwrap().to_owned();
        parts.push(json!({ "part_number": n, "etag": etag }));
    }
    let done = client
        .post(format!("http://{addr}/files/uploads/{upload_id}/complete"))
        .bearer_auth(token)
        .json(&json!({ "parts": parts }))
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 201, "{}", done.text().await.unwrap());
}

/// Through the broker: one streamed multipart/form-data request.
async fn proxied(client: &reqwest::Client, addr: &str, token: &str, channel: i64, size: u64) {
    proxied_as(client, addr, token, channel, size, ("big.png", "image/png")).await
}

/// [`proxied`] for a file named and typed `(name, content_type)`.
pub(crate) async fn proxied_as(
    client: &reqwest::Client,
    addr: &str,
    token: &str,
    channel: i64,
    size: u64,
    (name, content_type): (&str, &str),
) {
    let file = reqwest::multipart::Part::stream_with_length(body_of(size), size)
        .file_name(name.to_owned())
        .mime_str(content_type)
        .unwrap();
    let form = reqwest::multipart::Form::new().text("channel_id", channel.to_string()).part("file", file);
    let resp =
        client.post(format!("http://{addr}/files/upload")).bearer_auth(token).multipart(form).send().await.unwrap();
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
}

struct Measured {
    cpu_secs: f64,
    peak_rss_mib: f64,
    wall_secs: f64,
}

async fn measure<F: std::future::Future<Output = ()>>(broker: &BrokerProcess, upload: F) -> Measured {
    let pid = broker.child.id();
    let cpu_before = cpu_ns(pid);
    let started = Instant::now();
    upload.await;
    let wall_secs = started.elapsed().as_secs_f64();
    Measured {
        cpu_secs: (cpu_ns(pid) - cpu_before) as f64 / 1e9,
        peak_rss_mib: broker.peak_rss_kib() as f64 / 1024.0,
        wall_secs,
    }
}

pub async fn run(client: &reqwest::Client) {
    let s3_dir = tempfile::tempdir().unwrap();
    let s3 = EmbeddedS3::start(s3_dir.path(), "127.0.0.1:0".parse().unwrap(), &[]).await.unwrap();
    println!("\n## 1 GiB upload: broker CPU and peak RSS (broker in its own process, S3 in the bench process)\n");
    println!("| path | broker CPU s | broker peak RSS MiB | wall s |");
    println!("|---|---:|---:|---:|");
    let broker = start_broker(&s3, 64).await;
    let (token, channel) = login_and_channel(client, &broker.addr).await;
    let idle = measure(&broker, tokio::time::sleep(Duration::from_secs(5))).await;
    println!("| idle broker, 5 s | {:.4} | {:.1} | {:.1} |", idle.cpu_secs, idle.peak_rss_mib, idle.wall_secs);
    // One small upload first: the broker's one-time costs (connection pools,
    // TLS roots, prepared statements) are not the upload's.
    direct(client, &broker.addr, &token, channel, MIB).await;
    let direct_cost = measure(&broker, direct(client, &broker.addr, &token, channel, GIB)).await;
    println!(
        "| direct (multipart, 64 MiB parts, presigned) | {:.4} | {:.1} | {:.1} |",
        direct_cost.cpu_secs, direct_cost.peak_rss_mib, direct_cost.wall_secs
    );
    // The direct path's cost is per upload, not per byte: the same calls for
    // 1 MiB as for 1 GiB. Measured hot (back to back) and cold (after the
    // caches were flushed, as the store's assembly of 1 GiB flushes them).
    let mut hot = Vec::new();
    for _ in 0..SMALL_UPLOADS {
        hot.push(measure(&broker, direct(client, &broker.addr, &token, channel, MIB)).await.cpu_secs);
    }
    let mut cold = Vec::new();
    for _ in 0..COLD_UPLOADS {
        flush_caches();
        tokio::time::sleep(Duration::from_millis(500)).await;
        cold.push(measure(&broker, direct(client, &broker.addr, &token, channel, MIB)).await.cpu_secs);
    }
    let cold = median(&mut cold);
    println!("| direct, 1 MiB, back to back (median of {SMALL_UPLOADS}) | {:.4} | | |", median(&mut hot));
    println!("| direct, 1 MiB, caches flushed first (median of {COLD_UPLOADS}) | {cold:.4} | | |");
    drop(broker);

    let broker = start_broker(&s3, 64).await;
    let (token, channel) = login_and_channel(client, &broker.addr).await;
    proxied(client, &broker.addr, &token, channel, MIB).await;
    let proxy_cost = measure(&broker, proxied(client, &broker.addr, &token, channel, GIB)).await;
    println!(
        "| `POST /files/upload` (streamed) | {:.4} | {:.1} | {:.1} |",
        proxy_cost.cpu_secs, proxy_cost.peak_rss_mib, proxy_cost.wall_secs
    );
    println!(
        "\nBroker CPU, proxy / direct: **{:.0}×** (target ≥ 1000×). Proxy peak RSS: **{:.1} MiB** (target < 64 MB).",
        proxy_cost.cpu_secs / direct_cost.cpu_secs.max(1e-9),
        proxy_cost.peak_rss_mib
    );
    // The proxy's cost grows with the size (it was measured on 1 GiB), the
    // direct path's does not.
    println!(
        "At {:.1} ms per direct upload (caches flushed), the ratio reaches 1000× for files of {:.1} GiB and more.",
        cold * 1000.0,
        1000.0 * cold / proxy_cost.cpu_secs
    );
}
