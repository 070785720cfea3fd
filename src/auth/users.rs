//! The user directory: the users file, parsed and checked once.

use super::password::StoredHash;
use super::shares::{Share, ShareEntry};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

/// The demo users started by `authgate run` without a users file (`admin` and `reader`; see README).
pub const DEMO_USERS_YAML: &str = include_str!("../../conf/demo-users.yaml");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Any method.
    Admin,
    /// GET and HEAD, plus the configured POST allow-list.
    Reader,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Reader => "reader",
        }
    }
}

/// Account status, with ioGates' names. Only `Active` may log in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
pub enum Status {
    Active,
    Inactive,
    Blocked,
    ValidationRequired,
}

/// The profile fields the ioGates API answers with.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Profile {
    /// Account id; defaults to the user name.
    pub id: Option<String>,
    pub realname: String,
    pub accountname: String,
    pub email: String,
    pub address: Option<String>,
    pub mobile: Option<String>,
    /// ISO-8601, or absent.
    pub expires: Option<String>,
    pub logo: String,
    /// Bytes; 0 = no limit.
    pub max_file_size: u64,
    /// Bytes left on the account.
    pub available_storage: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserEntry {
    password_hash: String,
    role: Role,
    #[serde(default = "active")]
    status: Status,
    #[serde(default)]
    profile: Profile,
}

fn active() -> Status {
    Status::Active
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    users: BTreeMap<String, UserEntry>,
    #[serde(default)]
    shares: Vec<ShareEntry>,
}

#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub password: StoredHash,
    pub role: Role,
    pub status: Status,
    pub profile: Profile,
}

/// All known users, by exact (case-sensitive) name, and the shares they own.
#[derive(Debug, Default)]
pub struct UserDirectory {
    users: HashMap<String, Arc<User>>,
    /// By share URL key.
    shares_by_key: HashMap<String, Arc<Share>>,
    /// By share id.
    shares_by_id: HashMap<String, Arc<Share>>,
}

impl UserDirectory {
    pub fn load(path: &Path) -> Result<UserDirectory, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        UserDirectory::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn demo() -> UserDirectory {
        UserDirectory::parse(DEMO_USERS_YAML).expect("the embedded demo users file is valid")
    }

    /// Parse a users file; errors name the user and key at fault.
    pub fn parse(text: &str) -> Result<UserDirectory, String> {
        let file: UsersFile = serde_norway::from_str(text).map_err(|e| e.to_string())?;
        let mut users = HashMap::with_capacity(file.users.len());
        for (name, entry) in file.users {
            if name.is_empty() {
                return Err("users: a user name is empty".into());
            }
            let password = StoredHash::parse(&entry.password_hash)
                .map_err(|why| format!("users.{name}.password_hash: {why}"))?;
            let user = User {
                name: name.clone(),
                password,
                role: entry.role,
                status: entry.status,
                profile: entry.profile,
            };
            users.insert(name, Arc::new(user));
        }
        let mut shares_by_key = HashMap::new();
        let mut shares_by_id = HashMap::new();
        for (i, entry) in file.shares.into_iter().enumerate() {
            let share = Arc::new(Share::from_entry(i, entry)?);
            if !users.contains_key(&share.owner) {
                return Err(format!(
                    "shares[{i}].owner: no user named {:?}",
                    share.owner
                ));
            }
            if shares_by_id
                .insert(share.id.clone(), share.clone())
                .is_some()
            {
                return Err(format!("shares[{i}].id: {:?} is used twice", share.id));
            }
            if shares_by_key.insert(share.key.clone(), share).is_some() {
                return Err(format!("shares[{i}].url: this share URL is listed twice"));
            }
        }
        Ok(UserDirectory {
            users,
            shares_by_key,
            shares_by_id,
        })
    }

    /// The share a client's share URL names, if any.
    pub fn share_by_url(&self, url: &str) -> Option<&Arc<Share>> {
        self.shares_by_key.get(&super::shares::share_url_key(url)?)
    }

    pub fn share(&self, id: &str) -> Option<&Arc<Share>> {
        self.shares_by_id.get(id)
    }

    pub fn shares(&self) -> impl Iterator<Item = &Arc<Share>> {
        self.shares_by_id.values()
    }

    /// The active account behind a name, if it is still active.
    pub fn active(&self, name: &str) -> Option<&Arc<User>> {
        self.users.get(name).filter(|u| u.status == Status::Active)
    }

    pub fn get(&self, name: &str) -> Option<&Arc<User>> {
        self.users.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.users.keys()
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_users_load() {
        let d = UserDirectory::demo();
        assert_eq!(d.get("admin").unwrap().role, Role::Admin);
        assert_eq!(d.get("reader").unwrap().role, Role::Reader);
        assert_eq!(d.get("admin").unwrap().status, Status::Active);
    }

    #[test]
    fn example_users_file_loads() {
        let d = UserDirectory::parse(include_str!("../../conf/users.example.yaml")).unwrap();
        assert_eq!(d.get("operator").unwrap().role, Role::Reader);
        assert_eq!(
            d.get("RESTAPIACCESS").unwrap().profile.available_storage,
            29_301_996_265
        );
    }

    #[test]
    fn plain_text_password_is_refused_with_its_key() {
        let err =
            UserDirectory::parse("users:\n  bob:\n    password_hash: hunter2\n    role: admin\n")
                .unwrap_err();
        assert!(err.starts_with("users.bob.password_hash"), "{err}");
        assert!(
            !err.contains("hunter2"),
            "the error must not echo the secret: {err}"
        );
    }

    #[test]
    fn share_owner_must_exist_and_ids_be_unique() {
        let user = format!(
            "users:\n  o:\n    password_hash: '{}'\n    role: admin\n",
            super::super::password::hash_password("x")
        );
        let share = |id: &str, url: &str, owner: &str| {
            format!("  - id: {id}\n    url: {url}\n    owner: {owner}\n    paths: [/a]\n")
        };
        let ghost = format!("{user}shares:\n{}", share("a", "http://h/s/1", "ghost"));
        assert!(UserDirectory::parse(&ghost)
            .unwrap_err()
            .starts_with("shares[0].owner"));
        let twice = format!(
            "{user}shares:\n{}{}",
            share("a", "http://h/s/1", "o"),
            share("a", "http://h/s/2", "o")
        );
        assert!(UserDirectory::parse(&twice)
            .unwrap_err()
            .starts_with("shares[1].id"));
        let same_url = format!(
            "{user}shares:\n{}{}",
            share("a", "http://h/s/1", "o"),
            share("b", "https://H/s/1/", "o")
        );
        assert!(UserDirectory::parse(&same_url)
            .unwrap_err()
            .starts_with("shares[1].url"));
    }

    #[test]
    fn profile_fields_and_status_parse() {
        let yaml = format!(
            "users:\n  ann:\n    password_hash: '{}'\n    role: reader\n    status: Blocked\n    profile:\n      realname: Ann\n      max_file_size: 10\n      available_storage: 29301996265\n",
            super::super::password::hash_password("x")
        );
        let d = UserDirectory::parse(&yaml).unwrap();
        let ann = d.get("ann").unwrap();
        assert_eq!(ann.status, Status::Blocked);
        assert_eq!(ann.profile.realname, "Ann");
        assert_eq!(ann.profile.available_storage, 29_301_996_265);
        assert!(
            UserDirectory::parse("users:\n  x:\n    password_hash: a\n    role: god\n").is_err()
        );
    }
}
