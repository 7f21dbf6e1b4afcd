//! The soak's short variant (the long one is `cargo bench --bench broker --
//! soak`): 15 s of mixed load with WebSocket subscribers on the embedded
//! default, and on PostgreSQL + SeaweedFS when tests/run.sh provides them.

use std::time::Duration;

use crate::{
    helpers::{Store, fresh_database_url},
    soak_driver::{Backend, SoakReport, run},
};

fn check(report: &SoakReport) {
    assert!(report.operations > 100, "{report:?}");
    assert_eq!(report.unexpected, 0, "unexpected outcomes: {:?}", report.outcomes);
    assert_eq!(report.orphans_after_sweep, 0);
    assert_eq!(report.events_received, report.events_expected, "every subscriber got every event");
    assert!(report.events_expected > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_soak_on_the_embedded_default() {
    let report = run(env!("CARGO_BIN_EXE_chatgenius-files"), &Backend::default(), Duration::from_secs(15), 20, 5).await;
    eprintln!("{}", report.table("embedded default, 15 s"));
    check(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_soak_on_postgresql_and_seaweedfs() {
    let (Ok(_), Some(Store::SeaweedFs { endpoint, access_key, secret_key })) =
        (std::env::var("TEST_POSTGRES_URL"), Store::seaweedfs())
    else {
        eprintln!("needs TEST_POSTGRES_URL and SeaweedFS (tests/run.sh)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let backend = Backend {
        database_url: Some(fresh_database_url(dir.path()).await),
        s3: Some((endpoint, access_key, secret_key)),
    };
    let report = run(env!("CARGO_BIN_EXE_chatgenius-files"), &backend, Duration::from_secs(15), 20, 5).await;
    eprintln!("{}", report.table("PostgreSQL + SeaweedFS, 15 s"));
    check(&report);
}
