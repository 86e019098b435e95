//! The page frame: head with the embedded stylesheet and script, navigation, flash messages.
//! maud escapes every interpolated string, so user data (names, e-mails, messages) is inert.

use crate::http::auth::Principal;
use crate::service::states::ConfigStatus;
use axum::response::Html;
use maud::{html, Markup, DOCTYPE};

/// Where in the navigation a page sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    /// The device list.
    Dashboard,
    /// The audit log.
    Audit,
    /// Open alarms.
    Alarms,
    /// Channel templates.
    Templates,
    /// Users, sites, assignment.
    Admin,
    /// The user's own account.
    Account,
    /// Elsewhere (device pages).
    None,
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · tek" }
            link rel="stylesheet" href=(super::assets::UPLOT_CSS_PATH);
            link rel="stylesheet" href=(super::assets::CSS_PATH);
            script src=(super::assets::UPLOT_JS_PATH) defer {}
            script src=(super::assets::JS_PATH) defer {}
        }
    }
}

/// A page for a signed-in user.
pub fn page(user: &Principal, nav: Nav, title: &str, body: Markup) -> Html<String> {
    let item = |n: Nav, href: &str, label: &str| {
        html! { a href=(href) class=[(nav == n).then_some("active")] { (label) } }
    };
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                (head(title))
                body data-csrf=(user.csrf()) {
                    header.top {
                        a.brand href="/dashboard" { "tek" }
                        nav {
                            (item(Nav::Dashboard, "/dashboard", "Dashboard"))
                            (item(Nav::Alarms, "/alarms", "Alarms"))
                            (item(Nav::Templates, "/templates", "Templates"))
                            (item(Nav::Audit, "/audit", "Audit log"))
                            @if user.user.is_admin { (item(Nav::Admin, "/admin", "Admin")) }
                            (item(Nav::Account, "/account", "Account"))
                        }
                        form.logout method="post" action="/logout" data-plain {
                            input type="hidden" name="csrf" value=(user.csrf());
                            span.who { (user.user.email) }
                            button type="submit" { "Sign out" }
                        }
                    }
                    main { (body) }
                }
            }
        }
        .into_string(),
    )
}

/// A page without navigation (login form, errors).
pub fn bare(title: &str, message: &str) -> Html<String> {
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                (head(title))
                body {
                    main.narrow {
                        h1 { (title) }
                        p.error { (message) }
                        p { a href="/dashboard" { "Back to the dashboard" } }
                    }
                }
            }
        }
        .into_string(),
    )
}

/// A standalone page with custom content (the login form).
pub fn standalone(title: &str, body: Markup) -> Html<String> {
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                (head(title))
                body { main.narrow { (body) } }
            }
        }
        .into_string(),
    )
}

/// The status dot of a device: green online, grey offline, a spinner while a configuration
/// change is pending, red when the device rolled one back. `data-dot` lets the script update it.
pub fn dot(id: u32, online: bool, config_state: ConfigStatus) -> Markup {
    let (class, label) = match (config_state, online) {
        (ConfigStatus::Pending, _) => ("dot pending", "configuration change pending"),
        (ConfigStatus::RolledBack, _) => ("dot failed", "configuration rolled back"),
        (_, true) => ("dot online", "online"),
        (_, false) => ("dot offline", "offline"),
    };
    html! { span class=(class) data-dot=(id) title=(label) role="img" aria-label=(label) {} }
}

/// A hidden CSRF field.
pub fn csrf_field(user: &Principal) -> Markup {
    html! { input type="hidden" name="csrf" value=(user.csrf()); }
}

/// A message line (`ok` green, otherwise red).
pub fn flash(ok: bool, text: &str) -> Markup {
    html! { p class=(if ok { "flash ok" } else { "flash error" }) role="status" { (text) } }
}
