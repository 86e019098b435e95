//! Every page and API route in one place, with the security layers: the pages of
//! [`crate::web`] and, under `/api`, the handlers of [`crate::api`], over the shared state
//! [`crate::http::Web`]. `tek serve` joins it to the server's HTTP listener:
//! `Server::start_with(config, None, |api| router::router(api, opts))`.

use crate::http::{headers, Web, WebOptions};
use crate::inproc::Api;
use crate::web::{
    account, admin, alarms_admin, alarms_page, assets, audit_page, bulk, configure, dashboard,
    device, events, export, login, schedules, site, template_editor, templates,
};
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post, put};
use axum::Router;

/// The alarm pages (see [`alarms_page`]).
fn alarm_page_routes() -> Router<Web> {
    use alarms_admin as aa;
    use alarms_page as ap;
    Router::new()
        .route("/alarms", get(ap::overview))
        .route("/alarms/{id}/ack", post(ap::ack))
        .route("/devices/{id}/alarms", get(ap::device_page))
        .route("/devices/{id}/alarms/rules", post(ap::add_rule))
        .route(
            "/devices/{id}/alarms/rules/{rule}/delete",
            post(ap::delete_rule),
        )
        .route(
            "/devices/{id}/alarms/rules/{rule}/shelve",
            post(ap::shelve_rule),
        )
        .route(
            "/devices/{id}/alarms/rules/{rule}/enabled",
            post(ap::set_enabled),
        )
        .route(
            "/devices/{id}/alarms/rules/{rule}/edit",
            post(ap::edit_rule),
        )
        .route("/admin/alarms", get(aa::admin_page))
        .route("/admin/alarms/destinations", post(aa::add_destination))
        .route(
            "/admin/alarms/destinations/{id}/delete",
            post(aa::delete_destination),
        )
        .route(
            "/admin/alarms/destinations/{id}/test",
            post(aa::test_destination),
        )
        .route("/admin/alarms/lists", post(aa::add_list))
        .route("/admin/alarms/lists/{id}/members", post(aa::set_members))
        .route("/admin/alarms/lists/{id}/delete", post(aa::delete_list))
}

/// The alarm routes under `/api` (see [`crate::api::alarms`]).
fn alarm_api_routes() -> Router<Web> {
    use crate::api::alarms as al;
    Router::new()
        .route(
            "/devices/{id}/alarm-rules",
            get(al::list_rules).post(al::post_rule),
        )
        .route(
            "/devices/{id}/alarm-rules/{rule}",
            put(al::put_rule).delete(al::del_rule),
        )
        .route(
            "/devices/{id}/alarm-rules/{rule}/shelve",
            post(al::post_shelve),
        )
        .route("/devices/{id}/alarms", get(al::device_alarms))
        .route("/devices/{id}/notifications", get(al::device_notifications))
        .route("/alarms", get(al::list_alarms))
        .route("/alarms/{id}/ack", post(al::post_ack))
        .route("/alarms/{id}/notifications", get(al::alarm_notifications))
        .route("/alarm-templates", get(al::list_templates))
        .route(
            "/alarm-destinations",
            get(al::list_destinations).post(al::post_destination),
        )
        .route("/alarm-destinations/{id}", delete(al::del_destination))
        .route(
            "/alarm-destinations/{id}/test",
            get(al::get_tests).post(al::post_test),
        )
        .route("/alarm-lists", get(al::list_lists).post(al::post_list))
        .route("/alarm-lists/{id}", put(al::put_list).delete(al::del_list))
}

/// Every page and API route, with the security layers.
pub fn router(api: Api, opts: WebOptions) -> Router {
    let limit = opts.max_body_bytes;
    let hsts = opts.hsts;
    let web = Web::new(api, opts);
    use crate::api as a;
    let api_routes = Router::new()
        .route("/me", get(a::me::me))
        .route("/devices", get(a::devices::list))
        .route(
            "/devices/{id}",
            get(a::devices::get).patch(a::devices::patch),
        )
        .route("/devices/{id}/telemetry", get(a::telemetry::series))
        .route("/devices/{id}/telemetry.csv", get(a::telemetry::csv))
        .route("/devices/{id}/channels", get(a::channels::list))
        .route(
            "/devices/{id}/channels/{index}/series",
            get(a::channels::series),
        )
        .route(
            "/devices/{id}/config",
            get(a::config::get).put(a::config::put),
        )
        .route(
            "/devices/{id}/schedule",
            get(a::schedules::get).put(a::schedules::put),
        )
        .route(
            "/devices/{id}/commands",
            get(a::commands::list).post(a::commands::queue_cmd),
        )
        .route("/devices/{id}/usage", get(a::usage::usage))
        .route("/audit", get(a::audit::list))
        .route("/tokens", get(a::tokens::list).post(a::tokens::create))
        .route("/tokens/{id}", delete(a::tokens::delete))
        .route("/users", get(a::users::list).post(a::users::create))
        .route("/users/{id}", delete(a::users::delete))
        .route(
            "/templates",
            get(a::templates::list).post(a::templates::create),
        )
        .route("/templates/check", post(a::templates::check))
        .route(
            "/templates/{id}",
            get(a::templates::get)
                .put(a::templates::update)
                .delete(a::templates::delete),
        )
        .route("/templates/{id}/apply", post(a::templates::apply))
        .route("/sites", get(a::sites::list).post(a::sites::create))
        .route("/sites/{id}", get(a::sites::get).delete(a::sites::delete))
        .route(
            "/sites/{id}/members/{user}",
            put(a::sites::grant).delete(a::sites::revoke),
        )
        .route("/sites/{id}/devices", put(a::sites::assign))
        .merge(alarm_api_routes())
        .route("/sites/{id}/energy", get(a::energy::get_energy))
        .route("/sites/{id}/energy.csv", get(a::energy::get_energy_csv))
        .route(
            "/sites/{id}/tariff",
            get(a::energy::get_tariff)
                .put(a::energy::put_tariff)
                .delete(a::energy::delete_tariff),
        )
        .route("/sites/{id}/time_zone", put(a::energy::put_time_zone))
        .route("/openapi.json", get(a::openapi::document))
        .fallback(a::me::not_found);
    let router = Router::new()
        .route("/", get(login::index))
        .route("/login", post(login::login))
        .route("/logout", post(login::logout))
        .route("/dashboard", get(dashboard::page))
        .route("/devices/{id}", get(device::page))
        .route("/devices/{id}/events", get(events::device_events))
        .route("/devices/{id}/setpoint", post(device::setpoint))
        .route("/devices/{id}/rename", post(device::rename_form))
        .route("/devices/bulk", post(bulk::apply))
        .route("/devices/{id}/command", post(device::command))
        .route("/devices/{id}/export.csv", get(export::page_csv))
        .route(
            "/devices/{id}/configure",
            get(configure::page).post(configure::save),
        )
        .route(
            "/devices/{id}/schedules",
            get(schedules::page).post(schedules::save),
        )
        .route("/sites/{id}", get(site::page))
        .route("/sites/{id}/time_zone", post(site::time_zone))
        .route("/sites/{id}/tariff", post(site::tariff))
        .route("/sites/{id}/tariff/delete", post(site::delete_tariff))
        .route("/sites/{id}/energy.csv", get(site::energy_csv))
        .route("/templates", get(templates::list))
        .route("/templates/{id}", get(templates::page))
        .route("/templates/{id}/apply", post(templates::apply))
        .route(
            "/templates/new",
            get(template_editor::new_page).post(template_editor::create),
        )
        .route("/templates/check", post(template_editor::check))
        .route(
            "/templates/{id}/edit",
            get(template_editor::edit_page).post(template_editor::update),
        )
        .route(
            "/templates/{id}/delete",
            get(template_editor::delete_page).post(template_editor::delete),
        )
        .route("/audit", get(audit_page::page))
        .route("/account", get(account::page))
        .route("/account/password", post(account::password))
        .route("/account/tokens", post(account::create_token))
        .route("/account/tokens/{id}/delete", post(account::delete_token))
        .route("/admin", get(admin::page))
        .route("/admin/users", post(admin::create_user_form))
        .route("/admin/users/{id}/delete", post(admin::delete_user_form))
        .route("/admin/sites", post(admin::create_site_form))
        .route("/admin/sites/{id}/delete", post(admin::delete_site_form))
        .route("/admin/members", post(admin::membership))
        .route("/admin/assign", post(admin::assign_form))
        .merge(alarm_page_routes())
        .route("/static/{file}", get(assets::serve))
        .nest("/api", api_routes)
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn(headers::security_headers))
        .with_state(web);
    if hsts {
        router.layer(axum::middleware::from_fn(headers::hsts))
    } else {
        router
    }
}
