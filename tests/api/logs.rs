//! No presigned signature, token or secret reaches the logs, even at debug level.

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use serde_json::{Value, json};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test]
async fn a_full_flow_logs_no_signature_token_or_secret() {
    let dir = tempfile::tempdir().unwrap();
    let (api, s3) = (free_port(), free_port());
    let jwt_secret = "jwt-secret-that-must-never-be-logged-0123456789";
    let mut child = Command::new(env!("CARGO_BIN_EXE_chatgenius-files"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATA_DIR", dir.path())
        .env("BIND_ADDR", format!("127.0.0.1:{api}"))
        .env("EMBEDDED_S3_ADDR", format!("127.0.0.1:{s3}"))
        .env("JWT_SECRET", jwt_secret)
        .env("DEV_LOGIN", "true")
        .env("RUST_LOG", "debug")
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("broker.log")).unwrap())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{api}");
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if client.get(format!("{base}/health")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let login: Value = client
        .post(format!("{base}/auth/dev-login"))
        .json(&json!({ "username": "alice" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["token"].as_str().unwrap().to_owned();
    let channel: Value = client
        .post(format!("{base}/channels"))
        .bearer_auth(&token)
        .json(&json!({ "name": "g" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let presigned: Value = client
        .post(format!("{base}/files/presign"))
        .bearer_auth(&token)
        .json(&json!({ "channel_id": channel["id"], "file_name": "a.txt", "content_type": "text/plain", "size": 5 }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = presigned["url"].as_str().unwrap().to_owned();
    let put = crate::presigned::put(&client, &presigned, "hello").send().await.unwrap();
    assert!(put.status().is_success(), "PUT {}", put.status());
    let confirm = format!("{base}/files/uploads/{}/confirm", presigned["upload_id"].as_str().unwrap());
    let file: Value = client.post(confirm).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    let link: Value = client
        .get(format!("{base}/files/download/{}?redirect=false", file["id"]))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    client.get(link["url"].as_str().unwrap()).send().await.unwrap();
    let ws = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{api}/ws?token={token}")).await.unwrap();
    drop(ws);
    tokio::time::sleep(Duration::from_millis(300)).await;
    child.kill().unwrap();
    child.wait().unwrap();

    let log = std::fs::read_to_string(dir.path().join("broker.log")).unwrap();
    assert!(log.contains("/files/presign"), "the flow was logged at all");
    let signature = |u: &str| u.split("X-Amz-Signature=").nth(1).unwrap().split('&').next().unwrap().to_owned();
    for (what, secret) in [
        ("upload signature", signature(&url)),
        ("download signature", signature(link["url"].as_str().unwrap())),
        ("bearer token", token.clone()),
        ("JWT secret", jwt_secret.to_owned()),
    ] {
        assert!(!log.contains(&secret), "the log contains the {what}");
    }
    assert!(!log.contains("X-Amz-Signature="), "no signature parameter at all");
}

#[tokio::test]
async fn log_format_json_writes_one_json_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let api = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_chatgenius-files"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATA_DIR", dir.path())
        .env("BIND_ADDR", format!("127.0.0.1:{api}"))
        .env("EMBEDDED_S3_ADDR", format!("127.0.0.1:{}", free_port()))
        .env("LOG_FORMAT", "json")
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("broker.log")).unwrap())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let mut up = false;
    for _ in 0..200 {
        if client.get(format!("http://127.0.0.1:{api}/health")).send().await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(up);
    let log = std::fs::read_to_string(dir.path().join("broker.log")).unwrap();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 3, "{log}");
    for line in lines {
        let parsed: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(parsed["level"].is_string() && parsed["fields"].is_object(), "{line}");
    }
}
