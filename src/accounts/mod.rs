//! Accounts: registration, login, API tokens, tenants and memberships.
//!
//! Passwords are hashed with Argon2id (default parameters) on the blocking pool, never on the
//! async workers. A token is 256 random bits shown to the client once; only its SHA-256 is
//! stored, so a database leak reveals no usable token.

use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use sha2::{Digest, Sha256};
use tracing::instrument;

use crate::billing::TrialGrant;
use crate::domain::{Email, Password, Role, TenantId, TokenId, UserId};
use crate::store::accounts::{self as store, MemberRow, TenantRow};
use crate::store::{Db, StoreError};

/// Prefix that makes CallGenius tokens recognisable (e.g. by secret scanners).
pub const TOKEN_PREFIX: &str = "cg_";

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("email has already been taken")]
    EmailTaken,
    #[error("invalid email or password")]
    InvalidCredentials,
    #[error("not a member of this business")]
    NotMember,
    #[error("business not found")]
    TenantNotFound,
    #[error("no account with this email")]
    UserNotFound,
    #[error("already a member of this business")]
    AlreadyMember,
    #[error("member not found")]
    MemberNotFound,
    #[error("only an owner can grant or remove the owner role")]
    OwnerOnly,
    #[error("a business must keep at least one owner")]
    LastOwner,
    #[error("password hashing failed")]
    Hashing,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A freshly issued token and what it is scoped to.
#[derive(Debug)]
pub struct Session {
    pub token: String,
    pub token_id: TokenId,
    pub user_id: UserId,
    pub tenant: TenantRow,
}

/// SHA-256 of a presented token, as stored.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    format!("{TOKEN_PREFIX}{}", hex::encode(bytes))
}

async fn hash_password(password: Password) -> Result<String, AccountError> {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|hash| hash.to_string())
            .map_err(|_| AccountError::Hashing)
    })
    .await
    .map_err(|_| AccountError::Hashing)?
}

async fn verify_password(password: Password, hash: String) -> bool {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash)
            .map(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

/// A real hash to verify against when the email is unknown, so both failures take equally long.
fn decoy_hash() -> String {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY
        .get_or_init(|| {
            Argon2::default()
                .hash_password(new_token().as_bytes())
                .map(|hash| hash.to_string())
                .unwrap_or_default()
        })
        .clone()
}

/// Creates a user, their first business (with them as owner, and the account's one `trial`)
/// and a token for it.
#[instrument(skip_all)]
pub async fn register(
    db: &Db,
    email: Email,
    password: Password,
    business_name: &str,
    trial: TrialGrant,
) -> Result<Session, AccountError> {
    if store::user_by_email(db, email.as_str()).await?.is_some() {
        return Err(AccountError::EmailTaken);
    }
    let hash = hash_password(password).await?;
    let mut tx = db.begin_write().await?;
    let user = match store::insert_user(&mut tx, email.as_str(), &hash).await {
        Err(StoreError::Conflict) => return Err(AccountError::EmailTaken),
        other => other?,
    };
    let tenant = store::insert_tenant(&mut tx, business_name, user).await?;
    crate::store::billing::grant_trial(&mut tx, TenantId(tenant.id), user, trial).await?;
    store::set_last_tenant(&mut tx, user, TenantId(tenant.id)).await?;
    tx.commit().await.map_err(StoreError::from)?;
    tracing::info!(user_id = %user, tenant_id = tenant.id, "account registered");
    issue_token(db, user, tenant).await
}

/// Checks the credentials and issues a token scoped to the user's last active business.
#[instrument(skip_all)]
pub async fn login(db: &Db, email: &str, password: Password) -> Result<Session, AccountError> {
    let user = match Email::parse(email) {
        Ok(email) => store::user_by_email(db, email.as_str()).await?,
        Err(_) => None,
    };
    let hash = user
        .as_ref()
        .map_or_else(decoy_hash, |u| u.password_hash.clone());
    let verified = verify_password(password, hash).await;
    let Some(user) = user.filter(|_| verified) else {
        return Err(AccountError::InvalidCredentials);
    };
    let user_id = UserId(user.id);
    let memberships = store::memberships(db, user_id).await?;
    let membership = memberships
        .iter()
        .find(|m| Some(m.tenant_id) == user.last_tenant_id)
        .or(memberships.first())
        .ok_or(AccountError::InvalidCredentials)?;
    let tenant = store::tenant(db, TenantId(membership.tenant_id)).await?;
    issue_token(db, user_id, tenant).await
}

async fn issue_token(db: &Db, user: UserId, tenant: TenantRow) -> Result<Session, AccountError> {
    let token = new_token();
    let token_id = store::insert_token(db, user, &token_hash(&token), TenantId(tenant.id)).await?;
    Ok(Session {
        token,
        token_id,
        user_id: user,
        tenant,
    })
}

pub async fn logout(db: &Db, token: TokenId) -> Result<(), AccountError> {
    store::revoke_token(db, token).await?;
    Ok(())
}

/// Creates another business owned by `user`. The trial is one per account: a business gets it
/// only if its owner has not had it (see [`crate::store::billing::grant_trial`]); later ones
/// start on pay-as-you-go, with nothing to spend until a plan or a top-up.
#[instrument(skip_all, fields(user_id = %user))]
pub async fn create_tenant(
    db: &Db,
    user: UserId,
    name: &str,
    trial: TrialGrant,
) -> Result<TenantRow, AccountError> {
    let mut tx = db.begin_write().await?;
    let tenant = store::insert_tenant(&mut tx, name, user).await?;
    let trial_seconds =
        crate::store::billing::grant_trial(&mut tx, TenantId(tenant.id), user, trial).await?;
    tx.commit().await.map_err(StoreError::from)?;
    tracing::info!(tenant_id = tenant.id, trial_seconds, "business created");
    Ok(tenant)
}

/// Points the calling token at `tenant`, which the user must belong to.
#[instrument(skip_all, fields(user_id = %user, tenant_id = %tenant))]
pub async fn switch_tenant(
    db: &Db,
    token: TokenId,
    user: UserId,
    tenant: TenantId,
) -> Result<(TenantRow, Role), AccountError> {
    let row = match store::tenant(db, tenant).await {
        Err(StoreError::NotFound) => return Err(AccountError::TenantNotFound),
        other => other?,
    };
    let role = store::role(db, tenant, user)
        .await?
        .ok_or(AccountError::NotMember)?;
    store::switch_tenant(db, token, user, tenant).await?;
    Ok((row, role))
}

/// Adds an existing user to `tenant`. Only owners may make owners.
#[instrument(skip_all, fields(tenant_id = %tenant))]
pub async fn add_member(
    db: &Db,
    tenant: TenantId,
    actor: Role,
    email: &Email,
    role: Role,
) -> Result<MemberRow, AccountError> {
    if role == Role::Owner && actor != Role::Owner {
        return Err(AccountError::OwnerOnly);
    }
    let user = store::user_by_email(db, email.as_str())
        .await?
        .ok_or(AccountError::UserNotFound)?;
    let mut tx = db.begin_write().await?;
    match store::insert_membership(&mut tx, tenant, UserId(user.id), role).await {
        Err(StoreError::Conflict) => return Err(AccountError::AlreadyMember),
        other => other?,
    }
    tx.commit().await.map_err(StoreError::from)?;
    Ok(store::member(db, tenant, UserId(user.id)).await?)
}

/// Removes a member. Owners can only be removed by owners, and never the last one.
#[instrument(skip_all, fields(tenant_id = %tenant))]
pub async fn remove_member(
    db: &Db,
    tenant: TenantId,
    actor: Role,
    user: UserId,
) -> Result<(), AccountError> {
    let target = match store::member(db, tenant, user).await {
        Err(StoreError::NotFound) => return Err(AccountError::MemberNotFound),
        other => other?,
    };
    if target.role == Role::Owner.as_str() && actor != Role::Owner {
        return Err(AccountError::OwnerOnly);
    }
    let mut tx = db.begin_write().await?;
    store::delete_membership(&mut tx, tenant, user).await?;
    if target.role == Role::Owner.as_str() && store::count_owners(&mut tx, tenant).await? == 0 {
        return Err(AccountError::LastOwner);
    }
    tx.commit().await.map_err(StoreError::from)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_stored_only_as_a_hash() {
        let a = new_token();
        let b = new_token();
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX));
        assert_eq!(a.len(), TOKEN_PREFIX.len() + 64, "256 bits in hex");
        assert_eq!(token_hash(&a).len(), 64);
        assert_ne!(token_hash(&a), a);
        assert_eq!(token_hash(&a), token_hash(&a));
    }

    #[tokio::test]
    async fn password_hashes_verify_only_the_right_password() {
        let hash = hash_password(Password::parse("correct horse".into()).unwrap())
            .await
            .unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password(Password::for_login("correct horse".into()), hash.clone()).await);
        assert!(!verify_password(Password::for_login("wrong horse".into()), hash).await);
        assert!(!verify_password(Password::for_login("x".into()), "not a hash".into()).await);
    }
}
