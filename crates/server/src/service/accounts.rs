//! Accounts and sites: users, sites, who may see which site, and which site each controller
//! belongs to. Each operation checks admin rights itself and appends an audit entry; the pages
//! (`web::admin`), the JSON API (`api::users`, `api::sites`) and the command line call them.

use crate::http::auth::{self, Principal};
use crate::http::error::WebError;
use crate::http::Web;
use crate::storage::SiteRecord;

/// The sites `p` sees: every site for an administrator, their own for a site member.
pub async fn visible_sites(web: &Web, p: &Principal) -> Result<Vec<SiteRecord>, WebError> {
    let (uid, admin) = (p.user.id, p.user.is_admin);
    web.db_call(move |db| {
        if admin {
            db.list_sites()
        } else {
            db.user_sites(uid)
        }
    })
    .await
}

/// Parses a device list like `1-25, 30` (at most 100,000 ids).
pub fn parse_ids(s: &str) -> Result<Vec<u32>, WebError> {
    let bad = |p: &str| WebError::Invalid(format!("{p:?} is not a device id or range like 1-25"));
    let mut out = Vec::new();
    for part in s
        .split([',', ' ', '\n'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (part, part),
        };
        let a: u32 = a.parse().map_err(|_| bad(part))?;
        let b: u32 = b.parse().map_err(|_| bad(part))?;
        if a == 0 || b < a || out.len() + (b - a) as usize >= 100_000 {
            return Err(bad(part));
        }
        out.extend(a..=b);
    }
    if out.is_empty() {
        return Err(WebError::Invalid("no device ids given".into()));
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Sorted ids as ranges, e.g. `13-999` or `4, 7-9`; at most 10 ranges, then `…`.
fn id_ranges(ids: &[u32]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < ids.len() {
        let mut j = i;
        while j + 1 < ids.len() && ids[j + 1] == ids[j] + 1 {
            j += 1;
        }
        if out.len() == 10 {
            out.push("…".into());
            break;
        }
        out.push(if i == j {
            ids[i].to_string()
        } else {
            format!("{}-{}", ids[i], ids[j])
        });
        i = j + 1;
    }
    out.join(", ")
}

/// Creates a user.
pub async fn create_user(
    web: &Web,
    p: &Principal,
    email: &str,
    password: String,
    is_admin: bool,
) -> Result<i64, WebError> {
    Web::require_admin(&p.user)?;
    let email = email.trim().to_owned();
    auth::email_acceptable(&email)?;
    auth::password_acceptable(&password)?;
    let hash = tokio::task::spawn_blocking(move || auth::hash_password(&password))
        .await
        .map_err(|e| WebError::Internal(e.to_string()))??;
    let now = crate::clock::unix_now();
    let e = email.clone();
    let id = web
        .db_call(move |db| db.create_user(&e, &hash, is_admin, now))
        .await?;
    web.audit(
        p,
        "user.create",
        None,
        None,
        format!(
            "user {id} {email}{}",
            if is_admin { " (admin)" } else { "" }
        ),
    )
    .await?;
    Ok(id)
}

/// Deletes a user (not oneself).
pub async fn delete_user(web: &Web, p: &Principal, id: i64) -> Result<(), WebError> {
    Web::require_admin(&p.user)?;
    if id == p.user.id {
        return Err(WebError::Invalid(
            "you cannot delete your own account".into(),
        ));
    }
    let user = web
        .db_call(move |db| db.user(id))
        .await?
        .ok_or(WebError::NotFound)?;
    web.db_call(move |db| db.delete_user(id)).await?;
    web.audit(
        p,
        "user.delete",
        None,
        None,
        format!("user {id} {}", user.email),
    )
    .await
}

/// Creates a site.
pub async fn create_site(web: &Web, p: &Principal, name: &str) -> Result<i64, WebError> {
    Web::require_admin(&p.user)?;
    let name = name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(WebError::Invalid(
            "a site name has 1 to 100 printable characters".into(),
        ));
    }
    let now = crate::clock::unix_now();
    let n = name.clone();
    let id = web.db_call(move |db| db.create_site(&n, now)).await?;
    web.audit(
        p,
        "site.create",
        None,
        Some(id),
        format!("site {id} {name}"),
    )
    .await?;
    Ok(id)
}

/// Deletes a site (its devices become unassigned).
pub async fn delete_site(web: &Web, p: &Principal, id: i64) -> Result<(), WebError> {
    Web::require_admin(&p.user)?;
    let site = web
        .db_call(move |db| db.site(id))
        .await?
        .ok_or(WebError::NotFound)?;
    web.db_call(move |db| db.delete_site(id)).await?;
    web.audit(
        p,
        "site.delete",
        None,
        Some(id),
        format!("site {id} {}", site.name),
    )
    .await
}

/// Grants or revokes a user's access to a site.
pub async fn set_member(
    web: &Web,
    p: &Principal,
    user_id: i64,
    site_id: i64,
    member: bool,
) -> Result<(), WebError> {
    Web::require_admin(&p.user)?;
    let (user, site) = web
        .db_call(move |db| Ok((db.user(user_id)?, db.site(site_id)?)))
        .await?;
    let (Some(user), Some(site)) = (user, site) else {
        return Err(WebError::NotFound);
    };
    web.db_call(move |db| {
        if member {
            db.grant_site(user_id, site_id)
        } else {
            db.revoke_site(user_id, site_id)
        }
    })
    .await?;
    let what = if member { "granted" } else { "revoked" };
    web.audit(
        p,
        if member { "site.grant" } else { "site.revoke" },
        None,
        Some(site_id),
        format!("{} {what} access to {}", user.email, site.name),
    )
    .await
}

/// Assigns devices to a site (`None`: unassigns them).
pub async fn assign(
    web: &Web,
    p: &Principal,
    ids: Vec<u32>,
    site_id: Option<i64>,
) -> Result<(), WebError> {
    Web::require_admin(&p.user)?;
    let n = ids.len();
    let first = ids[0];
    let last = ids[n - 1];
    let check = ids.clone();
    let missing = web
        .db_call(move |db| {
            let mut missing = Vec::new();
            for &d in &check {
                match db.device(d) {
                    Ok(_) => {}
                    Err(crate::storage::Error::NotFound(_)) => missing.push(d),
                    Err(e) => return Err(e),
                }
            }
            if missing.is_empty() {
                db.assign_devices(&ids, site_id)?;
            }
            Ok(missing)
        })
        .await?;
    if !missing.is_empty() {
        return Err(WebError::Invalid(format!(
            "devices: {} of the {n} controller(s) do not exist ({}); nothing was assigned",
            missing.len(),
            id_ranges(&missing)
        )));
    }
    let detail = match site_id {
        Some(s) => format!("{n} device(s) {first}..{last} assigned to site {s}"),
        None => format!("{n} device(s) {first}..{last} unassigned"),
    };
    web.audit(p, "device.assign", None, site_id, detail).await
}

/// Changes the password of `user`, ending their other sessions.
/// Signs a user out everywhere: ends every login session and revokes every API token (a
/// password change: whoever held the old password may have made either). Returns how many
/// tokens were revoked.
pub fn sign_out_everywhere(
    db: &dyn crate::storage::Storage,
    uid: i64,
) -> crate::storage::Result<usize> {
    db.delete_user_web_sessions(uid)?;
    let tokens = db.list_tokens(uid)?;
    for t in &tokens {
        db.delete_token(uid, t.id)?;
    }
    Ok(tokens.len())
}

/// Checks the current password and sets a new one; every other session ends and every API
/// token is revoked (the session making the change stays signed in).
pub async fn change_password(
    web: &Web,
    p: &Principal,
    current: String,
    new: String,
) -> Result<(), WebError> {
    auth::password_acceptable(&new)?;
    let email = p.user.email.clone();
    let creds = web.db_call(move |db| db.user_credentials(&email)).await?;
    let Some((_, phc)) = creds else {
        return Err(WebError::Unauthenticated);
    };
    let hash = tokio::task::spawn_blocking(move || {
        if auth::verify_password(&current, &phc) {
            auth::hash_password(&new).map(Some)
        } else {
            Ok(None)
        }
    })
    .await
    .map_err(|e| WebError::Internal(e.to_string()))??
    .ok_or_else(|| WebError::Invalid("the current password is wrong".into()))?;
    let uid = p.user.id;
    let keep = match p.via {
        auth::Via::Cookie { hash, .. } => Some(hash),
        auth::Via::Token | auth::Via::Mqtt => None,
    };
    let now = crate::clock::unix_now();
    let ttl = web.opts.session_ttl_s;
    web.db_call(move |db| {
        db.set_password(uid, &hash)?;
        sign_out_everywhere(db, uid)?;
        // The session that made the change stays signed in.
        if let Some(h) = keep {
            db.create_web_session(&h, uid, now, now + ttl)?;
        }
        Ok(())
    })
    .await?;
    web.audit(
        p,
        "user.password",
        None,
        None,
        format!("password of {} changed", p.user.email),
    )
    .await
}

/// Creates a token for `p`'s user; returns `(id, token)`.
pub async fn new_token(web: &Web, p: &Principal, name: &str) -> Result<(i64, String), WebError> {
    let name = name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err(WebError::Invalid(
            "a token name has 1 to 64 printable characters".into(),
        ));
    }
    let token = auth::new_secret()?;
    let hash = auth::secret_hash(&token);
    let uid = p.user.id;
    let now = crate::clock::unix_now();
    let n = name.clone();
    let id = web
        .db_call(move |db| db.create_token(uid, &n, &hash, now))
        .await?;
    web.audit(
        p,
        "token.create",
        None,
        None,
        format!("API token {id} ({name})"),
    )
    .await?;
    Ok((id, token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_lists() {
        assert_eq!(parse_ids("1-3, 7 2").unwrap(), vec![1, 2, 3, 7]);
        for bad in ["", "0", "3-1", "a", "1-200000", "-5"] {
            assert!(parse_ids(bad).is_err(), "{bad}");
        }
        assert_eq!(id_ranges(&[4, 7, 8, 9, 13]), "4, 7-9, 13");
        assert_eq!(id_ranges(&(13..=999).collect::<Vec<_>>()), "13-999");
    }
}
