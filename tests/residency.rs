//! Data residency through the real `tollgate check`: a route that sends one region's tenant to another
//! region's sink is refused with its path; the default route of a regional tenant takes only its region's
//! sinks; every sink key that does not apply to the sink's type is an error.

mod common;

use common::{check, Fixture};

const SINKS: &str = r#"
[[sinks]]
name = "file-eu"
type = "file"
region = "eu"
dir = "out-eu"
[[sinks]]
name = "file-us"
type = "file"
region = "us"
dir = "out-us"
"#;

fn with_tenant_route(fx: &Fixture, route: &str) {
    fx.edit_config(|t| t.replace("site = \"demo\"\n", &format!("site = \"demo\"\n{route}\n")));
}

#[test]
fn an_eu_tenant_routed_to_a_us_sink_is_refused_with_its_path() {
    let fx = Fixture::new(SINKS);
    with_tenant_route(&fx, "region = \"eu\"\nsinks = [\"file-eu\", \"file-us\"]");
    let (code, out) = check(&fx.config_path());
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("tenants[0].sinks[1]"), "{out}");
    assert!(out.contains("data residency"), "{out}");
    assert!(!out.contains("tenants[0].sinks[0]"), "{out}");
}

#[test]
fn a_regional_tenant_needs_a_sink_of_its_region() {
    let fx = Fixture::new(SINKS);
    with_tenant_route(&fx, "region = \"ap\"");
    let (code, out) = check(&fx.config_path());
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("tenants[0].sinks: no sink accepts"), "{out}");

    let fx = Fixture::new(SINKS);
    with_tenant_route(&fx, "region = \"eu\"");
    let (code, out) = check(&fx.config_path());
    assert_eq!(code, Some(0), "{out}");
}

#[test]
fn unknown_sinks_and_misplaced_keys_are_errors() {
    let fx = Fixture::new(
        r#"
[[sinks]]
name = "f"
type = "file"
table = "events"
[[sinks]]
name = "n"
type = "nats"
url = "http://127.0.0.1:4222"
[[sinks]]
name = "c"
type = "clickhouse"
url = "http://127.0.0.1:8123"
password_file = "missing-password"
"#,
    );
    with_tenant_route(&fx, "sinks = [\"f\", \"nope\"]");
    let (code, out) = check(&fx.config_path());
    assert_eq!(code, Some(1), "{out}");
    for expected in [
        "sinks[0].table: does not apply to type \"file\"",
        "sinks[1].url: \"http://127.0.0.1:4222\" is not nats://host:port",
        "sinks[2].password: cannot read",
        "tenants[0].sinks[1]: no sink named \"nope\"",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
}
