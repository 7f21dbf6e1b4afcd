//! The binary refuses bad configuration with one line naming the variable.

use std::process::Command;

fn boot_with(vars: &[(&str, &str)]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chatgenius-files"));
    cmd.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default()).current_dir(dir.path());
    cmd.env("DATA_DIR", dir.path()).env("BIND_ADDR", "127.0.0.1:0").env("EMBEDDED_S3_ADDR", "127.0.0.1:0");
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("binary runs");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn boot_refuses_bad_configuration_naming_the_variable() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("MAX_FILE_SIZE_MB", "abc")], "MAX_FILE_SIZE_MB"),
        (&[("MAX_FILE_SIZE_MB", "0")], "MAX_FILE_SIZE_MB"),
        (&[("ALLOWED_FILE_TYPES", "image/*,bogus/x")], "ALLOWED_FILE_TYPES"),
        (&[("ALLOWED_FILE_TYPES", "imagepng")], "ALLOWED_FILE_TYPES"),
        (&[("BIND_ADDR", "nowhere")], "BIND_ADDR"),
        (&[("AWS_S3_BUCKET_NAME", "Not_A_Bucket")], "AWS_S3_BUCKET_NAME"),
        (&[("AWS_S3_ENDPOINT", "http://127.0.0.1:1")], "STORAGE"),
        (&[("AWS_S3_BUCKET_NAME", "team-files")], "STORAGE"),
        (&[("AWS_S3_REGION", "eu-west-1")], "STORAGE"),
        (&[("AWS_S3_FORCE_PATH_STYLE", "true")], "STORAGE"),
        (&[("STORAGE", "embedded"), ("AWS_ACCESS_KEY_ID", "key"), ("AWS_SECRET_ACCESS_KEY", "secret")], "STORAGE"),
        (&[("STORAGE", "embedded"), ("AWS_S3_ENDPOINT", "http://127.0.0.1:1")], "STORAGE"),
        (&[("STORAGE", "disk")], "STORAGE"),
        (&[("STORAGE", "embedded"), ("AWS_S3_BUCKET_NAME", "a-bucket-name-longer-than-21")], "AWS_S3_BUCKET_NAME"),
        (&[("AWS_ACCESS_KEY_ID", "key")], "AWS_SECRET_ACCESS_KEY"),
        (&[("JWT_SECRET", "short")], "JWT_SECRET"),
        (&[("CORS_ALLOWED_ORIGINS", "localhost:3000")], "CORS_ALLOWED_ORIGINS"),
        (&[("DOWNLOAD_URL_TTL_SECS", "3600")], "DOWNLOAD_URL_TTL_SECS"),
    ];
    for (vars, named) in cases {
        let (code, stderr) = boot_with(vars);
        assert_eq!(code, 2, "{vars:?} must stop boot with exit 2");
        assert_eq!(stderr.trim().lines().count(), 1, "one line for {vars:?}: {stderr}");
        assert!(stderr.contains(named), "{vars:?}: stderr should name {named}: {stderr}");
    }
}

#[test]
fn help_lists_every_spec_variable() {
    let out = Command::new(env!("CARGO_BIN_EXE_chatgenius-files")).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for var in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_S3_BUCKET_NAME",
        "AWS_S3_REGION",
        "MAX_FILE_SIZE_MB",
        "ALLOWED_FILE_TYPES",
        "DATABASE_URL",
        "DATA_DIR",
        "BIND_ADDR",
        "AWS_S3_ENDPOINT",
        "AWS_S3_FORCE_PATH_STYLE",
        "EMBEDDED_S3_ADDR",
        "JWT_SECRET",
        "CORS_ALLOWED_ORIGINS",
        "UPLOAD_URL_TTL_SECS",
        "DOWNLOAD_URL_TTL_SECS",
    ] {
        assert!(help.contains(var), "--help lists {var}");
    }
}

#[tokio::test]
async fn token_command_prints_a_token_the_server_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let database_url = crate::helpers::fresh_database_url(dir.path()).await;
    let out = Command::new(env!("CARGO_BIN_EXE_chatgenius-files"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATA_DIR", dir.path())
        .env("DATABASE_URL", &database_url)
        .current_dir(dir.path())
        .args(["token", "carol"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap();

    let data_dir = dir.path().display().to_string();
    let app = crate::helpers::spawn_app_with(&[("data-dir", &data_dir), ("database-url", &database_url)]).await;
    let resp = app.client.get(app.url("/auth/me")).bearer_auth(token.trim()).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let me: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(me["username"], "carol");
}
