//! Channels and membership.

use poem::web::Data;
use poem_openapi::{ApiResponse, Object, OpenApi, param::Path, payload::Json};

use super::{
    auth::User,
    common::{ApiTags, JsonString, Success, ok, utc},
};
use crate::{
    auth::BearerAuth,
    domain::{ChannelName, Username},
    entity::channel,
    error::ApiError,
    service::{
        channels::{self, Member},
        membership,
    },
    state::AppState,
};

/// Channel operations. Every one is for members only: a channel the caller is
/// not a member of answers 404, exactly like a missing one.
pub struct ChannelsApi;

/// A channel.
#[derive(Object)]
pub struct Channel {
    /// Channel id.
    pub id: i32,
    /// Display name.
    pub name: String,
    /// Id of the user who created it (who may remove other members).
    pub created_by: i32,
    /// Creation time.
    pub created_at: chrono::DateTime<chrono::Utc>,
}

impl From<channel::Model> for Channel {
    fn from(m: channel::Model) -> Self {
        Self { id: m.id, name: m.name, created_by: m.created_by, created_at: utc(m.created_at) }
    }
}

/// New channel.
#[derive(Object)]
pub struct CreateChannelRequest {
    /// Display name, 1-80 characters (trimmed), no control characters.
    pub name: JsonString,
}

/// The channels the caller belongs to.
#[derive(Object)]
pub struct ChannelList {
    /// Oldest first.
    pub channels: Vec<Channel>,
}

/// A channel member.
#[derive(Object)]
pub struct ChannelMember {
    /// The user.
    pub user: User,
    /// When they joined.
    pub joined_at: chrono::DateTime<chrono::Utc>,
}

impl From<Member> for ChannelMember {
    fn from(m: Member) -> Self {
        Self { user: m.user.into(), joined_at: utc(m.joined_at) }
    }
}

/// The members of a channel.
#[derive(Object)]
pub struct MemberList {
    /// In joining order.
    pub members: Vec<ChannelMember>,
}

/// Who to add.
#[derive(Object)]
pub struct AddMemberRequest {
    /// Login name of an existing user.
    pub username: JsonString,
}

/// A channel was created.
#[derive(ApiResponse)]
pub enum ChannelCreated {
    /// The new channel; the caller is its first member.
    #[oai(status = 201)]
    Created(Json<Channel>),
}

/// A member was added.
#[derive(ApiResponse)]
pub enum MemberAdded {
    /// The new member.
    #[oai(status = 201)]
    Created(Json<ChannelMember>),
}

/// A member was removed.
#[derive(ApiResponse)]
pub enum MemberRemoved {
    /// Removed; they stop seeing the channel at once.
    #[oai(status = 204)]
    NoContent,
}

#[OpenApi(tag = "ApiTags::Channels")]
impl ChannelsApi {
    /// Create a channel.
    #[oai(path = "/channels", method = "post", operation_id = "create_channel")]
    async fn create(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        body: Json<CreateChannelRequest>,
    ) -> Result<ChannelCreated, ApiError> {
        let name = ChannelName::parse(&body.name)?;
        let created = channels::create(&state.deps, auth.0.id, &name).await?;
        Ok(ChannelCreated::Created(Json(created.into())))
    }

    /// List the caller's channels.
    #[oai(path = "/channels", method = "get", operation_id = "list_channels")]
    async fn list(&self, state: Data<&AppState>, auth: BearerAuth) -> Result<Success<ChannelList>, ApiError> {
        let found = membership::list_for_member(&state.deps.db, auth.0.id).await?;
        Ok(ok(ChannelList { channels: found.into_iter().map(Into::into).collect() }))
    }

    /// Get one channel.
    #[oai(path = "/channels/:channel_id", method = "get", operation_id = "get_channel")]
    async fn get(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        channel_id: Path<i32>,
    ) -> Result<Success<Channel>, ApiError> {
        Ok(ok(membership::require_member(&state.deps.db, channel_id.0, auth.0.id).await?.into()))
    }

    /// List a channel's members.
    #[oai(path = "/channels/:channel_id/members", method = "get", operation_id = "list_channel_members")]
    async fn members(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        channel_id: Path<i32>,
    ) -> Result<Success<MemberList>, ApiError> {
        let found = channels::members(&state.deps.db, channel_id.0, auth.0.id).await?;
        Ok(ok(MemberList { members: found.into_iter().map(Into::into).collect() }))
    }

    /// Add a user to a channel.
    ///
    /// Any member may add an existing user; 409 `already_member` when they belong already.
    #[oai(path = "/channels/:channel_id/members", method = "post", operation_id = "add_channel_member")]
    async fn add_member(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        channel_id: Path<i32>,
        body: Json<AddMemberRequest>,
    ) -> Result<MemberAdded, ApiError> {
        let username = Username::parse(&body.username)?;
        let member = channels::add_member(&state.deps, channel_id.0, auth.0.id, &username).await?;
        Ok(MemberAdded::Created(Json(member.into())))
    }

    /// Remove a member (or leave).
    ///
    /// Members may remove themselves; only the channel's creator may remove others (403).
    #[oai(path = "/channels/:channel_id/members/:user_id", method = "delete", operation_id = "remove_channel_member")]
    async fn remove_member(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        channel_id: Path<i32>,
        user_id: Path<i32>,
    ) -> Result<MemberRemoved, ApiError> {
        channels::remove_member(&state.deps, channel_id.0, auth.0.id, user_id.0).await?;
        Ok(MemberRemoved::NoContent)
    }
}
