//! Users: dev login creates them on first use.

use sea_orm::{ActiveModelTrait, ActiveValue::Set, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder};

use super::{ServiceError, now};
use crate::{domain::Username, entity::user};

/// The user named `username`, created when it does not exist yet.
pub async fn find_or_create(db: &DatabaseConnection, username: &Username) -> Result<user::Model, ServiceError> {
    if let Some(found) = find_by_name(db, username).await? {
        return Ok(found);
    }
    let created =
        user::ActiveModel { username: Set(username.as_str().to_owned()), created_at: Set(now()), ..Default::default() }
            .insert(db)
            .await;
    match created {
        Ok(user) => Ok(user),
        // Lost a race with a concurrent login of the same name: take the winner's row.
        Err(err) if matches!(err.sql_err(), Some(sea_orm::SqlErr::UniqueConstraintViolation(_))) => {
            find_by_name(db, username).await?.ok_or(ServiceError::NotFound("user"))
        }
        Err(err) => Err(err.into()),
    }
}

/// The user with this id, if any.
pub async fn find_by_id(db: &DatabaseConnection, id: i32) -> Result<Option<user::Model>, ServiceError> {
    Ok(user::Entity::find_by_id(id).one(db).await?)
}

/// The user named `username`, if any, whatever the case it was stored in
/// (names are stored in lower case; rows from before that are found too).
pub async fn find_by_name(db: &DatabaseConnection, username: &Username) -> Result<Option<user::Model>, ServiceError> {
    use sea_orm::sea_query::{Expr, Func};
    let lowered = Expr::expr(Func::lower(Expr::col(user::Column::Username)));
    Ok(user::Entity::find()
        .filter(sea_orm::ExprTrait::eq(lowered, username.as_str()))
        .order_by_asc(user::Column::Id)
        .one(db)
        .await?)
}
