//! `[beacon]`: where the browser routes live. `script_path` moves `beacon.js` away from paths that ad-block
//! lists know; the pixel and the event route stay where `beacon.js` expects them.

use serde::Deserialize;

use super::validate::Errors;

/// `[beacon]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BeaconFile {
    /// The path `beacon.js` is served at: `/` then letters, digits, `-`, `_`, `.` or `/`, ending in `.js`.
    pub script_path: String,
}

impl Default for BeaconFile {
    fn default() -> Self {
        Self {
            script_path: DEFAULT_SCRIPT_PATH.into(),
        }
    }
}

pub const DEFAULT_SCRIPT_PATH: &str = "/v1/beacon.js";

/// `[beacon]` in its runtime form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Beacon {
    pub script_path: String,
}

impl Default for Beacon {
    fn default() -> Self {
        Self {
            script_path: DEFAULT_SCRIPT_PATH.into(),
        }
    }
}

pub(super) fn beacon(f: &BeaconFile, errs: &mut Errors) -> Beacon {
    let p = &f.script_path;
    let shaped = p.starts_with('/')
        && p.ends_with(".js")
        && p.len() <= 128
        && !p.contains("//")
        && !p.contains("..")
        && p[1..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b));
    if !shaped {
        errs.push(
            "beacon.script_path",
            format!("{p:?} is not a path like \"/v1/beacon.js\" (letters, digits, - _ . /, ending in .js)"),
        );
    } else if crate::http::public::ROUTES.contains(&p.as_str()) {
        // The paths the public listener serves besides the script.
        errs.push("beacon.script_path", format!("{p:?} is another route"));
    }
    Beacon {
        script_path: p.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(p: &str) -> usize {
        let mut errs = Errors::default();
        beacon(
            &BeaconFile {
                script_path: p.into(),
            },
            &mut errs,
        );
        errs.0.len()
    }

    #[test]
    fn script_paths() {
        assert_eq!(check("/v1/beacon.js"), 0);
        assert_eq!(check("/assets/t-42.js"), 0);
        for bad in [
            "v1/b.js",
            "/b.css",
            "/a/../b.js",
            "/a//b.js",
            "/b c.js",
            "/v1/events",
            "/x.js?y",
        ] {
            assert_eq!(check(bad), 1, "{bad}");
        }
    }
}
