//! A real `clickhouse-server` for the sink tests: started from a config written to a temp dir (listening
//! on 127.0.0.1, free ports, data, logs and users under the dir), stopped by PID — also when a test panics.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The password of the `writer` user; `default` has none, `tiny` may use 1000 bytes of memory per query.
pub const PASSWORD: &str = "ch-pass-91c2";

/// One `clickhouse-server` process and its directory.
pub struct ClickHouse {
    dir: tempfile::TempDir,
    pub http_port: u16,
    child: Option<Child>,
}

impl ClickHouse {
    /// Starts a server on two free ports. A port found free can be taken by another process before the
    /// server binds it (tests run in parallel), so a start that fails with "Address already in use" is
    /// retried on new ports, up to three times.
    pub fn start() -> ClickHouse {
        for attempt in 1.. {
            match Self::try_start() {
                Ok(ch) => return ch,
                Err(e) if attempt < 3 && e.contains("Address already in use") => continue,
                Err(e) => panic!("{e}"),
            }
        }
        unreachable!()
    }

    fn try_start() -> Result<ClickHouse, String> {
        let dir = tempfile::tempdir().unwrap();
        // Both listeners are held until both ports are known, so the two cannot be the same port.
        let (http, tcp) = (free_listener(), free_listener());
        let port = |l: &std::net::TcpListener| l.local_addr().unwrap().port();
        let (http_port, tcp_port) = (port(&http), port(&tcp));
        drop((http, tcp));
        let root = dir.path().display().to_string();
        let config = format!(
            r#"<?xml version="1.0"?>
<yandex>
  <logger><level>information</level><log>{root}/server.log</log><errorlog>{root}/server.err.log</errorlog></logger>
  <listen_host>127.0.0.1</listen_host>
  <http_port>{http_port}</http_port>
  <tcp_port>{tcp_port}</tcp_port>
  <path>{root}/data/</path>
  <tmp_path>{root}/tmp/</tmp_path>
  <user_files_path>{root}/user_files/</user_files_path>
  <format_schema_path>{root}/format_schemas/</format_schema_path>
  <users_config>{root}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>67108864</mark_cache_size>
  <keep_alive_timeout>1</keep_alive_timeout>
</yandex>
"#
        );
        let user = |name: &str, password: &str, profile: &str| {
            format!("<{name}><password>{password}</password><networks><ip>127.0.0.1</ip></networks><profile>{profile}</profile><quota>default</quota></{name}>")
        };
        let users = format!(
            r#"<?xml version="1.0"?>
<yandex>
  <profiles><default></default><tiny><max_memory_usage>1000</max_memory_usage></tiny></profiles>
  <users>{}{}{}</users>
  <quotas><default></default></quotas>
</yandex>
"#,
            user("default", "", "default"),
            user("writer", PASSWORD, "default"),
            user("tiny", "", "tiny"),
        );
        std::fs::write(dir.path().join("config.xml"), config).unwrap();
        std::fs::write(dir.path().join("users.xml"), users).unwrap();
        let mut ch = ClickHouse {
            dir,
            http_port,
            child: None,
        };
        ch.try_spawn()?;
        Ok(ch)
    }

    /// Starts the server (again) and waits until `GET /ping` answers.
    pub fn spawn(&mut self) {
        if let Err(e) = self.try_spawn() {
            panic!("{e}");
        }
    }

    fn try_spawn(&mut self) -> Result<(), String> {
        let (program, args) = server_binary();
        let config = self.dir.path().join("config.xml");
        let child = Command::new(program)
            .args(args)
            .arg(format!("--config-file={}", config.display()))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(self.dir.path().join("stdout.log")).unwrap())
            .stderr(std::fs::File::create(self.dir.path().join("stderr.log")).unwrap())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while self
            .http("GET", "/ping", "")
            .is_none_or(|(status, body)| status != 200 || body != "Ok.\n")
        {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return Err(format!(
                    "clickhouse-server exited with {status}: {}",
                    self.log_tail()
                ));
            }
            assert!(
                Instant::now() < deadline,
                "clickhouse-server did not answer /ping: {}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// Kills the server by its PID and reaps it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Runs `sql` as the default user; panics unless ClickHouse answers 200.
    pub fn query(&self, sql: &str) -> String {
        let (status, body) = self.http("POST", "/", sql).expect("clickhouse answers");
        assert_eq!(status, 200, "{sql}: {body}");
        body
    }

    /// One HTTP/1.0 exchange (the server closes the connection after it).
    fn http(&self, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.http_port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
        write!(
            s,
            "{method} {path} HTTP/1.0\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        let (head, body) = text.split_once("\r\n\r\n")?;
        let status = head.split_whitespace().nth(1)?.parse().ok()?;
        Some((status, body.to_owned()))
    }

    fn log_tail(&self) -> String {
        let text =
            std::fs::read_to_string(self.dir.path().join("server.err.log")).unwrap_or_default();
        text.lines().rev().take(20).collect::<Vec<_>>().join("\n")
    }
}

impl Drop for ClickHouse {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The installed server, or a failure that says how to install it: this test never skips.
fn server_binary() -> (PathBuf, &'static [&'static str]) {
    for (path, args) in [
        ("/usr/sbin/clickhouse-server", &[][..]),
        ("/usr/bin/clickhouse-server", &[]),
        ("/usr/bin/clickhouse", &["server"]),
    ] {
        if std::path::Path::new(path).exists() {
            return (path.into(), args);
        }
    }
    panic!("clickhouse-server is not installed: run tests/run.sh (it installs the Debian package clickhouse-server)");
}

/// A port that was free a moment ago.
fn free_listener() -> std::net::TcpListener {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap()
}

impl ClickHouse {
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}
