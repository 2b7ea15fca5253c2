//! Users, tenants, memberships and API tokens.

use sqlx::FromRow;

use super::{Db, StoreResult, Tx, now};
use crate::domain::{Role, TenantId, TokenId, UserId};

#[derive(Debug, Clone, FromRow)]
pub struct UserRow {
    pub id: i64,
    pub email: String,
    pub password_hash: String,
    pub last_tenant_id: Option<i64>,
    pub created_at: String,
}

#[derive(Debug, Clone, FromRow)]
pub struct TenantRow {
    pub id: i64,
    pub name: String,
    pub created_at: String,
}

/// A tenant as one user sees it: with that user's role.
#[derive(Debug, Clone, FromRow)]
pub struct MembershipRow {
    pub tenant_id: i64,
    pub tenant_name: String,
    pub role: String,
    pub created_at: String,
}

/// Everything a request's bearer token resolves to, in one query.
#[derive(Debug, Clone, FromRow)]
pub struct TokenOwnerRow {
    pub token_id: i64,
    pub user_id: i64,
    pub email: String,
    pub tenant_id: i64,
    pub tenant_name: String,
    /// `None` when the user has since left the token's active tenant.
    pub role: Option<String>,
}

#[derive(Debug, Clone, FromRow)]
pub struct MemberRow {
    pub user_id: i64,
    pub email: String,
    pub role: String,
    pub created_at: String,
}

pub async fn insert_user(tx: &mut Tx, email: &str, password_hash: &str) -> StoreResult<UserId> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO users (email, password_hash, created_at) VALUES ($1, $2, $3) RETURNING id",
    )
    .bind(email)
    .bind(password_hash)
    .bind(now())
    .fetch_one(&mut **tx)
    .await?;
    Ok(UserId(id))
}

pub async fn user_by_email(db: &Db, email: &str) -> StoreResult<Option<UserRow>> {
    let row = sqlx::query_as("SELECT * FROM users WHERE email = $1")
        .bind(email)
        .fetch_optional(db.pool())
        .await?;
    Ok(row)
}

pub async fn user_by_id(db: &Db, user: UserId) -> StoreResult<UserRow> {
    let row = sqlx::query_as("SELECT * FROM users WHERE id = $1")
        .bind(user.0)
        .fetch_one(db.pool())
        .await?;
    Ok(row)
}

/// Creates a tenant with `owner` as its owner.
pub async fn insert_tenant(tx: &mut Tx, name: &str, owner: UserId) -> StoreResult<TenantRow> {
    let created_at = now();
    let id: i64 =
        sqlx::query_scalar("INSERT INTO tenants (name, created_at) VALUES ($1, $2) RETURNING id")
            .bind(name)
            .bind(&created_at)
            .fetch_one(&mut **tx)
            .await?;
    insert_membership(tx, TenantId(id), owner, Role::Owner).await?;
    Ok(TenantRow {
        id,
        name: name.to_owned(),
        created_at,
    })
}

pub async fn insert_membership(
    tx: &mut Tx,
    tenant: TenantId,
    user: UserId,
    role: Role,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO memberships (tenant_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(tenant.0)
    .bind(user.0)
    .bind(role.as_str())
    .bind(now())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The tenant's call settings: its time zone (IANA name) and default turn engine.
#[derive(Debug, Clone, FromRow)]
pub struct TenantSettingsRow {
    pub timezone: String,
    pub turn_engine: String,
}

pub async fn tenant_settings(db: &Db, tenant: TenantId) -> StoreResult<TenantSettingsRow> {
    let row = sqlx::query_as("SELECT timezone, turn_engine FROM tenants WHERE id = $1")
        .bind(tenant.0)
        .fetch_one(db.pool())
        .await?;
    Ok(row)
}

pub async fn update_tenant_settings(
    db: &Db,
    tenant: TenantId,
    settings: &TenantSettingsRow,
) -> StoreResult<()> {
    sqlx::query("UPDATE tenants SET timezone = $1, turn_engine = $2 WHERE id = $3")
        .bind(&settings.timezone)
        .bind(&settings.turn_engine)
        .bind(tenant.0)
        .execute(db.pool())
        .await?;
    Ok(())
}

pub async fn tenant(db: &Db, tenant: TenantId) -> StoreResult<TenantRow> {
    let row = sqlx::query_as("SELECT * FROM tenants WHERE id = $1")
        .bind(tenant.0)
        .fetch_one(db.pool())
        .await?;
    Ok(row)
}

/// The user's tenants, oldest membership first.
pub async fn memberships(db: &Db, user: UserId) -> StoreResult<Vec<MembershipRow>> {
    let rows = sqlx::query_as(
        "SELECT m.tenant_id, t.name AS tenant_name, m.role, m.created_at \
         FROM memberships m JOIN tenants t ON t.id = m.tenant_id \
         WHERE m.user_id = $1 ORDER BY m.created_at, m.tenant_id",
    )
    .bind(user.0)
    .fetch_all(db.pool())
    .await?;
    Ok(rows)
}

pub async fn role(db: &Db, tenant: TenantId, user: UserId) -> StoreResult<Option<Role>> {
    let role: Option<String> =
        sqlx::query_scalar("SELECT role FROM memberships WHERE tenant_id = $1 AND user_id = $2")
            .bind(tenant.0)
            .bind(user.0)
            .fetch_optional(db.pool())
            .await?;
    Ok(role.as_deref().and_then(Role::parse))
}

pub async fn members(db: &Db, tenant: TenantId) -> StoreResult<Vec<MemberRow>> {
    let rows = sqlx::query_as(
        "SELECT m.user_id, u.email, m.role, m.created_at \
         FROM memberships m JOIN users u ON u.id = m.user_id \
         WHERE m.tenant_id = $1 ORDER BY m.created_at, m.user_id",
    )
    .bind(tenant.0)
    .fetch_all(db.pool())
    .await?;
    Ok(rows)
}

pub async fn member(db: &Db, tenant: TenantId, user: UserId) -> StoreResult<MemberRow> {
    let row = sqlx::query_as(
        "SELECT m.user_id, u.email, m.role, m.created_at \
         FROM memberships m JOIN users u ON u.id = m.user_id \
         WHERE m.tenant_id = $1 AND m.user_id = $2",
    )
    .bind(tenant.0)
    .bind(user.0)
    .fetch_one(db.pool())
    .await?;
    Ok(row)
}

pub async fn count_owners(tx: &mut Tx, tenant: TenantId) -> StoreResult<i64> {
    let n = sqlx::query_scalar(
        "SELECT COUNT(*) FROM memberships WHERE tenant_id = $1 AND role = 'owner'",
    )
    .bind(tenant.0)
    .fetch_one(&mut **tx)
    .await?;
    Ok(n)
}

pub async fn delete_membership(tx: &mut Tx, tenant: TenantId, user: UserId) -> StoreResult<()> {
    let done = sqlx::query("DELETE FROM memberships WHERE tenant_id = $1 AND user_id = $2")
        .bind(tenant.0)
        .bind(user.0)
        .execute(&mut **tx)
        .await?;
    if done.rows_affected() == 0 {
        return Err(super::StoreError::NotFound);
    }
    Ok(())
}

pub async fn insert_token(
    db: &Db,
    user: UserId,
    token_hash: &str,
    tenant: TenantId,
) -> StoreResult<TokenId> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO api_tokens (user_id, token_hash, active_tenant_id, created_at) \
         VALUES ($1, $2, $3, $4) RETURNING id",
    )
    .bind(user.0)
    .bind(token_hash)
    .bind(tenant.0)
    .bind(now())
    .fetch_one(db.pool())
    .await?;
    Ok(TokenId(id))
}

/// Resolves an unrevoked token by the hash of its secret.
pub async fn token_owner(db: &Db, token_hash: &str) -> StoreResult<Option<TokenOwnerRow>> {
    let row = sqlx::query_as(
        "SELECT k.id AS token_id, k.user_id, u.email, k.active_tenant_id AS tenant_id, \
                t.name AS tenant_name, m.role \
         FROM api_tokens k \
         JOIN users u ON u.id = k.user_id \
         JOIN tenants t ON t.id = k.active_tenant_id \
         LEFT JOIN memberships m ON m.tenant_id = k.active_tenant_id AND m.user_id = k.user_id \
         WHERE k.token_hash = $1 AND k.revoked_at IS NULL",
    )
    .bind(token_hash)
    .fetch_optional(db.pool())
    .await?;
    Ok(row)
}

pub async fn revoke_token(db: &Db, token: TokenId) -> StoreResult<()> {
    sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
        .bind(now())
        .bind(token.0)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// Points a token at another tenant and remembers it as the user's last active tenant.
pub async fn switch_tenant(
    db: &Db,
    token: TokenId,
    user: UserId,
    tenant: TenantId,
) -> StoreResult<()> {
    let mut tx = db.begin_write().await?;
    sqlx::query("UPDATE api_tokens SET active_tenant_id = $1 WHERE id = $2")
        .bind(tenant.0)
        .bind(token.0)
        .execute(&mut *tx)
        .await?;
    set_last_tenant(&mut tx, user, tenant).await?;
    tx.commit().await?;
    Ok(())
}

pub async fn set_last_tenant(tx: &mut Tx, user: UserId, tenant: TenantId) -> StoreResult<()> {
    sqlx::query("UPDATE users SET last_tenant_id = $1 WHERE id = $2")
        .bind(tenant.0)
        .bind(user.0)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
