//! `tek user ...` and `tek site ...`: accounts and access from the command line (the first
//! admin has to come from somewhere). Passwords are read from standard input when it is not a
//! terminal (one line), else prompted for twice without echo.

use super::{open_target, DataArgs};
use crate::http::auth;
use crate::service::accounts;
use crate::storage::{NewAuditEntry, Storage};
use anyhow::{bail, Context};
use std::io::IsTerminal;

/// `tek user ...`
#[derive(clap::Subcommand, Debug)]
pub enum UserCommand {
    /// Create a user (password from stdin, or prompted).
    Add {
        /// Where the data is: --data DIR (SQLite) or --db URL (PostgreSQL).
        #[command(flatten)]
        target: DataArgs,
        /// E-mail address (the login name).
        #[arg(long)]
        email: String,
        /// Make the user an administrator (sees every device, manages users and sites).
        #[arg(long)]
        admin: bool,
        /// Grant access to these sites (by name; repeatable).
        #[arg(long = "site")]
        sites: Vec<String>,
    },
    /// Set a user's password (from stdin, or prompted); signs them out everywhere.
    Passwd {
        /// Where the data is: --data DIR (SQLite) or --db URL (PostgreSQL).
        #[command(flatten)]
        target: DataArgs,
        /// E-mail address.
        #[arg(long)]
        email: String,
    },
    /// List users.
    List {
        /// Where the data is: --data DIR (SQLite) or --db URL (PostgreSQL).
        #[command(flatten)]
        target: DataArgs,
    },
    /// Delete a user.
    Delete {
        /// Where the data is: --data DIR (SQLite) or --db URL (PostgreSQL).
        #[command(flatten)]
        target: DataArgs,
        /// E-mail address.
        #[arg(long)]
        email: String,
    },
    /// Create an API token for a user and print it (shown once; only its hash is stored).
    Token {
        /// Where the data is: --data DIR (SQLite) or --db URL (PostgreSQL).
        #[command(flatten)]
        target: DataArgs,
        /// E-mail address.
        #[arg(long)]
        email: String,
        /// A label for the token.
        #[arg(long, default_value = "cli")]
        name: String,
    },
    /// List a user's API tokens (id, name, created, last used).
    Tokens {
        /// Where the data is: --data DIR (SQLite) or --db URL (PostgreSQL).
        #[command(flatten)]
        target: DataArgs,
        /// E-mail address.
        #[arg(long)]
        email: String,
    },
    /// Revoke one API token of a user (its id from `tek user tokens`).
    RevokeToken {
        /// Where the data is: --data DIR (SQLite) or --db URL (PostgreSQL).
        #[command(flatten)]
        target: DataArgs,
        /// E-mail address.
        #[arg(long)]
        email: String,
        /// Token id.
        #[arg(long)]
        id: i64,
    },
}

/// `tek site ...`
#[derive(clap::Subcommand, Debug)]
pub enum SiteCommand {
    /// Create a site.
    Add {
        /// Where the data is: --data DIR (SQLite) or --db URL (PostgreSQL).
        #[command(flatten)]
        target: DataArgs,
        /// Name.
        #[arg(long)]
        name: String,
        /// IANA time zone of the site (local days and months of its energy figures).
        #[arg(long, default_value = crate::energy::zone::DEFAULT)]
        time_zone: String,
    },
    /// Set a site's time zone.
    TimeZone {
        /// Where the data is: --data DIR (SQLite) or --db URL (PostgreSQL).
        #[command(flatten)]
        target: DataArgs,
        /// Site name.
        #[arg(long)]
        site: String,
        /// IANA time zone name, e.g. Europe/Berlin.
        #[arg(long)]
        time_zone: String,
    },
    /// Set a site's tariff (JSON as in `PUT /api/sites/{id}/tariff`), or remove it.
    Tariff {
        /// Where the data is: --data DIR (SQLite) or --db URL (PostgreSQL).
        #[command(flatten)]
        target: DataArgs,
        /// Site name.
        #[arg(long)]
        site: String,
        /// The tariff, e.g. '{"currency":"EUR","energy_price":0.3}'.
        #[arg(long, conflicts_with = "clear", required_unless_present = "clear")]
        json: Option<String>,
        /// Remove the tariff.
        #[arg(long)]
        clear: bool,
    },
    /// List sites with their members and device counts.
    List {
        /// Where the data is: --data DIR (SQLite) or --db URL (PostgreSQL).
        #[command(flatten)]
        target: DataArgs,
    },
    /// Give a user access to a site.
    Grant {
        /// Where the data is: --data DIR (SQLite) or --db URL (PostgreSQL).
        #[command(flatten)]
        target: DataArgs,
        /// Site name.
        #[arg(long)]
        site: String,
        /// User e-mail.
        #[arg(long)]
        email: String,
    },
    /// Assign devices to a site (ids and ranges, e.g. `1-25,30`).
    Assign {
        /// Where the data is: --data DIR (SQLite) or --db URL (PostgreSQL).
        #[command(flatten)]
        target: DataArgs,
        /// Site name.
        #[arg(long)]
        site: String,
        /// Device ids.
        #[arg(long)]
        devices: String,
    },
}

fn read_password() -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    let pw = if stdin.is_terminal() {
        let a = rpassword::prompt_password("Password: ").context("reading the password")?;
        let b = rpassword::prompt_password("Again: ").context("reading the password")?;
        if a != b {
            bail!("the two passwords differ");
        }
        a
    } else {
        let mut line = String::new();
        stdin
            .read_line(&mut line)
            .context("reading the password from stdin")?;
        line.trim_end_matches(['\n', '\r']).to_owned()
    };
    auth::password_acceptable(&pw).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(pw)
}

fn cli_audit(
    db: &dyn Storage,
    action: &str,
    site: Option<i64>,
    detail: String,
) -> anyhow::Result<()> {
    db.append_audit(
        &NewAuditEntry {
            user_id: None,
            actor: "cli".into(),
            action: action.into(),
            device_id: None,
            site_id: site,
            detail,
        },
        crate::clock::unix_now(),
    )?;
    Ok(())
}

fn site_id(db: &dyn Storage, name: &str) -> anyhow::Result<i64> {
    Ok(db
        .site_by_name(name)?
        .with_context(|| format!("no site named {name:?} (create it with `tek site add`)"))?
        .id)
}

fn user_id(db: &dyn Storage, email: &str) -> anyhow::Result<i64> {
    Ok(db
        .user_by_email(email)?
        .with_context(|| format!("no user {email}"))?
        .id)
}

/// The storage a command names: `--db` (PostgreSQL) or the SQLite file in `--data`.
fn open(target: &DataArgs, create: bool) -> anyhow::Result<std::sync::Arc<dyn Storage>> {
    open_target(&target.data, target.db.as_deref(), create)
}

/// Creates (or finds) a user with a given password; returns `(id, created)`. For `tek demo`.
pub fn ensure_user(
    db: &dyn Storage,
    email: &str,
    password: &str,
    is_admin: bool,
) -> anyhow::Result<(i64, bool)> {
    if let Some(u) = db.user_by_email(email)? {
        return Ok((u.id, false));
    }
    let hash = auth::hash_password(password).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((
        db.create_user(email, &hash, is_admin, crate::clock::unix_now())?,
        true,
    ))
}

/// Runs `tek user ...`.
pub fn user(cmd: UserCommand) -> anyhow::Result<()> {
    match cmd {
        UserCommand::Add {
            target,
            email,
            admin,
            sites,
        } => {
            let email = email.trim().to_owned();
            auth::email_acceptable(&email).map_err(|e| anyhow::anyhow!("{e}"))?;
            let db = open(&target, true)?;
            let site_ids = sites
                .iter()
                .map(|s| site_id(&*db, s))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let pw = read_password()?;
            let hash = auth::hash_password(&pw).map_err(|e| anyhow::anyhow!("{e}"))?;
            let id = db.create_user(&email, &hash, admin, crate::clock::unix_now())?;
            for s in &site_ids {
                db.grant_site(id, *s)?;
            }
            cli_audit(
                &*db,
                "user.create",
                None,
                format!("user {id} {email}{}", if admin { " (admin)" } else { "" }),
            )?;
            println!(
                "user {id} {email} created{}",
                if admin { " (admin)" } else { "" }
            );
        }
        UserCommand::Passwd { target, email } => {
            let db = open(&target, false)?;
            let id = user_id(&*db, &email)?;
            let pw = read_password()?;
            let hash = auth::hash_password(&pw).map_err(|e| anyhow::anyhow!("{e}"))?;
            db.set_password(id, &hash)?;
            let revoked = crate::service::accounts::sign_out_everywhere(&*db, id)?;
            cli_audit(
                &*db,
                "user.password",
                None,
                format!("password of {email} set"),
            )?;
            println!(
                "password of {email} set; signed out everywhere, {revoked} API token(s) revoked"
            );
        }
        UserCommand::List { target } => {
            let db = open(&target, false)?;
            for u in db.list_users()? {
                let sites: Vec<String> = db.user_sites(u.id)?.into_iter().map(|s| s.name).collect();
                println!(
                    "{}\t{}\t{}\t{}",
                    u.id,
                    u.email,
                    if u.is_admin { "admin" } else { "user" },
                    sites.join(",")
                );
            }
        }
        UserCommand::Delete { target, email } => {
            let db = open(&target, false)?;
            let id = user_id(&*db, &email)?;
            db.delete_user(id)?;
            cli_audit(&*db, "user.delete", None, format!("user {id} {email}"))?;
            println!("user {email} deleted");
        }
        UserCommand::Token {
            target,
            email,
            name,
        } => {
            let db = open(&target, false)?;
            let id = user_id(&*db, &email)?;
            let token = auth::new_secret().map_err(|e| anyhow::anyhow!("{e}"))?;
            let tid = db.create_token(
                id,
                &name,
                &auth::secret_hash(&token),
                crate::clock::unix_now(),
            )?;
            cli_audit(
                &*db,
                "token.create",
                None,
                format!("API token {tid} ({name}) for {email}"),
            )?;
            println!("{token}");
        }
        UserCommand::Tokens { target, email } => {
            let db = open(&target, false)?;
            let id = user_id(&*db, &email)?;
            for t in db.list_tokens(id)? {
                println!(
                    "{}\t{}\t{}\t{}",
                    t.id,
                    t.name,
                    t.created_at,
                    t.last_used.map_or("-".to_owned(), |u| u.to_string())
                );
            }
        }
        UserCommand::RevokeToken { target, email, id } => {
            let db = open(&target, false)?;
            let uid = user_id(&*db, &email)?;
            if !db.delete_token(uid, id)? {
                anyhow::bail!("{email} has no API token {id}");
            }
            cli_audit(
                &*db,
                "token.delete",
                None,
                format!("API token {id} of {email} revoked"),
            )?;
            println!("API token {id} of {email} revoked");
        }
    }
    Ok(())
}

/// Runs `tek site ...`.
pub fn site(cmd: SiteCommand) -> anyhow::Result<()> {
    match cmd {
        SiteCommand::Add {
            target,
            name,
            time_zone,
        } => {
            // Checked before anything is created.
            let (_, tz) = crate::energy::zone::parse(&time_zone).map_err(anyhow::Error::msg)?;
            let db = open(&target, true)?;
            let id = db.create_site(name.trim(), crate::clock::unix_now())?;
            db.set_site_time_zone(id, &tz)?;
            cli_audit(
                &*db,
                "site.create",
                Some(id),
                format!("site {id} {name} ({tz})"),
            )?;
            println!("site {id} {name} created (time zone {tz})");
        }
        SiteCommand::TimeZone {
            target,
            site,
            time_zone,
        } => {
            let (_, tz) = crate::energy::zone::parse(&time_zone).map_err(anyhow::Error::msg)?;
            let db = open(&target, false)?;
            let s = site_id(&*db, &site)?;
            db.set_site_time_zone(s, &tz)?;
            cli_audit(
                &*db,
                "site.time_zone",
                Some(s),
                format!("site {s} time zone {tz}"),
            )?;
            println!("site {site}: time zone {tz}");
        }
        SiteCommand::Tariff {
            target,
            site,
            json,
            clear,
        } => {
            let tariff = match (json, clear) {
                (Some(j), false) => {
                    let t: crate::energy::tariff::Tariff =
                        serde_json::from_str(&j).context("reading the tariff JSON")?;
                    t.validate().map_err(anyhow::Error::msg)?;
                    Some(t)
                }
                _ => None,
            };
            let db = open(&target, false)?;
            let s = site_id(&*db, &site)?;
            db.set_site_tariff(s, tariff.as_ref(), crate::clock::unix_now())?;
            let what = if tariff.is_some() { "set" } else { "removed" };
            cli_audit(
                &*db,
                "site.tariff",
                Some(s),
                format!("site {s} tariff {what}"),
            )?;
            println!("site {site}: tariff {what}");
        }
        SiteCommand::List { target } => {
            let db = open(&target, false)?;
            for s in db.list_sites()? {
                let members = db.site_members(s.id)?;
                let emails: Vec<String> = members
                    .iter()
                    .filter_map(|m| db.user(*m).ok().flatten().map(|u| u.email))
                    .collect();
                println!(
                    "{}\t{}\t{} devices\t{}\t{}",
                    s.id,
                    s.name,
                    db.site_device_ids(s.id)?.len(),
                    emails.join(","),
                    s.time_zone
                );
            }
        }
        SiteCommand::Grant {
            target,
            site,
            email,
        } => {
            let db = open(&target, false)?;
            let s = site_id(&*db, &site)?;
            let u = user_id(&*db, &email)?;
            db.grant_site(u, s)?;
            cli_audit(
                &*db,
                "site.grant",
                Some(s),
                format!("{email} granted access to {site}"),
            )?;
            println!("{email} may now see site {site}");
        }
        SiteCommand::Assign {
            target,
            site,
            devices,
        } => {
            let db = open(&target, false)?;
            let s = site_id(&*db, &site)?;
            let ids = accounts::parse_ids(&devices).map_err(|e| anyhow::anyhow!("{e}"))?;
            for d in &ids {
                db.device(*d).with_context(|| format!("device {d}"))?;
            }
            db.assign_devices(&ids, Some(s))?;
            cli_audit(
                &*db,
                "device.assign",
                Some(s),
                format!("{} device(s) assigned to site {site}", ids.len()),
            )?;
            println!("{} device(s) assigned to site {site}", ids.len());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::sqlite::Sqlite;
    use tek_proto::crypto::Key;

    /// The whole command sequence against the storage that `target` names; `db` is a second
    /// handle on the same database for checking.
    fn sites_tokens_and_demo_users(target: &DataArgs, db: &dyn Storage) {
        let t = || DataArgs {
            data: target.data.clone(),
            db: target.db.clone(),
        };
        let devs: Vec<crate::storage::NewDevice> = (1..=3)
            .map(|id| crate::storage::NewDevice {
                id,
                name: String::new(),
                key: Key([0; 16]),
            })
            .collect();
        db.add_devices(&devs, 0).unwrap();
        let (uid, created) = ensure_user(db, "a@example.com", "long enough pw", false).unwrap();
        assert!(created);
        assert_eq!(
            ensure_user(db, "a@example.com", "other pw 123", false).unwrap(),
            (uid, false)
        );
        site(SiteCommand::Add {
            target: t(),
            name: "North".into(),
            time_zone: "Europe/Berlin".into(),
        })
        .unwrap();
        let bad_zone = site(SiteCommand::Add {
            target: t(),
            name: "South".into(),
            time_zone: "Europe/Atlantis".into(),
        });
        assert!(bad_zone
            .unwrap_err()
            .to_string()
            .contains("unknown time zone"));
        assert!(
            db.site_by_name("South").unwrap().is_none(),
            "nothing created"
        );
        let north = db.site_by_name("North").unwrap().unwrap();
        assert_eq!(north.time_zone, "Europe/Berlin");
        site(SiteCommand::TimeZone {
            target: t(),
            site: "North".into(),
            time_zone: "america/new_york".into(),
        })
        .unwrap();
        assert_eq!(
            db.site(north.id).unwrap().unwrap().time_zone,
            "America/New_York"
        );
        site(SiteCommand::Tariff {
            target: t(),
            site: "North".into(),
            json: Some(r#"{"currency":"USD","energy_price":0.2,"demand_price":15}"#.into()),
            clear: false,
        })
        .unwrap();
        assert_eq!(
            db.site_tariff(north.id).unwrap().unwrap().demand_price,
            15.0
        );
        assert!(site(SiteCommand::Tariff {
            target: t(),
            site: "North".into(),
            json: Some(r#"{"energy_price":-1}"#.into()),
            clear: false,
        })
        .is_err());
        site(SiteCommand::Tariff {
            target: t(),
            site: "North".into(),
            json: None,
            clear: true,
        })
        .unwrap();
        assert_eq!(db.site_tariff(north.id).unwrap(), None);
        site(SiteCommand::Grant {
            target: t(),
            site: "North".into(),
            email: "a@example.com".into(),
        })
        .unwrap();
        site(SiteCommand::Assign {
            target: t(),
            site: "North".into(),
            devices: "1-2".into(),
        })
        .unwrap();
        assert_eq!(db.user_device_ids(uid).unwrap(), vec![1, 2]);
        assert!(site(SiteCommand::Assign {
            target: t(),
            site: "North".into(),
            devices: "9".into()
        })
        .is_err());
        assert!(site(SiteCommand::Grant {
            target: t(),
            site: "South".into(),
            email: "a@example.com".into()
        })
        .is_err());
        user(UserCommand::Token {
            target: t(),
            email: "a@example.com".into(),
            name: "t".into(),
        })
        .unwrap();
        assert_eq!(db.list_tokens(uid).unwrap().len(), 1);
        let tid = db.list_tokens(uid).unwrap()[0].id;
        assert!(user(UserCommand::RevokeToken {
            target: t(),
            email: "a@example.com".into(),
            id: tid + 100,
        })
        .is_err());
        user(UserCommand::Tokens {
            target: t(),
            email: "a@example.com".into(),
        })
        .unwrap();
        user(UserCommand::RevokeToken {
            target: t(),
            email: "a@example.com".into(),
            id: tid,
        })
        .unwrap();
        assert!(db.list_tokens(uid).unwrap().is_empty());
        let audit = db
            .audit(&crate::storage::AuditFilter {
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        assert!(audit.iter().all(|e| e.entry.actor == "cli"));
        assert_eq!(
            audit.len(),
            8,
            "site.create, site.time_zone, site.tariff (set, removed), site.grant, device.assign, \
             token.create, token.delete"
        );
        user(UserCommand::Delete {
            target: t(),
            email: "a@example.com".into(),
        })
        .unwrap();
        assert!(db.user_by_email("a@example.com").unwrap().is_none());
    }

    #[test]
    fn sites_tokens_and_demo_users_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().to_owned();
        let db = Sqlite::open_dir(&data).unwrap();
        sites_tokens_and_demo_users(&DataArgs { data, db: None }, &db);
    }

    #[test]
    fn sites_tokens_and_demo_users_on_postgres() {
        let Some(test_db) = crate::storage::postgres::testing::database() else {
            return; // no PostgreSQL here and not CI: `testing` has said so
        };
        let target = DataArgs {
            data: std::path::PathBuf::new(),
            db: Some(test_db.url.clone()),
        };
        sites_tokens_and_demo_users(&target, &test_db.db);
    }

    #[test]
    fn a_command_on_a_missing_data_directory_fails_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let err = site(SiteCommand::List {
            target: DataArgs {
                data: dir.path().join("nothing-here"),
                db: None,
            },
        })
        .unwrap_err();
        assert!(!format!("{err:#}").is_empty());
    }
}
