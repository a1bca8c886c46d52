//! The real `tollgate` binary as a child process: started with a config, its bound addresses read from its
//! one stdout line, its stderr readable line by line, stopped by PID.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub struct Proc {
    pub child: Child,
    pub public: SocketAddr,
    pub redirect: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
    stderr: mpsc::Receiver<String>,
}

impl Proc {
    pub fn start(config: &Path) -> Proc {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .args(["run", "-c"])
            .arg(config)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = lines(child.stderr.take().unwrap());
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(
            line.starts_with("tollgate listening"),
            "unexpected first line {line:?}"
        );
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{name}=")))
                .and_then(|v| v.parse().ok())
        };
        Proc {
            public: field("public").unwrap(),
            redirect: field("redirect"),
            admin: field("admin"),
            child,
            stderr,
        }
    }

    pub fn pid(&self) -> String {
        self.child.id().to_string()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Blocks until a stderr line containing `needle` appears (or the process's stderr ends).
    pub fn wait_for_log(&self, needle: &str) -> bool {
        while let Ok(l) = self.stderr.recv_timeout(Duration::from_secs(30)) {
            if l.contains(needle) {
                return true;
            }
        }
        false
    }

    /// Everything the process wrote to stderr; call after it exited.
    pub fn stderr_text(&self) -> String {
        let mut out = Vec::new();
        // The reader thread ends at EOF, which disconnects the channel.
        while let Ok(l) = self.stderr.recv_timeout(Duration::from_secs(30)) {
            out.push(l);
        }
        out.join("\n")
    }

    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        self.child.wait().unwrap()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn lines(stderr: ChildStderr) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    rx
}
