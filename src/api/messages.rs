//! Messages of a channel.

use poem::web::Data;
use poem_openapi::{
    ApiResponse, Object, OpenApi,
    param::{Path, Query},
    payload::Json,
};

use super::{ApiTags, Success, ok, utc};
use crate::{
    auth::BearerAuth,
    domain::MessageContent,
    entity::message,
    error::ApiError,
    service::messages::{self, MAX_PAGE},
    startup::AppState,
};

/// Message operations (members only).
pub struct MessagesApi;

/// A chat message.
#[derive(Object)]
pub struct Message {
    /// Message id; ids grow with time, so `before` pages backwards.
    pub id: i32,
    /// Channel it was posted in.
    pub channel_id: i32,
    /// Author's user id.
    pub user_id: i32,
    /// Text.
    pub content: String,
    /// When it was posted.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// When it last changed (files attached or removed).
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl From<message::Model> for Message {
    fn from(m: message::Model) -> Self {
        Self {
            id: m.id,
            channel_id: m.channel_id,
            user_id: m.user_id,
            content: m.content,
            created_at: utc(m.created_at),
            updated_at: utc(m.updated_at),
        }
    }
}

/// New message.
#[derive(Object)]
pub struct PostMessageRequest {
    /// Text, 1-4000 characters, not only white space.
    pub content: String,
}

/// A page of messages.
#[derive(Object)]
pub struct MessagePage {
    /// Newest first.
    pub messages: Vec<Message>,
    /// Pass as `before` to get the next (older) page; absent on the last page.
    pub next_before: Option<i32>,
}

/// A message was posted.
#[derive(ApiResponse)]
pub enum MessagePosted {
    /// The new message.
    #[oai(status = 201)]
    Created(Json<Message>),
}

#[OpenApi(tag = "ApiTags::Messages")]
impl MessagesApi {
    /// Post a message.
    #[oai(path = "/channels/:channel_id/messages", method = "post", operation_id = "post_message")]
    async fn post(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        channel_id: Path<i32>,
        body: Json<PostMessageRequest>,
    ) -> Result<MessagePosted, ApiError> {
        let content = MessageContent::parse(&body.content)?;
        let posted = messages::post(&state.db, channel_id.0, auth.0.id, &content).await?;
        Ok(MessagePosted::Created(Json(posted.into())))
    }

    /// List messages, newest first.
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
        let page = messages::page(&state.db, channel_id.0, auth.0.id, before.0, limit).await?;
        let next_before = (page.len() as u64 == limit).then(|| page.last().map(|m| m.id)).flatten();
        Ok(ok(MessagePage { messages: page.into_iter().map(Into::into).collect(), next_before }))
    }
}
