//! The `clickhouse` sink against a real `clickhouse-server` (the Debian 12 package, 18.16), started per
//! test by `support/clickhouse.rs`. Without the server installed these tests fail, telling to run
//! `tests/run.sh`; they never skip.

#[path = "support/clickhouse.rs"]
mod server;

use std::time::Duration;

use server::{ClickHouse, PASSWORD};
use tollgate::config::{
    BatchLimits, ClickHouseConfig, Endpoint, RetryPolicy, SinkConfig, SinkKind, TlsClientFiles,
};
use tollgate::keys::Secret;
use tollgate::sink::clickhouse::ClickHouseSink;
use tollgate::sink::{DeadReason, RetryReason, SendError, Sink, SinkBatch};
use tollgate::spool::{Route, StoredRecord};

/// The table the sink writes to, as documented in `docs/sinks.md`.
const DDL: &str = "CREATE TABLE tollgate.events (site String, event_id String, received_ms Int64, type String, \
    record String) ENGINE = ReplacingMergeTree() PARTITION BY toYYYYMM(toDate(intDiv(received_ms, 1000))) \
    ORDER BY (site, event_id)";

/// A server with the `tollgate` database and its `events` table.
fn server() -> ClickHouse {
    let ch = ClickHouse::start();
    ch.query("CREATE DATABASE tollgate");
    ch.query(DDL);
    ch
}

fn sink(
    ch: &ClickHouse,
    user: Option<&str>,
    password: Option<&str>,
    table: &str,
) -> ClickHouseSink {
    let password = password.map(|p| {
        let file = ch.dir().join("password");
        std::fs::write(&file, p).unwrap();
        Secret::from_file(&file).unwrap()
    });
    let config = ClickHouseConfig {
        endpoint: Endpoint {
            https: false,
            host: "127.0.0.1".into(),
            port: ch.http_port,
            path: "/".into(),
        },
        tls: TlsClientFiles::default(),
        database: "tollgate".into(),
        table: table.into(),
        user: user.map(str::to_owned),
        password,
    };
    let cfg = SinkConfig {
        name: "ch".into(),
        region: None,
        kind: SinkKind::ClickHouse(config.clone()),
        batch: BatchLimits {
            events: 1000,
            bytes: 1 << 20,
            max_age: Duration::from_secs(1),
        },
        retry: RetryPolicy {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(30),
        },
        timeout: Duration::from_secs(10),
    };
    ClickHouseSink::new(&cfg, &config).unwrap()
}

fn records(site: &str, n: usize) -> Vec<StoredRecord> {
    (0..n)
        .map(|i| StoredRecord {
            site: site.into(),
            event_id: format!("01J-{site}-{i}"),
            received_ms: 1_732_262_400_000 + i as i64,
            route: Route::All,
            payload: format!(
                r#"{{"type":"cart_update","cart":{{"value":{i}.5,"note":"a \"q\" \\ é"}}}}"#
            )
            .into_bytes(),
        })
        .collect()
}

async fn send(
    sink: &mut ClickHouseSink,
    id: &str,
    records: &[StoredRecord],
) -> Result<(), SendError> {
    sink.send(SinkBatch { id, records }).await
}

fn retry_reason(r: Result<(), SendError>) -> (RetryReason, String) {
    match r {
        Err(SendError::Retry { reason, detail, .. }) => (reason, detail),
        other => panic!("expected a retry, got {other:?}"),
    }
}

#[tokio::test]
async fn stores_rows_and_a_retried_batch_collapses() {
    let ch = server();
    let mut sink = sink(&ch, Some("writer"), Some(PASSWORD), "events");
    let mut batch = records("shop_1", 2);
    batch.extend(records("shop_2", 1));
    send(&mut sink, "ch-0-0", &batch).await.unwrap();

    let rows = ch.query(
        "SELECT site, event_id, toString(received_ms) AS ms, type, record FROM tollgate.events \
         ORDER BY site, event_id FORMAT JSONEachRow",
    );
    let rows: Vec<serde_json::Value> = rows
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3);
    for (row, rec) in rows.iter().zip(&batch) {
        assert_eq!(row["site"], rec.site.as_str());
        assert_eq!(row["event_id"], rec.event_id.as_str());
        assert_eq!(row["ms"], rec.received_ms.to_string().as_str());
        assert_eq!(row["type"], "cart_update");
        assert_eq!(
            row["record"].as_str().unwrap().as_bytes(),
            &rec.payload[..],
            "the event, byte for byte"
        );
    }

    // The same batch again (a retry after a lost answer), after the server closed the idle kept-alive
    // connection (`keep_alive_timeout` is 1 s): the sink reconnects; the rows are stored twice, read once.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    send(&mut sink, "ch-0-0", &batch).await.unwrap();
    assert_eq!(ch.query("SELECT count() FROM tollgate.events FINAL"), "3\n");
    ch.query("OPTIMIZE TABLE tollgate.events FINAL");
    assert_eq!(
        ch.query("SELECT count() FROM tollgate.events"),
        "3\n",
        "merges collapse the duplicates"
    );
}

#[tokio::test]
async fn classifies_what_clickhouse_refuses() {
    let ch = server();
    ch.query(
        &DDL.replace("tollgate.events", "tollgate.strict")
            .replace("type String", "type UInt8"),
    );
    let batch = records("shop_1", 2);

    // Rows ClickHouse cannot read as the table's columns (18.16 says so with a 500): dead-lettered.
    let err = send(&mut sink(&ch, None, None, "strict"), "ch-1-0", &batch)
        .await
        .unwrap_err();
    let SendError::Dead {
        reason: DeadReason::Invalid,
        detail,
    } = err
    else {
        panic!("{err:?}")
    };
    assert!(
        detail.contains("27") && !detail.contains("cart_update"),
        "the code, not the rows: {detail}"
    );

    // Setup problems an operator fixes: retried, not dead-lettered; the password never shows.
    for (user, password, table, code) in [
        (None, None, "missing", "60"),
        (Some("writer"), Some("wrong-91c2"), "events", "193"),
        (Some("nobody"), None, "events", "192"),
        // A server out of memory for the query: retried too.
        (Some("tiny"), None, "events", "241"),
    ] {
        let (reason, detail) =
            retry_reason(send(&mut sink(&ch, user, password, table), "ch-1-0", &batch).await);
        assert_eq!(reason, RetryReason::Server, "{detail}");
        assert!(
            detail.contains(code) && !detail.contains("wrong-91c2"),
            "{detail}"
        );
    }
    assert_eq!(ch.query("SELECT count() FROM tollgate.events"), "0\n");
    assert_eq!(ch.query("SELECT count() FROM tollgate.strict"), "0\n");
}

#[tokio::test]
async fn a_stopped_server_is_retried_and_a_restarted_one_takes_the_batch() {
    let mut ch = server();
    let mut sink = sink(&ch, None, None, "events");
    send(&mut sink, "ch-2-0", &records("shop_1", 1))
        .await
        .unwrap();

    ch.stop();
    let batch = records("shop_2", 2);
    let (reason, _) = retry_reason(send(&mut sink, "ch-2-1", &batch).await);
    assert_eq!(reason, RetryReason::Connect);

    ch.spawn();
    send(&mut sink, "ch-2-1", &batch).await.unwrap();
    let by_site =
        ch.query("SELECT site, count() FROM tollgate.events FINAL GROUP BY site ORDER BY site");
    assert_eq!(by_site, "shop_1\t1\nshop_2\t2\n");
}
