//! The authorisation matrix over every endpoint: each kind of caller gets the
//! documented status, and a refusal carries nothing but the error body.

use std::time::Duration;

use chatgenius_files::{
    auth::{CurrentUser, TokenKeys},
    config::Secret,
};
use reqwest::{Method, StatusCode, redirect::Policy};
use serde_json::{Value, json};

use crate::helpers::{TestUser, spawn_app};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Caller {
    NoToken,
    Malformed,
    BadSignature,
    Expired,
    NonMember,
    MemberNotOwner,
    RemovedMember,
}

#[tokio::test]
async fn every_endpoint_answers_each_kind_of_caller_as_documented() {
    let app = spawn_app().await;
    let owner = app.login("owner").await;
    let member = app.login("member").await;
    let outsider = app.login("outsider").await;
    let removed = app.login("removed").await;
    app.login("newcomer").await;
    let channel = app.create_channel(&owner, "general").await;
    app.add_member(&owner, channel, &member).await;
    app.add_member(&owner, channel, &removed).await;
    let message: Value = app
        .post(&owner, &format!("/channels/{channel}/messages"), json!({ "content": "hi" }))
        .await
        .json()
        .await
        .unwrap();
    let file = app.upload(&owner, channel, None, "f.txt", "text/plain", b"secret bytes").await;
    let deleted = app.upload(&owner, channel, None, "d.txt", "text/plain", b"deleted").await;
    assert_eq!(app.delete(&owner, &format!("/files/{}", deleted["id"])).await.status(), StatusCode::NO_CONTENT);
    let pending: Value = app
        .post(
            &owner,
            "/files/presign",
            json!({ "channel_id": channel, "file_name": "p.txt", "content_type": "text/plain", "size": 3 }),
        )
        .await
        .json()
        .await
        .unwrap();
    let upload_id = pending["upload_id"].as_str().unwrap().to_owned();
    let multipart: Value = app
        .post(
            &owner,
            "/files/multipart",
            json!({ "channel_id": channel, "file_name": "m.txt", "content_type": "text/plain", "size": 3 }),
        )
        .await
        .json()
        .await
        .unwrap();
    let multipart_id = multipart["upload_id"].as_str().unwrap().to_owned();
    let resp = app.delete(&owner, &format!("/channels/{channel}/members/{}", removed.id)).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);

    let keys = |secret: &str| TokenKeys::new(&Secret::new(secret), Duration::from_secs(60));
    let as_user =
        |u: &TestUser| CurrentUser { id: u.id as i32, username: u.username.clone(), created_ms: 0, expires_at: 0 };
    let token_for = |caller: Caller| -> Option<String> {
        match caller {
            Caller::NoToken => None,
            Caller::Malformed => Some("not.a.jwt".into()),
            Caller::BadSignature => Some(keys(&"k".repeat(40)).issue(&as_user(&member))),
            Caller::Expired => Some(app.tokens.issue_with_ttl(&as_user(&member), -600)),
            Caller::NonMember => Some(outsider.token.clone()),
            Caller::MemberNotOwner => Some(member.token.clone()),
            Caller::RemovedMember => Some(removed.token.clone()),
        }
    };

    let (f, d, m) = (file["id"].clone(), deleted["id"].clone(), message["id"].clone());
    let presign = json!({ "channel_id": channel, "file_name": "x.txt", "content_type": "text/plain", "size": 1 });
    // (method, path, body, expected for: non-member, member-not-owner, removed member)
    let endpoints: Vec<(Method, String, Option<Value>, [u16; 3])> = vec![
        (Method::GET, format!("/channels/{channel}"), None, [404, 200, 404]),
        (Method::GET, format!("/channels/{channel}/members"), None, [404, 200, 404]),
        (
            Method::POST,
            format!("/channels/{channel}/members"),
            Some(json!({ "username": "newcomer" })),
            [404, 201, 404],
        ),
        (Method::GET, format!("/channels/{channel}/messages"), None, [404, 200, 404]),
        (Method::POST, format!("/channels/{channel}/messages"), Some(json!({ "content": "x" })), [404, 201, 404]),
        (Method::POST, "/files/presign".into(), Some(presign.clone()), [404, 201, 404]),
        (
            Method::POST,
            "/files/presign".into(),
            Some(
                json!({ "channel_id": channel, "message_id": m, "file_name": "x.txt", "content_type": "text/plain", "size": 1 }),
            ),
            [404, 403, 404],
        ),
        (Method::POST, format!("/files/uploads/{upload_id}/confirm"), None, [404, 404, 404]),
        (Method::DELETE, format!("/files/uploads/{upload_id}"), None, [404, 404, 404]),
        (Method::POST, "/files/multipart".into(), Some(presign.clone()), [404, 201, 404]),
        (
            Method::POST,
            format!("/files/uploads/{multipart_id}/parts"),
            Some(json!({ "part_numbers": [1] })),
            [404, 404, 404],
        ),
        (
            Method::POST,
            format!("/files/uploads/{multipart_id}/complete"),
            Some(json!({ "parts": [{ "part_number": 1, "etag": "x" }] })),
            [404, 404, 404],
        ),
        (Method::GET, format!("/files/{f}"), None, [404, 200, 404]),
        (Method::GET, format!("/files/{d}"), None, [404, 404, 404]),
        (Method::GET, format!("/files/download/{f}"), None, [404, 302, 404]),
        (Method::GET, format!("/files/download/{d}"), None, [404, 404, 404]),
        (Method::GET, "/files/download/987654".into(), None, [404, 404, 404]),
        (Method::DELETE, format!("/files/{f}"), None, [404, 403, 404]),
        (Method::DELETE, format!("/files/{d}"), None, [404, 404, 404]),
    ];
    let client = reqwest::Client::builder().redirect(Policy::none()).build().unwrap();
    let callers = [
        Caller::NoToken,
        Caller::Malformed,
        Caller::BadSignature,
        Caller::Expired,
        Caller::NonMember,
        Caller::MemberNotOwner,
        Caller::RemovedMember,
    ];
    for (method, path, body, expected) in &endpoints {
        for caller in callers {
            let want = match caller {
                Caller::NonMember => expected[0],
                Caller::MemberNotOwner => expected[1],
                Caller::RemovedMember => expected[2],
                _ => 401,
            };
            let mut req = client.request(method.clone(), app.url(path));
            if let Some(token) = token_for(caller) {
                req = req.bearer_auth(token);
            }
            if let Some(body) = body {
                req = req.json(body);
            }
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            assert_eq!(status, want, "{caller:?} {method} {path}");
            if status >= 400 {
                let text = resp.text().await.unwrap();
                let body: Value = serde_json::from_str(&text).unwrap();
                assert_eq!(
                    body.as_object().unwrap().keys().collect::<Vec<_>>(),
                    ["error"],
                    "{caller:?} {method} {path}: {text}"
                );
                for leak in ["secret bytes", "f.txt", "d.txt", "uploads/"] {
                    assert!(!text.contains(leak), "{caller:?} {method} {path} leaks {leak}: {text}");
                }
            }
        }
    }
}
