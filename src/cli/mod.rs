//! The command line: `emptcp [-n NETNS] [-v] COMMAND`.

pub mod text;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::cli::text::quoted;
use crate::kernel::attach::XdpMode;

/// eBPF control framework for Linux Multipath TCP: attach chains of
/// selectors and actors to interfaces (XDP, TC) to steer MPTCP subflows.
#[derive(Debug, Parser)]
#[command(name = "emptcp", version, about, propagate_version = true)]
pub struct Cli {
    /// Work inside this network namespace (like `ip -n`); state stays in the host's bpffs
    #[arg(short = 'n', long = "netns", global = true, value_name = "NETNS")]
    pub netns: Option<String>,

    /// Print libbpf's log, and the whole verifier log when a load fails
    #[arg(short, long, global = true)]
    pub verbose: bool,

    /// bpffs directory holding emptcp's maps, links and state
    #[arg(long, global = true, env = "EMPTCP_STATE_DIR", default_value = crate::runtime::state::DEFAULT_DIR, value_name = "DIR")]
    pub state_dir: PathBuf,

    #[command(subcommand)]
    pub cmd: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, or atomically replace, the chains of a policy file
    Apply {
        /// Policy file (TOML)
        policy: PathBuf,
        /// Parse and plan only: print what would be attached
        #[arg(long)]
        dry_run: bool,
        /// XDP attach mode for new XDP chains
        #[arg(long, value_enum, default_value_t = XdpMode::Auto)]
        xdp_mode: XdpMode,
        /// The file is the whole desired state: chains, sets and maps it
        /// does not name are removed, in the same transaction
        #[arg(long)]
        prune: bool,
    },
    /// Apply a policy file and keep it applied, as a service in the foreground
    ///
    /// The file is applied as the whole desired state (as `apply --prune`).
    /// SIGHUP reads it again and applies it the same way, in one
    /// transaction: new chains attached, changed ones replaced atomically,
    /// chains, sets and maps no longer in it removed; a file that fails to
    /// parse or load is one logged line and changes nothing. SIGTERM or
    /// SIGINT removes what the file applied (with nothing else left, every
    /// pin of the state directory) and exits 0. One line per event on
    /// stderr. One `run` per state directory; `show`, `stats`, `events`,
    /// `set` and `map` work alongside it, `detach --all` is refused.
    Run {
        /// Policy file (TOML)
        policy: PathBuf,
        /// Serve `GET /metrics` (Prometheus text format) on this address
        #[arg(long, value_name = "ADDR:PORT")]
        metrics: Option<std::net::SocketAddr>,
        /// Leave the chains, sets and maps in place when stopping
        #[arg(long)]
        keep: bool,
    },
    /// Parse a policy and load its programs through the verifier; attach nothing
    Check {
        /// Policy file (TOML)
        policy: PathBuf,
    },
    /// List applied chains: device, hook, stages and per-stage counters
    Show {
        /// Only this chain
        name: Option<String>,
        /// JSON output
        #[arg(long)]
        json: bool,
    },
    /// Remove chains, with their links and pins
    Detach {
        /// The chain to remove
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        name: Option<String>,
        /// Remove every chain and all of emptcp's state
        #[arg(long)]
        all: bool,
    },
    /// Stream MPTCP connection and subflow events (get_connect, get_subflow)
    Events {
        /// JSON lines
        #[arg(long)]
        json: bool,
        /// Only events of this chain
        #[arg(long)]
        chain: Option<String>,
        /// Stop after this many events
        #[arg(long)]
        count: Option<usize>,
        /// Stop after this many seconds
        #[arg(long)]
        timeout: Option<f64>,
    },
    /// Per-connection and per-subflow metrics from `record`, and per-stage counters
    Stats {
        /// JSON output
        #[arg(long, conflicts_with = "format")]
        json: bool,
        /// Output format
        #[arg(long, value_parser = ["text", "prometheus"], default_value = "text")]
        format: String,
    },
    /// Change the elements of a named set at run time (no program is loaded)
    Set {
        #[command(subcommand)]
        op: TableOp,
    },
    /// Change the elements of a named map at run time (no program is loaded)
    Map {
        #[command(subcommand)]
        op: TableOp,
    },
    /// List every selector and actor with its parameters
    Catalog {
        /// JSON output
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): emptcp(1), or emptcp-COMMAND(1)
    Man {
        /// The command whose page to print (`run`, `apply`, …)
        command: Option<String>,
    },
}

/// What `emptcp set` and `emptcp map` do to a table's elements.
#[derive(Debug, Subcommand)]
pub enum TableOp {
    /// Add elements (set: KEY; map: KEY=VALUE, an existing KEY gets the new VALUE)
    Add {
        /// The set or map
        name: String,
        /// Elements (`10.0.0.1`, `10.0.0.0/24`, `10.0.0.1 . 10.0.0.2`,
        /// `10.0.0.1:1 . 10.0.0.2:80`, `443`; maps: `KEY=VALUE`)
        elements: Vec<String>,
        /// Also the elements of this file, one per line (`#` comments)
        #[arg(short, long, value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// Delete elements (by key); one that is not there deletes none
    Del {
        name: String,
        elements: Vec<String>,
        #[arg(short, long, value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// Print the elements
    List {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Remove every element (one swap: packets see the old or the empty table)
    Flush { name: String },
    /// Remove the table itself (refused while a chain uses it)
    Delete { name: String },
}

impl TableOp {
    pub fn name(&self) -> &str {
        match self {
            TableOp::Add { name, .. }
            | TableOp::Del { name, .. }
            | TableOp::List { name, .. }
            | TableOp::Flush { name }
            | TableOp::Delete { name } => name,
        }
    }
}

impl Cli {
    /// Checks the values clap takes as they come: a namespace name that is
    /// a name (netns.rs), chain names that can name a chain. Errors are one
    /// line, the value escaped and capped (text.rs).
    pub fn validate(&self) -> anyhow::Result<()> {
        if let Some(n) = &self.netns {
            crate::kernel::netns::check_name(n).map_err(|e| anyhow::anyhow!("-n: {e}"))?;
        }
        let name = match &self.cmd {
            Command::Show { name, .. } | Command::Detach { name, .. } => name.as_deref(),
            Command::Events { chain, .. } => chain.as_deref(),
            _ => None,
        };
        if let Command::Set { op } | Command::Map { op } = &self.cmd {
            if !crate::policy::values::valid_name(op.name()) {
                anyhow::bail!(
                    "no set or map called {} (names are 1-32 characters of [a-z0-9_-])",
                    quoted(op.name())
                );
            }
        }
        if let Some(n) = name.filter(|n| !crate::policy::values::valid_name(n)) {
            anyhow::bail!(
                "no chain called {} (chain names are 1-32 characters of [a-z0-9_-])",
                quoted(n)
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(args: &[&str]) -> String {
        let cli = Cli::try_parse_from(args).expect("clap accepts it");
        cli.validate().expect_err("refused").to_string()
    }

    #[test]
    fn refuses_names_that_name_nothing() {
        assert_eq!(
            err(&["emptcp", "-n", "../x", "show"]),
            "-n: network namespace name \"../x\": not a name (ip netns list)"
        );
        let long = "a".repeat(10 << 20);
        let e = err(&["emptcp", "detach", &long]);
        assert!(e.len() < 300, "{}", e.len());
        assert!(e.starts_with("no chain called \"aaaa"), "{e}");
        assert_eq!(
            err(&["emptcp", "show", "x\u{202e}y"]),
            "no chain called \"x\\u{202e}y\" (chain names are 1-32 characters of [a-z0-9_-])"
        );
        assert!(err(&["emptcp", "events", "--chain", "A"]).starts_with("no chain called \"A\""));
        let ok = Cli::try_parse_from(["emptcp", "-n", "client", "detach", "wifi-backup"]);
        ok.expect("parses").validate().expect("valid");
    }
}
