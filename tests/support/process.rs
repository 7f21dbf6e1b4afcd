//! The broker binary run as its own process, for benchmarks and the soak: its
//! CPU and memory are then its own.

// Each includer uses part of it.
#![allow(dead_code)]

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

/// A running broker; killed on drop, its data folder removed.
pub struct BrokerProcess {
    pub child: Child,
    /// `127.0.0.1:port` of the API.
    pub addr: String,
    /// `http://` + `addr`.
    pub base: String,
    /// The environment it was started with (for the CLI on the same data).
    pub envs: Vec<(String, String)>,
    _dir: tempfile::TempDir,
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl BrokerProcess {
    /// Starts `binary serve` with a fresh data folder, free ports and quiet
    /// logs, plus `extra` settings (which win), and waits for `/health`.
    pub async fn start(binary: &str, extra: &[(&str, String)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let api = free_port();
        let mut envs: Vec<(String, String)> = vec![
            ("PATH".into(), std::env::var("PATH").unwrap_or_default()),
            ("DATA_DIR".into(), dir.path().display().to_string()),
            ("BIND_ADDR".into(), format!("127.0.0.1:{api}")),
            ("EMBEDDED_S3_ADDR".into(), format!("127.0.0.1:{}", free_port())),
            ("RUST_LOG".into(), "warn".into()),
        ];
        for (name, value) in extra {
            envs.retain(|(n, _)| n != name);
            envs.push(((*name).to_owned(), value.clone()));
        }
        let child = Command::new(binary)
            .arg("serve")
            .env_clear()
            .envs(envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("broker binary");
        let addr = format!("127.0.0.1:{api}");
        let broker = Self { child, base: format!("http://{addr}"), addr, envs, _dir: dir };
        for _ in 0..200 {
            if reqwest::get(format!("{}/health", broker.base)).await.is_ok_and(|r| r.status().is_success()) {
                return broker;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("broker did not start");
    }

    /// Resident memory now, KiB.
    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS:")
    }

    /// Peak resident memory so far, KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        self.status_kib("VmHWM:")
    }

    fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
