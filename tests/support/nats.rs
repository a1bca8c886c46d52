//! A real `nats-server` (the Debian package, 2.9.10) for the tests: started from a config written to a temp
//! dir (JetStream store under it, a free loopback port, cluster routes if asked), stopped by PID — also when
//! a test panics — and a reader that takes a JetStream stream back message by message.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream::LastRawMessageErrorKind};

pub fn nats_server_bin() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs = std::env::split_paths(&path).chain(["/usr/sbin".into(), "/usr/bin".into()]);
    dirs.find(|d| d.join("nats-server").is_file())
        .map(|d| d.join("nats-server"))
        .expect("nats-server is not installed: run tests/run.sh (installs the Debian package nats-server)")
}

pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// One nats-server process; killed (SIGKILL) when dropped.
pub struct Server {
    pub name: String,
    pub port: u16,
    conf: PathBuf,
    child: Option<Child>,
    starts: u32,
}

impl Server {
    /// Writes `<dir>/<name>.conf` (JetStream under `<dir>/<name>`, cluster routes if any) and starts it.
    pub fn start(dir: &Path, name: &str, cluster: Option<(u16, Vec<u16>)>) -> Server {
        let port = free_port();
        let store = dir.join(name);
        let mut conf = format!(
            "server_name: {name}\nlisten: 127.0.0.1:{port}\njetstream {{ store_dir: {store:?} }}\n"
        );
        if let Some((listen, peers)) = cluster {
            let routes: Vec<_> = peers
                .iter()
                .map(|p| format!("nats-route://127.0.0.1:{p}"))
                .collect();
            let routes = routes.join(", ");
            conf += &format!(
                "cluster {{ name: tg, listen: 127.0.0.1:{listen}, routes: [{routes}] }}\n"
            );
        }
        let conf_path = dir.join(format!("{name}.conf"));
        std::fs::write(&conf_path, conf).unwrap();
        let (name, child, starts) = (name.to_owned(), None, 0);
        let mut server = Server {
            name,
            port,
            conf: conf_path,
            child,
            starts,
        };
        server.restart();
        server
    }

    /// Starts the process (same port, same store dir) and waits (at most 15 s) for "Server is ready" in
    /// its log. Blocks: call it through `tokio::task::block_in_place` from a test that serves requests.
    pub fn restart(&mut self) {
        self.starts += 1;
        let log = self.conf.with_extension(format!("{}.log", self.starts));
        let mut cmd = Command::new(nats_server_bin());
        cmd.arg("-c").arg(&self.conf).stdout(Stdio::null());
        let child = cmd.stderr(std::fs::File::create(&log).unwrap()).spawn();
        let child = self.child.insert(child.expect("spawn nats-server"));
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("Server is ready") {
                return;
            }
            let running = child.try_wait().unwrap().is_none();
            assert!(
                running && Instant::now() < deadline,
                "{} did not start: {text}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, then reaps the process.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `127.0.0.1:<port>`, what a client connects to.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `nats://127.0.0.1:<port>`, the form of a `[[sinks]] type = "nats"` url.
    pub fn url(&self) -> String {
        format!("nats://{}", self.addr())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What the stream holds for one `Nats-Msg-Id`: the subject and payload of its first copy, and how many
/// messages carry that id.
#[derive(Debug, Clone)]
pub struct Stored {
    pub subject: String,
    pub payload: Vec<u8>,
    pub copies: usize,
}

/// A stream read back by sequence through the JetStream API, incrementally: [`StreamReader::catch_up`]
/// reads only what was stored since its last call, so a test can check the stream often.
pub struct StreamReader {
    stream: jetstream::stream::Stream,
    next_seq: u64,
    /// By `Nats-Msg-Id`.
    pub by_id: HashMap<String, Stored>,
}

impl StreamReader {
    /// Connects to `addr` (`host:port`) and finds `stream`; nothing is read yet.
    pub async fn open(addr: &str, stream: &str) -> StreamReader {
        let client = async_nats::connect(addr)
            .await
            .expect("connect to nats-server");
        let stream = jetstream::new(client)
            .get_stream(stream)
            .await
            .unwrap_or_else(|e| panic!("stream {stream:?}: {e}"));
        StreamReader {
            stream,
            next_seq: 1,
            by_id: HashMap::new(),
        }
    }

    /// Reads the messages stored since the last call; the stream's message count as of this call (every
    /// message read has `Nats-Msg-Id`). Each request is bounded by the client's request timeout.
    pub async fn catch_up(&mut self) -> u64 {
        let state = self.stream.info().await.expect("stream info").state.clone();
        for seq in self.next_seq.max(state.first_sequence)..=state.last_sequence {
            let m = match self.stream.get_raw_message(seq).await {
                Ok(m) => m,
                Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => continue,
                Err(e) => panic!("message {seq}: {e}"),
            };
            let id = m.headers.get("Nats-Msg-Id").expect("Nats-Msg-Id");
            let stored = self.by_id.entry(id.to_string()).or_insert(Stored {
                subject: m.subject.to_string(),
                payload: m.payload.to_vec(),
                copies: 0,
            });
            stored.copies += 1;
        }
        self.next_seq = self.next_seq.max(state.last_sequence + 1);
        state.messages
    }

    /// The stream's info as of the last [`StreamReader::catch_up`] (or [`StreamReader::open`]).
    pub fn info(&self) -> &jetstream::stream::Info {
        self.stream.cached_info()
    }

    /// Messages read so far, counting every copy.
    pub fn messages(&self) -> u64 {
        self.by_id.values().map(|s| s.copies as u64).sum()
    }
}

/// The whole of `stream` on the server at `addr`, by `Nats-Msg-Id`; checks that every message was read.
pub async fn read_stream(addr: &str, stream: &str) -> HashMap<String, Stored> {
    let mut reader = StreamReader::open(addr, stream).await;
    let messages = reader.catch_up().await;
    assert_eq!(reader.messages(), messages, "messages read vs stream state");
    reader.by_id
}

/// A core NATS subscriber that counts every message published on a subject by its `Nats-Msg-Id`, copies
/// included: JetStream keeps one per id, so `published - distinct` is what a sink re-sent and the stream
/// dropped as a duplicate. It speaks the text protocol on a plain socket in its own thread (the tests
/// have no `futures` crate to poll an async-nats subscriber), and stops when dropped. It sees only what
/// was published while it was connected: it does not survive a restart of the server.
pub struct Tap {
    seen: Arc<Mutex<HashMap<String, usize>>>,
    socket: TcpStream,
    thread: Option<JoinHandle<()>>,
}

impl Tap {
    /// Subscribes to `subject` (wildcards allowed) on `addr`; returns once the server confirmed it (PONG).
    pub fn start(addr: &str, subject: &str) -> Tap {
        let mut socket = TcpStream::connect(addr).expect("connect to nats-server");
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut reader = BufReader::new(socket.try_clone().unwrap());
        let hello =
            r#"{"verbose":false,"pedantic":false,"headers":true,"protocol":1,"name":"tap"}"#;
        write!(socket, "CONNECT {hello}\r\nSUB {subject} 1\r\nPING\r\n").unwrap();
        loop {
            let line = read_line(&mut reader).expect("nats-server answers the tap");
            assert!(!line.starts_with("-ERR"), "tap: {line}");
            if line == "PONG" {
                break;
            }
        }
        socket.set_read_timeout(None).unwrap();
        let seen = Arc::new(Mutex::new(HashMap::new()));
        let (counts, mut out) = (seen.clone(), socket.try_clone().unwrap());
        let thread = std::thread::spawn(move || {
            while let Some(line) = read_line(&mut reader) {
                let words: Vec<&str> = line.split(' ').collect();
                let id = match words[0] {
                    "HMSG" | "MSG" => read_msg(&mut reader, &words),
                    "PING" => {
                        let _ = out.write_all(b"PONG\r\n");
                        continue;
                    }
                    _ => continue,
                };
                let Some(id) = id else { return };
                *counts.lock().unwrap().entry(id).or_insert(0) += 1;
            }
        });
        let thread = Some(thread);
        Tap {
            seen,
            socket,
            thread,
        }
    }

    /// Messages seen so far (every copy) and distinct ids among them.
    pub fn published(&self) -> (usize, usize) {
        let seen = self.seen.lock().unwrap();
        (seen.values().sum(), seen.len())
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        let _ = self.socket.shutdown(Shutdown::Both);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One protocol line without its CRLF; `None` at the end of the connection.
fn read_line(reader: &mut impl BufRead) -> Option<String> {
    let mut line = String::new();
    match reader.read_line(&mut line) {
        Ok(n) if n > 0 => Some(line.trim_end().to_owned()),
        _ => None,
    }
}

/// The body of `HMSG <subject> <sid> [reply] <header bytes> <total bytes>` or `MSG <subject> <sid> [reply]
/// <bytes>`, read off the socket; its `Nats-Msg-Id` (empty without one), `None` if the connection ended.
fn read_msg(reader: &mut impl Read, words: &[&str]) -> Option<String> {
    let total: usize = words.last()?.parse().ok()?;
    let mut body = vec![0; total + 2];
    reader.read_exact(&mut body).ok()?;
    let headers = match words[0] {
        "HMSG" => &body[..words[words.len() - 2].parse().ok()?],
        _ => &[][..],
    };
    let headers = String::from_utf8_lossy(headers);
    let id = headers.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("Nats-Msg-Id")
            .then(|| value.trim().to_owned())
    });
    Some(id.unwrap_or_default())
}
