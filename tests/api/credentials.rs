//! STORAGE=s3 without keys: the broker takes its credentials from AWS's
//! standard chain. Here the chain finds a shared credentials profile file
//! (as `aws configure` writes it), and the whole upload path, presigned URLs
//! included, is checked by a real SigV4-verifying S3 endpoint.

use chatgenius_files::embedded_s3::EmbeddedS3;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::process::BrokerProcess;

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89";

/// Settings that keep the chain on this machine: no instance metadata
/// service (169.254.169.254), no ECS endpoint, profile files where given.
fn chain_env(dir: &std::path::Path, endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("STORAGE", "s3".to_owned()),
        ("AWS_S3_ENDPOINT", endpoint.to_owned()),
        ("AWS_S3_BUCKET_NAME", "chain".to_owned()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        ("AWS_CONFIG_FILE", dir.join("config").display().to_string()),
        ("AWS_SHARED_CREDENTIALS_FILE", dir.join("credentials").display().to_string()),
        ("HOME", dir.display().to_string()),
    ]
}

#[tokio::test]
async fn storage_s3_without_keys_signs_with_a_profile_from_the_credential_chain() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = EmbeddedS3::start(&dir.path().join("s3"), "127.0.0.1:0".parse().unwrap(), &[]).await.unwrap();
    std::fs::write(
        dir.path().join("credentials"),
        format!(
            "[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            s3.access_key_id,
            s3.secret_access_key.expose()
        ),
    )
    .unwrap();
    let broker =
        BrokerProcess::start(env!("CARGO_BIN_EXE_chatgenius-files"), &chain_env(dir.path(), s3.endpoint().as_str()))
            .await;
    let client = reqwest::Client::new();
    let base = &broker.base;
    let login: Value = client
        .post(format!("{base}/auth/dev-login"))
        .json(&json!({ "username": "ada" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["token"].as_str().unwrap();
    let channel: Value = client
        .post(format!("{base}/channels"))
        .bearer_auth(token)
        .json(&json!({ "name": "c" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let presigned: Value = client
        .post(format!("{base}/files/presign"))
        .bearer_auth(token)
        .json(&json!({ "channel_id": channel["id"], "file_name": "a.png", "content_type": "image/png", "size": PNG.len() }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(presigned["url"].as_str().unwrap().contains(&s3.access_key_id), "signed with the profile's key");
    let put = crate::presigned::put(&client, &presigned, PNG.to_vec()).send().await.unwrap();
    assert_eq!(put.status(), StatusCode::OK, "the store accepts the presigned PUT");
    let upload_id = presigned["upload_id"].as_str().unwrap();
    let confirm =
        client.post(format!("{base}/files/uploads/{upload_id}/confirm")).bearer_auth(token).send().await.unwrap();
    assert_eq!(confirm.status(), StatusCode::CREATED, "the broker's own calls are signed too");
    let file: Value = confirm.json().await.unwrap();
    let link: Value = client
        .get(format!("{base}/files/download/{}?redirect=false", file["id"]))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let downloaded = client.get(link["url"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(downloaded.status(), StatusCode::OK);
    assert_eq!(downloaded.bytes().await.unwrap().as_ref(), PNG);
}

#[test]
fn storage_s3_with_no_credentials_anywhere_stops_boot_saying_so() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_chatgenius-files"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATA_DIR", dir.path().join("data"))
        .env("BIND_ADDR", "127.0.0.1:0")
        .envs(chain_env(dir.path(), "http://127.0.0.1:9"));
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "boot must fail without credentials");
    assert!(stderr.contains("STORAGE=s3") && stderr.contains("credentials"), "{stderr}");
}
