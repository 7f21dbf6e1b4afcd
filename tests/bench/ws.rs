//! WebSocket fan-out: N subscribers of one channel on loopback, latency from
//! confirm to receipt across all of them, and the broker's RSS per connection.
//! The broker runs as its own process so its memory is measured alone.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio_tungstenite::{
    connect_async_with_config,
    tungstenite::{Message, client::IntoClientRequest, protocol::WebSocketConfig},
};

use crate::{login_and_channel, ms, presign_and_put, process::BrokerProcess};

async fn start_broker() -> BrokerProcess {
    let limits = [
        ("PRESIGN_RATE_PER_MIN", "1000000".to_owned()),
        ("CONFIRM_RATE_PER_MIN", "1000000".to_owned()),
        ("WS_MAX_PER_USER", "1000000".to_owned()),
    ];
    BrokerProcess::start(env!("CARGO_BIN_EXE_chatgenius-files"), &limits).await
}

/// Raises this process's open-file limit to the hard limit (the broker child
/// inherits it); returns the new soft limit.
fn raise_fd_limit() -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed in.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
    limit.rlim_cur
}

/// Prints the fan-out table for each subscriber count.
pub async fn run(client: &reqwest::Client) {
    let fds = raise_fd_limit();
    println!("\n## WebSocket fan-out: subscribers of one channel (broker in its own process)\n");
    println!(
        "| subscribers | rounds | confirm → receipt p50 ms | p99 ms | max ms | broker RSS idle MiB | with sockets MiB | KiB per connection |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for subscribers in [1_000usize, 10_000] {
        if fds < subscribers as u64 + 1_000 {
            println!("| {subscribers} | – | open-file limit {fds} is too low for this many sockets | | | | | |");
            continue;
        }
        let broker = start_broker().await;
        let addr = broker.addr.clone();
        let (token, channel) = login_and_channel(client, &addr).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let idle = broker.rss_kib();

        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
        let mut sockets = Vec::with_capacity(subscribers);
        for _ in 0..subscribers {
            let mut req = format!("ws://{addr}/ws").into_client_request().unwrap();
            req.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
            // Small client buffers too: 10k × 128 KiB defaults would swamp this process.
            let config = WebSocketConfig::default().read_buffer_size(4 * 1024).write_buffer_size(0);
            let (socket, _) = connect_async_with_config(req, Some(config), false).await.expect("websocket connects");
            let tx = tx.clone();
            sockets.push(tokio::spawn(async move {
                let (_, mut read) = socket.split();
                while let Some(Ok(frame)) = read.next().await {
                    if let Message::Text(text) = frame
                        && text.contains("\"file_upload_complete\"")
                    {
                        let _ = tx.send(Instant::now());
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let connected = broker.rss_kib();

        let rounds = 5;
        let mut latencies = Vec::with_capacity(rounds * subscribers);
        for i in 0..rounds {
            let upload_id = presign_and_put(client, &addr, &token, channel, None, &format!("{i}.png")).await;
            let start = Instant::now();
            let confirmed = client
                .post(format!("http://{addr}/files/uploads/{upload_id}/confirm"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            assert_eq!(confirmed.status(), 201);
            for _ in 0..subscribers {
                let at = tokio::time::timeout(Duration::from_secs(30), rx.recv())
                    .await
                    .expect("every subscriber receives")
                    .unwrap();
                latencies.push(at.duration_since(start));
            }
        }
        latencies.sort();
        let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p).round() as usize];
        println!(
            "| {subscribers} | {rounds} | {} | {} | {} | {:.1} | {:.1} | {:.1} |",
            ms(pct(0.5)),
            ms(pct(0.99)),
            ms(*latencies.last().unwrap()),
            idle as f64 / 1024.0,
            connected as f64 / 1024.0,
            (connected.saturating_sub(idle)) as f64 / subscribers as f64
        );
        for socket in sockets {
            socket.abort();
        }
    }
}
