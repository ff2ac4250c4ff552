//! Running commands: with a deadline (the child is killed when it
//! overruns), inside a network namespace (`ip netns exec`, or a thread
//! moved in with setns), and polling for a condition.

use std::fs::File;
use std::os::fd::AsFd;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use nix::sched::{setns, CloneFlags};

use super::*;

/// The CLI under test.
pub const EMPTCP: &str = env!("CARGO_BIN_EXE_emptcp");

/// Whether the tests run in an emulated guest (QEMU TCG: scripts/kmatrix
/// sets EMPTCP_TEST_EMULATED), where everything is 10-50 times slower.
pub fn emulated() -> bool {
    std::env::var_os("EMPTCP_TEST_EMULATED").is_some()
}

/// How long one command may take: 30 s, 120 s in an emulated guest
/// (`EMPTCP_TEST_EMULATED`, set by scripts/kmatrix), where loading a walk
/// of many stages takes that long on a busy host.
pub(super) static CMD_TIMEOUT: std::sync::LazyLock<Duration> = std::sync::LazyLock::new(|| {
    if emulated() {
        Duration::from_secs(120)
    } else {
        Duration::from_secs(30)
    }
});

/// A finished command.
#[derive(Debug)]
pub struct Out {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub cmdline: String,
}

impl Out {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }
    /// Non-empty stderr lines. On a kernel without MPTCP, less the warning
    /// every `apply` there prints about it (the tests of one-line errors
    /// count the rest; tc_egress_set_backup_wire_v4 checks the warning).
    pub fn stderr_lines(&self) -> Vec<&str> {
        let no_mptcp = !kernel_has_mptcp();
        self.stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .filter(|l| {
                !(no_mptcp
                    && l.starts_with("emptcp: warning: ")
                    && l.contains("no net.mptcp sysctls"))
            })
            .collect()
    }
    /// Panics with everything the command said unless it succeeded.
    pub fn expect_ok(self) -> Out {
        assert!(
            self.ok(),
            "`{}` failed ({:?})\nstdout: {}\nstderr: {}",
            self.cmdline,
            self.code,
            self.stdout,
            self.stderr
        );
        self
    }
}

/// Runs a command with a deadline; the child is killed when it overruns.
pub fn try_run_env(
    prog: &str,
    args: &[&str],
    env: &[(&str, &str)],
    timeout: Duration,
) -> Result<Out, String> {
    let cmdline = format!("{prog} {}", args.join(" "));
    let mut cmd = Command::new(prog);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot run `{cmdline}`: {e}"))?;
    let pid = child.id() as libc::pid_t;
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(Ok(o)) => Ok(Out {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
            cmdline,
        }),
        Ok(Err(e)) => Err(format!("`{cmdline}`: {e}")),
        Err(_) => {
            // SAFETY: our own child, not yet reaped (its waiter is blocked).
            unsafe { libc::kill(pid, libc::SIGKILL) };
            Err(format!("`{cmdline}` did not finish within {timeout:?}"))
        }
    }
}

/// Runs a command (30 s deadline); panics only if it cannot run or hangs.
pub fn run(prog: &str, args: &[&str]) -> Out {
    try_run_env(prog, args, &[], *CMD_TIMEOUT).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs a command that must succeed; returns its stdout.
pub fn sh(prog: &str, args: &[&str]) -> String {
    run(prog, args).expect_ok().stdout
}

/// Runs a command inside a named network namespace (`ip netns exec`).
pub fn ns_run(ns: &str, prog: &str, args: &[&str]) -> Out {
    let mut a = vec!["netns", "exec", ns, prog];
    a.extend_from_slice(args);
    run("ip", &a)
}

/// Moves the calling thread (only it) into a named network namespace.
pub fn enter_netns(ns: &str) -> Result<(), String> {
    let f = File::open(format!("/run/netns/{ns}")).map_err(|e| format!("netns {ns}: {e}"))?;
    setns(f.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| format!("setns {ns}: {e}"))
}

/// Runs `f` on a fresh thread inside `ns`.
pub fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    let ns = ns.to_owned();
    thread::spawn(move || {
        enter_netns(&ns)?;
        f()
    })
    .join()
    .map_err(|_| "netns thread panicked".to_owned())?
}

/// Polls `f` until it returns Some or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > end {
            return None;
        }
        thread::sleep(Duration::from_millis(100));
    }
}
