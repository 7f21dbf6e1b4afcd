//! `chatgenius-files bucket-setup`, the real binary, against the embedded
//! endpoint and SeaweedFS.

use std::process::{Command, Output};

use crate::helpers::Store;

fn bucket_setup(envs: &[(&str, &str)], strict: bool) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chatgenius-files"));
    cmd.arg("bucket-setup").env_clear().env("RUST_LOG", "error").env("PATH", std::env::var("PATH").unwrap_or_default());
    if strict {
        cmd.arg("--strict");
    }
    cmd.envs(envs.iter().copied()).output().unwrap()
}

fn row<'a>(stdout: &'a str, setting: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.starts_with(&format!("| {setting} |")))
        .unwrap_or_else(|| panic!("no row {setting}:\n{stdout}"))
}

#[test]
fn on_the_embedded_endpoint_it_reports_what_s3s_fs_cannot_do() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let first = bucket_setup(&[("DATA_DIR", data_dir)], false);
    let stdout = String::from_utf8_lossy(&first.stdout).into_owned();
    assert_eq!(first.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&first.stderr));
    assert!(row(&stdout, "bucket exists").contains("| applied |"));
    assert!(row(&stdout, "block public access").contains("not supported by this store"));
    assert!(row(&stdout, "versioning").contains("skipped"));
    assert!(String::from_utf8_lossy(&first.stderr).contains("warning: this store does not support every setting"));

    let strict = bucket_setup(&[("DATA_DIR", data_dir)], true);
    let stdout = String::from_utf8_lossy(&strict.stdout).into_owned();
    assert_eq!(strict.status.code(), Some(3), "--strict fails where something is unsupported");
    assert!(row(&stdout, "bucket exists").contains("already set"), "{stdout}");
}

#[tokio::test]
async fn on_seaweedfs_it_applies_each_setting_then_finds_it_set() {
    let Some(store @ Store::SeaweedFs { .. }) = Store::seaweedfs() else {
        eprintln!("SeaweedFS not configured (TEST_S3_ENDPOINT); run tests/run.sh");
        return;
    };
    let Store::SeaweedFs { endpoint, access_key, secret_key } = &store else { unreachable!() };
    let dir = tempfile::tempdir().unwrap();
    let bucket = format!("cgf-setup-{}", uuid::Uuid::new_v4().simple());
    let envs = [
        ("DATA_DIR", dir.path().to_str().unwrap()),
        ("AWS_S3_ENDPOINT", endpoint.as_str()),
        ("AWS_ACCESS_KEY_ID", access_key.as_str()),
        ("AWS_SECRET_ACCESS_KEY", secret_key.as_str()),
        ("AWS_S3_BUCKET_NAME", bucket.as_str()),
        ("AWS_S3_VERSIONING", "true"),
        ("CORS_ALLOWED_ORIGINS", "https://chat.example"),
        ("MULTIPART_ABORT_AFTER_DAYS", "3"),
    ];
    let first = bucket_setup(&envs, false);
    let stdout = String::from_utf8_lossy(&first.stdout).into_owned();
    assert_eq!(first.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&first.stderr));
    for setting in [
        "bucket exists",
        "default encryption (SSE-S3)",
        "versioning",
        "CORS rules",
        "abort incomplete multipart uploads",
    ] {
        assert!(row(&stdout, setting).contains("| applied |"), "{setting}:\n{stdout}");
    }

    // What the store now holds, read back with the SDK.
    let app = crate::helpers::spawn_app_on(&store, &[("aws-s3-bucket-name", &bucket)]).await;
    let client = app.deps.storage.client();
    let cors = client.get_bucket_cors().bucket(&bucket).send().await.unwrap();
    let rule = &cors.cors_rules()[0];
    assert!(rule.allowed_origins().iter().any(|o| o == "https://chat.example"), "{rule:?}");
    let mut methods = rule.allowed_methods().to_vec();
    methods.sort();
    assert_eq!(methods, ["DELETE", "GET", "HEAD", "PUT"]);
    assert!(rule.expose_headers().iter().any(|h| h.eq_ignore_ascii_case("etag")), "{rule:?}");
    let lifecycle = client.get_bucket_lifecycle_configuration().bucket(&bucket).send().await.unwrap();
    let ours =
        lifecycle.rules().iter().find(|r| r.id() == Some(chatgenius_files::bucket_setup::LIFECYCLE_RULE_ID)).unwrap();
    assert_eq!(ours.abort_incomplete_multipart_upload().and_then(|a| a.days_after_initiation()), Some(3));

    assert!(row(&stdout, "a PUT still works").contains("| ok |"), "{stdout}");
    let again = bucket_setup(&envs, false);
    let stdout = String::from_utf8_lossy(&again.stdout).into_owned();
    assert_eq!(again.status.code(), Some(0));
    for setting in [
        "bucket exists",
        "default encryption (SSE-S3)",
        "versioning",
        "CORS rules",
        "abort incomplete multipart uploads",
    ] {
        assert!(row(&stdout, setting).contains("already set"), "{setting}:\n{stdout}");
    }
    let strict = bucket_setup(&envs, true);
    let unsupported = String::from_utf8_lossy(&strict.stdout).contains("not supported by this store");
    assert_eq!(strict.status.code(), Some(if unsupported { 3 } else { 0 }));
}

/// A store that takes the settings and then refuses uploads (here: the
/// bucket set up by a writable identity, then checked with one that may read
/// but not write) fails the setup at its closing PUT, before users meet it.
#[test]
fn a_store_that_refuses_puts_after_setup_fails_it() {
    let Some(Store::SeaweedFs { endpoint, access_key, secret_key }) = Store::seaweedfs() else {
        eprintln!("SeaweedFS not configured (TEST_S3_ENDPOINT); run tests/run.sh");
        return;
    };
    let (Ok(read_key), Ok(read_secret)) =
        (std::env::var("TEST_S3_READ_ACCESS_KEY"), std::env::var("TEST_S3_READ_SECRET_KEY"))
    else {
        eprintln!("no read-only SeaweedFS identity (TEST_S3_READ_ACCESS_KEY); tests/run.sh sets one");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let bucket = format!("cgf-probe-{}", uuid::Uuid::new_v4().simple());
    let with = |key: &str, secret: &str| {
        let envs = [
            ("DATA_DIR", dir.path().to_str().unwrap()),
            ("AWS_S3_ENDPOINT", endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", key),
            ("AWS_SECRET_ACCESS_KEY", secret),
            ("AWS_S3_BUCKET_NAME", bucket.as_str()),
        ];
        bucket_setup(&envs, false)
    };
    let writable = with(&access_key, &secret_key);
    assert_eq!(writable.status.code(), Some(0), "{}", String::from_utf8_lossy(&writable.stdout));
    let read_only = with(&read_key, &read_secret);
    let stdout = String::from_utf8_lossy(&read_only.stdout).into_owned();
    assert_eq!(read_only.status.code(), Some(1), "{stdout}");
    assert!(row(&stdout, "a PUT still works").contains("FAILED"), "{stdout}");
}
