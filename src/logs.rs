//! Log lines on stderr: `[log] format = "human"` (tracing's text format) or `"json"`, one JSON object per
//! line: `ts_ms` (Unix ms), `level`, `target`, `message` and the event's fields, for log shippers.
//!
//! tracing-subscriber's own `json` feature needs the `tracing-serde` crate, which this build does not have
//! (offline); [`JsonLines`] is the same shape written with `serde_json`, a few dozen lines. What goes into a
//! line is only what the code logs: fields are chosen at each call site never to hold a secret or a client
//! address (bans are logged by subject).

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::registry::LookupSpan;

use crate::config::LogFormat;

/// Installs the global subscriber on stderr. `RUST_LOG` filters (default `info,rustls=error`); whatever it
/// says, rustls's per-handshake warning about an IP literal as SNI stays off: a client could make the gateway
/// write one line per handshake (`tls::hello` counts those instead).
pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,rustls=error".into())
        .add_directive(
            "rustls::msgs::handshake=error"
                .parse()
                .expect("a valid directive"),
        );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => builder.event_format(JsonLines).init(),
    }
}

/// One JSON object per event.
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let ts_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        writeln!(writer, "{}", line(event, ts_ms))
    }
}

/// The JSON object for `event` at `ts_ms`.
pub fn line(event: &Event<'_>, ts_ms: u64) -> Value {
    let meta = event.metadata();
    let mut m = Map::new();
    m.insert("ts_ms".into(), ts_ms.into());
    m.insert("level".into(), meta.level().as_str().into());
    m.insert("target".into(), meta.target().into());
    event.record(&mut Fields(&mut m));
    Value::Object(m)
}

struct Fields<'a>(&'a mut Map<String, Value>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buf {
        type Writer = Buf;
        fn make_writer(&'a self) -> Buf {
            self.clone()
        }
    }

    #[test]
    fn each_event_is_one_json_object_with_its_fields() {
        let buf = Buf::default();
        let sub = tracing_subscriber::fmt()
            .with_writer(buf.clone())
            .event_format(JsonLines)
            .finish();
        tracing::subscriber::with_default(sub, || {
            tracing::info!(generation = 3u64, trigger = "watch", sha256 = %"ab", "config \"reloaded\"");
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let v: Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["message"], "config \"reloaded\"");
        assert_eq!(v["generation"], 3);
        assert_eq!(v["trigger"], "watch");
        assert_eq!(v["sha256"], "ab");
        assert_eq!(text.lines().count(), 1);
    }
}
