//! Messages of a channel, with their files.

use poem::web::Data;
use poem_openapi::{
    ApiResponse, Object, OpenApi,
    param::{Path, Query},
    payload::Json,
};

use super::common::{ApiTags, JsonString, Success, ok};
use crate::{
    auth::BearerAuth,
    domain::MessageContent,
    error::ApiError,
    service::messages::{self, MAX_PAGE},
    state::AppState,
    wire::MessageInfo,
};

/// Message operations (members only).
pub struct MessagesApi;

/// New message.
#[derive(Object)]
pub struct PostMessageRequest {
    /// Text, up to 4000 characters; may be empty only when `file_ids` attaches files.
    #[oai(default)]
    pub content: JsonString,
    /// Files to attach: the caller's own confirmed, unattached files of this
    /// channel (upload first, then post). All or nothing.
    #[oai(default)]
    pub file_ids: Vec<i32>,
}

/// A page of messages.
#[derive(Object)]
pub struct MessagePage {
    /// Newest first, each with its live files.
    pub messages: Vec<MessageInfo>,
    /// Pass as `before` to get the next (older) page; absent on the last page.
    #[oai(nullable)]
    pub next_before: Option<i32>,
}

/// A message was posted.
#[derive(ApiResponse)]
pub enum MessagePosted {
    /// The new message with its files; `message_created` is announced.
    #[oai(status = 201)]
    Created(Json<MessageInfo>),
}

#[OpenApi(tag = "ApiTags::Messages")]
impl MessagesApi {
    /// Post a message, optionally attaching uploaded files.
    ///
    /// 409 `file_not_attachable` names a file that is not the caller's own
    /// confirmed, unattached, live file of this channel; nothing is posted then.
    #[oai(path = "/channels/:channel_id/messages", method = "post", operation_id = "post_message")]
    async fn post(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        channel_id: Path<i32>,
        body: Json<PostMessageRequest>,
    ) -> Result<MessagePosted, ApiError> {
        let content = if body.file_ids.is_empty() {
            MessageContent::parse(&body.content)?
        } else {
            MessageContent::parse_with_attachments(&body.content)?
        };
        let posted = messages::post(&state.deps, channel_id.0, auth.0.id, &content, &body.file_ids).await?;
        Ok(MessagePosted::Created(Json(posted.into())))
    }

    /// List messages with their files, newest first.
    ///
    /// `limit` defaults to 50 and is capped at 100; `before` returns messages older than that id.
    #[oai(path = "/channels/:channel_id/messages", method = "get", operation_id = "list_messages")]
    async fn list(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        channel_id: Path<i32>,
        /// Only messages with a smaller id.
        before: Query<Option<i32>>,
        /// Page size, 1-100 (larger values are capped).
        #[oai(validator(minimum(value = "1")))]
        limit: Query<Option<u64>>,
    ) -> Result<Success<MessagePage>, ApiError> {
        let limit = limit.0.unwrap_or(50).min(MAX_PAGE);
        let page = messages::page(&state.deps.db, channel_id.0, auth.0.id, before.0, limit).await?;
        let next_before = (page.len() as u64 == limit).then(|| page.last().map(|m| m.message.id)).flatten();
        Ok(ok(MessagePage { messages: page.into_iter().map(Into::into).collect(), next_before }))
    }
}
