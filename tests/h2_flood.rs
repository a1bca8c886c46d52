//! HTTP/2 floods stay bounded, with hand-written frames over real TLS:
//! - rapid reset (CVE-2023-44487): a client opening streams and cancelling each at once is told to stop
//!   (`GOAWAY ENHANCE_YOUR_CALM`) and cut off long before its 10,000 streams are through;
//! - a stream flood: a client opening more streams than `limits.h2_max_concurrent_streams` without finishing
//!   any gets the extra ones refused, not queued, and is cut off after 100 refusals;
//!
//! In both cases another client is served meanwhile.

mod common;

use std::time::Duration;

use common::h2::{stream_frame, END_HEADERS, HEADERS, RST_STREAM};
use common::{event, Client, Fixture, Proto};
use tokio::io::AsyncWriteExt;

/// A HEADERS block for `POST /v1/events` (HPACK: indexed `:method POST` and `:scheme https`, literal `:path`
/// and `:authority` without indexing), no END_STREAM: the stream stays open for a body.
fn post_headers() -> Vec<u8> {
    let mut block = vec![0x83, 0x87];
    for (index, value) in [(4u8, "/v1/events"), (1u8, "localhost")] {
        block.push(index);
        block.push(value.len() as u8);
        block.extend_from_slice(value.as_bytes());
    }
    block
}

/// CANCEL, as a browser's aborted fetch sends it.
const CANCEL: [u8; 4] = [0, 0, 0, 8];
const ENHANCE_YOUR_CALM: u32 = 0xb;

async fn served_meanwhile(fx: &Fixture, addr: std::net::SocketAddr) {
    let mut c = Client::connect(addr, &fx.ca_pem, Proto::H2).await;
    let reply = c.post("application/json", event("calm").to_string()).await;
    assert_eq!(reply.status, 204, "another client is served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_is_cut_off() {
    let fx = Fixture::new("");
    let running = fx.start().await;
    let (reader, mut wr) = common::h2::open(&fx, running.public_addr).await;
    let headers = post_headers();
    let mut sent = 0u32;
    for i in 0..10_000u32 {
        let stream = 2 * i + 1;
        let mut burst = stream_frame(HEADERS, END_HEADERS, stream, &headers);
        burst.extend(stream_frame(RST_STREAM, 0, stream, &CANCEL));
        if wr.write_all(&burst).await.is_err() {
            break;
        }
        sent += 1;
    }
    let _ = wr.shutdown().await;
    let seen = tokio::time::timeout(Duration::from_secs(10), reader)
        .await
        .expect("the server closed the connection")
        .unwrap();
    println!("rapid reset: {sent} streams written before the server stopped reading; {seen:?}");
    assert!(seen.goaway, "{seen:?}");
    assert_eq!(seen.goaway_code, Some(ENHANCE_YOUR_CALM), "{seen:?}");
    served_meanwhile(&fx, running.public_addr).await;
    running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_flood_is_refused_beyond_the_limit() {
    // Streams left without a body end after 1 s, and then the idle connection: the test reads to the end.
    let fx = Fixture::new(
        "[limits]\nh2_max_concurrent_streams = 10\n\
         [timeouts]\nbody_read_ms = 1000\nkeepalive_idle_ms = 1000\n",
    );
    let running = fx.start().await;
    let (reader, mut wr) = common::h2::open(&fx, running.public_addr).await;
    let headers = post_headers();
    // 200 streams opened, none finished: at most 10 may be open at once.
    for i in 0..200u32 {
        let stream = 2 * i + 1;
        wr.write_all(&stream_frame(HEADERS, END_HEADERS, stream, &headers))
            .await
            .unwrap();
    }
    wr.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    served_meanwhile(&fx, running.public_addr).await;
    let seen = tokio::time::timeout(Duration::from_secs(20), reader)
        .await
        .expect("the connection ends")
        .unwrap();
    drop(wr);
    println!("stream flood: {seen:?}");
    // Streams beyond the 10 are refused one by one (RST_STREAM), and after 100 refusals hyper's
    // `max_local_error_reset_streams` ends the connection with ENHANCE_YOUR_CALM: nothing queues up.
    assert!(
        seen.resets >= 90,
        "streams beyond the limit are refused: {seen:?}"
    );
    assert_eq!(seen.goaway_code, Some(ENHANCE_YOUR_CALM), "{seen:?}");
    running.stop().await.unwrap();
}
