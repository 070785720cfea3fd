//! Logins: a user (or a share) and a password, as each protocol writes them. One password
//! verification whatever the outcome, so that timing tells nothing about which part was wrong.

use super::guard::{Limited, SHARE_LOGIN};
use super::users::{Status, User};
use super::{password::Overloaded, shares::Share, Authenticator};
use crate::store::StoreError;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use std::net::IpAddr;
use std::sync::Arc;

/// Why a login failed. Every credential problem is the same `BadCredentials` to the client.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("bad credentials")]
    BadCredentials(BadCredentialsReason),
    #[error("too many password verifications in progress")]
    Overloaded,
    /// A login limit refused the attempt before any password check.
    #[error("login limit: {}", .0.limit.as_str())]
    Limited(Limited),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// For audit logs only; never shown to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadCredentialsReason {
    UnknownUser,
    /// A share URL that is unknown, expired, revoked, or whose owner is not active.
    UnknownShare,
    WrongPassword,
    UndecodablePassword,
    NotActive,
}

impl BadCredentialsReason {
    pub const ALL: [BadCredentialsReason; 5] = [
        Self::UnknownUser,
        Self::UnknownShare,
        Self::WrongPassword,
        Self::UndecodablePassword,
        Self::NotActive,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnknownUser => "unknown_user",
            Self::UnknownShare => "bad_share",
            Self::WrongPassword => "wrong_password",
            Self::UndecodablePassword => "undecodable_password",
            Self::NotActive => "not_active",
        }
    }
}

impl From<Overloaded> for LoginError {
    fn from(_: Overloaded) -> Self {
        LoginError::Overloaded
    }
}

/// The account (and, for a share login, the share) an ioGates token is issued for.
#[derive(Debug, Clone)]
pub struct Grant {
    pub account: Arc<User>,
    pub share: Option<Arc<Share>>,
}

/// Base64 as GroundWork clients send it: standard or URL-safe alphabet, padding optional.
pub fn lenient_base64(value: &str) -> Option<Vec<u8>> {
    let config = GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true);
    // A `+` left unescaped in a form arrives as a space (even a trailing one).
    let value = value.replace(' ', "+");
    let value = value.trim();
    GeneralPurpose::new(&alphabet::STANDARD, config)
        .decode(value)
        .or_else(|_| GeneralPurpose::new(&alphabet::URL_SAFE, config).decode(value))
        .ok()
}

impl Authenticator {
    /// A user as named by a GWOS client: Base64 of the name (GW7) or the raw name (GW8).
    pub fn find_user(&self, given: &str) -> Option<Arc<User>> {
        let directory = self.users.load();
        lenient_base64(given)
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .and_then(|name| directory.get(&name))
            .or_else(|| directory.get(given))
            .cloned()
    }

    /// The plain password: Jasypt-decrypted in encrypted mode, Base64-decoded otherwise.
    fn plain_password(&self, given: &str) -> Option<String> {
        match &self.jasypt {
            Some(key) => key.decrypt(given),
            None => lenient_base64(given).and_then(|bytes| String::from_utf8(bytes).ok()),
        }
    }

    /// Check a user's credentials as a GWOS client sends them. Costs one password verification
    /// whatever the outcome, so that timing tells nothing about which part was wrong.
    pub async fn check_gwos_credentials(
        &self,
        user_given: &str,
        password_given: &str,
        client: Option<IpAddr>,
    ) -> Result<Arc<User>, LoginError> {
        let user = self.find_user(user_given);
        let password = self.plain_password(password_given);
        let name = user.as_ref().map_or(user_given, |u| u.name.as_str());
        self.check_password(name, client, user.clone(), password)
            .await
    }

    /// Check GW8 credentials (`authenticatePassword`, spec §5): the exact user name, and the
    /// password as typed, or its Jasypt ciphertext in encrypted mode. Never Base64 as a second
    /// guess: that would let two passwords in per user and double the cost of a wrong one.
    pub async fn check_gw8_credentials(
        &self,
        name: &str,
        password_given: &str,
        client: Option<IpAddr>,
    ) -> Result<Arc<User>, LoginError> {
        match &self.jasypt {
            Some(key) => {
                let user = self.users.load().get(name).cloned();
                let password = key.decrypt(password_given);
                self.check_password(name, client, user, password).await
            }
            None => self.check_user_password(name, password_given, client).await,
        }
    }

    /// Check a plain password (ioGates sends it as is, inside TLS) for an exact user name.
    pub async fn check_user_password(
        &self,
        name: &str,
        password: &str,
        client: Option<IpAddr>,
    ) -> Result<Arc<User>, LoginError> {
        let user = self.users.load().get(name).cloned();
        let password = Some(password.to_string());
        self.check_password(name, client, user, password).await
    }

    /// The login limits first (`guard`: no password work for a refused attempt), then one
    /// password verification whatever the outcome (a dummy hash for unknown users), so that timing
    /// tells nothing about which part was wrong. `name` keys the limits: the user's name, or what
    /// was given when it matched no user.
    async fn check_password(
        &self,
        name: &str,
        client: Option<IpAddr>,
        user: Option<Arc<User>>,
        password: Option<String>,
    ) -> Result<Arc<User>, LoginError> {
        if let Err(limited) = self.guard.admit(client, name) {
            self.metrics
                .logins_limited
                .with_label_values(&[limited.limit.as_str()])
                .inc();
            return Err(LoginError::Limited(limited));
        }
        let checked = self.verify_password(user, password, client).await;
        match &checked {
            Ok(_) => self.guard.succeeded(client, name),
            Err(LoginError::BadCredentials(_)) => self.guard.failed(client, name),
            Err(_) => {}
        }
        checked
    }

    async fn verify_password(
        &self,
        user: Option<Arc<User>>,
        password: Option<String>,
        client: Option<IpAddr>,
    ) -> Result<Arc<User>, LoginError> {
        let decodable = password.is_some();
        let hash = user.as_ref().filter(|_| decodable).map(|u| &u.password);
        let matched = self
            .verifier
            .verify(hash, password.unwrap_or_default(), client)
            .await?;
        let reason = match (user, decodable, matched) {
            (None, _, _) => BadCredentialsReason::UnknownUser,
            (Some(_), false, _) => BadCredentialsReason::UndecodablePassword,
            (Some(_), true, false) => BadCredentialsReason::WrongPassword,
            (Some(u), true, true) if u.status != Status::Active => BadCredentialsReason::NotActive,
            (Some(u), true, true) => return Ok(u),
        };
        Err(LoginError::BadCredentials(reason))
    }

    /// An ioGates share-URL login, under the login limits of its address (`guard`): a URL that
    /// names no usable share counts as a failure.
    pub fn share_login(&self, url: &str, client: Option<IpAddr>) -> Result<Grant, LoginError> {
        if let Err(limited) = self.guard.admit_share_login(client) {
            self.metrics
                .logins_limited
                .with_label_values(&[limited.limit.as_str()])
                .inc();
            return Err(LoginError::Limited(limited));
        }
        match self.share_grant(url) {
            Some(grant) => {
                self.guard.succeeded(client, SHARE_LOGIN);
                Ok(grant)
            }
            None => {
                self.guard.failed(client, SHARE_LOGIN);
                Err(LoginError::BadCredentials(
                    BadCredentialsReason::UnknownShare,
                ))
            }
        }
    }

    /// The share a client's share URL names, if usable now: known, not expired, owner active.
    pub fn share_grant(&self, url: &str) -> Option<Grant> {
        let directory = self.users.load();
        let share = directory.share_by_url(url)?;
        if share.is_expired_at(self.now_ms()) {
            return None;
        }
        let account = directory.active(&share.owner)?.clone();
        Some(Grant {
            account,
            share: Some(share.clone()),
        })
    }
}
