//! The production shape: PostgreSQL and SeaweedFS, the broker in its own
//! process. For 1, 16 and 256 MiB files, uploaded the direct way and through
//! `POST /files/upload`: CPU per upload of the broker, of PostgreSQL (every
//! `postgres` process) and of SeaweedFS (every `weed` process), uploads/s,
//! MiB/s and the broker's peak RSS; then the confirm's latency with a
//! declared sha256 at 1 and 256 MiB, and the broker's idle RSS.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::{
    large::{body_of, chunk, cpu_ns, direct_as, median, proxied_as},
    login_and_channel,
    process::BrokerProcess,
};

const MIB: u64 = 1024 * 1024;
/// A file of no particular format: no preview, no metadata to remove.
const FILE: (&str, &str) = ("data.bin", "application/octet-stream");

/// CPU time (ns) of every process named `comm`, over all their threads.
fn group_cpu_ns(comm: &str) -> u64 {
    let Ok(procs) = std::fs::read_dir("/proc") else { return 0 };
    procs
        .flatten()
        .filter_map(|p| p.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm))
        .map(cpu_ns)
        .sum()
}

/// Forgets the broker's peak RSS, so the next reading is the next run's.
fn reset_peak(broker: &BrokerProcess) {
    let _ = std::fs::write(format!("/proc/{}/clear_refs", broker.child.id()), "5");
}

fn rss_mib(broker: &BrokerProcess, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", broker.child.id())).unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

/// SHA-256 (hex) of the bytes [`body_of`] sends for `len`.
fn sha256_of(len: u64) -> String {
    let mut hasher = Sha256::new();
    let mut left = len as usize;
    let mut first = true;
    while left > 0 {
        let part = chunk(first);
        let take = left.min(part.len());
        hasher.update(&part[..take]);
        left -= take;
        first = false;
    }
    hex::encode(hasher.finalize())
}

/// Presign, one PUT straight to the store, confirm; returns the confirm's latency.
async fn direct_single(
    client: &reqwest::Client,
    addr: &str,
    token: &str,
    channel: i64,
    size: u64,
    sha256: Option<&str>,
) -> Duration {
    let mut body = json!({ "channel_id": channel, "file_name": FILE.0, "content_type": FILE.1, "size": size });
    if let Some(sum) = sha256 {
        body["sha256"] = json!(sum);
    }
    let url = format!("http://{addr}/files/presign");
    let presigned: Value = client.post(url).bearer_auth(token).json(&body).send().await.unwrap().json().await.unwrap();
    let mut put = client.put(presigned["url"].as_str().unwrap()).body(body_of(size));
    for (name, value) in presigned["headers"].as_object().unwrap() {
        put = put.header(name, value.as_str().unwrap());
    }
    let resp = put.send().await.unwrap();
    assert!(resp.status().is_success(), "PUT {}", resp.status());
    let confirm = format!("http://{addr}/files/uploads/{}/confirm", presigned["upload_id"].as_str().unwrap());
    let started = Instant::now();
    let resp = client.post(confirm).bearer_auth(token).json(&json!({})).send().await.unwrap();
    let took = started.elapsed();
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
    took
}

/// Where the runs' CPU time is spent.
struct Cpu {
    broker: u64,
    postgres: u64,
    seaweedfs: u64,
}

impl Cpu {
    fn now(broker: &BrokerProcess) -> Self {
        Self { broker: cpu_ns(broker.child.id()), postgres: group_cpu_ns("postgres"), seaweedfs: group_cpu_ns("weed") }
    }
}

pub async fn run(client: &reqwest::Client) {
    let Some(database_url) = crate::postgres_database().await else {
        return println!("PostgreSQL does not answer on 127.0.0.1:5432 (BENCH_POSTGRES_URL): nothing measured");
    };
    let endpoint = std::env::var("TEST_S3_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:18333".into());
    if group_cpu_ns("weed") == 0 {
        return println!("SeaweedFS is not running (tests/run.sh starts it on {endpoint}): nothing measured");
    }
    let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
    let settings = [
        ("STORAGE", "s3".to_owned()),
        ("DATABASE_URL", database_url),
        ("AWS_S3_ENDPOINT", endpoint.clone()),
        ("AWS_ACCESS_KEY_ID", var("TEST_S3_ACCESS_KEY", "cgftestkey")),
        ("AWS_SECRET_ACCESS_KEY", var("TEST_S3_SECRET_KEY", "cgftestsecret0123456789")),
        ("AWS_S3_BUCKET_NAME", format!("cgf-bench-{}", std::process::id())),
        ("MAX_FILE_SIZE_MB", "1024".to_owned()),
        ("MULTIPART_PART_SIZE_MB", "16".to_owned()),
        ("ALLOWED_FILE_TYPES", "*/*".to_owned()),
        ("PRESIGN_RATE_PER_MIN", "100000".to_owned()),
        ("CONFIRM_RATE_PER_MIN", "100000".to_owned()),
        ("SWEEP_INTERVAL_SECS", "0".to_owned()),
        ("PREVIEW_WORKERS", "0".to_owned()),
    ];
    let broker = BrokerProcess::start(env!("CARGO_BIN_EXE_chatgenius-files"), &settings).await;
    let (token, channel) = login_and_channel(client, &broker.addr).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle_rss = rss_mib(&broker, "VmRSS:");
    let addr = broker.addr.as_str();
    // The first upload of each path pays one-time costs (pools, connections).
    direct_single(client, addr, &token, channel, MIB, None).await;
    proxied_as(client, addr, &token, channel, MIB, FILE).await;

    println!("\n## PostgreSQL + SeaweedFS: CPU per upload by process group (broker in its own process)\n");
    println!(
        "| size | path | uploads | broker CPU ms/upload | PostgreSQL CPU ms/upload | SeaweedFS CPU ms/upload | machine CPU s/GiB | uploads/s | MiB/s | broker peak RSS MiB |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (size_mib, count) in [(1, 40), (16, 10), (256, 2)] {
        let size = size_mib * MIB;
        for path in ["direct", "proxy"] {
            reset_peak(&broker);
            let before = Cpu::now(&broker);
            let started = Instant::now();
            for _ in 0..count {
                match (path, size_mib) {
                    ("direct", 256) => direct_as(client, addr, &token, channel, size, FILE).await,
                    ("direct", _) => {
                        direct_single(client, addr, &token, channel, size, None).await;
                    }
                    _ => proxied_as(client, addr, &token, channel, size, FILE).await,
                }
            }
            let wall = started.elapsed().as_secs_f64();
            let after = Cpu::now(&broker);
            let per = |a: u64, b: u64| (a - b) as f64 / 1e6 / count as f64;
            let (broker_ms, pg_ms, weed_ms) = (
                per(after.broker, before.broker),
                per(after.postgres, before.postgres),
                per(after.seaweedfs, before.seaweedfs),
            );
            let machine_s_per_gib = (broker_ms + pg_ms + weed_ms) / 1e3 * 1024.0 / size_mib as f64;
            let how = if path == "direct" && size_mib == 256 { "direct (multipart, 16 MiB parts)" } else { path };
            println!(
                "| {size_mib} MiB | {how} | {count} | {broker_ms:.2} | {pg_ms:.2} | {weed_ms:.1} | {machine_s_per_gib:.2} | {:.2} | {:.1} | {:.1} |",
                count as f64 / wall,
                (count as u64 * size_mib) as f64 / wall,
                rss_mib(&broker, "VmHWM:"),
            );
        }
    }

    println!("\n## Confirm with a declared sha256 (PostgreSQL + SeaweedFS)\n");
    println!("| size | confirms | confirm p50 ms |");
    println!("|---:|---:|---:|");
    let mut p50s = Vec::new();
    for (size_mib, count) in [(1, 10), (256, 3)] {
        let size = size_mib * MIB;
        let sum = sha256_of(size);
        let mut took = Vec::new();
        for _ in 0..count {
            took.push(direct_single(client, addr, &token, channel, size, Some(&sum)).await.as_secs_f64() * 1e3);
        }
        let p50 = median(&mut took);
        p50s.push(p50);
        println!("| {size_mib} MiB | {count} | {p50:.2} |");
    }
    println!("\nConfirm p50, 256 MiB / 1 MiB with sha256 declared: **{:.2}×** (target ≤ 2×).", p50s[1] / p50s[0]);
    println!("Broker idle RSS after boot: **{idle_rss:.1} MiB** (target ≤ 20 MB).");
}
