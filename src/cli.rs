//! The command line: `emptcp [-n NETNS] [-v] COMMAND`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::attach::XdpMode;
use crate::text::quoted;

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
    #[arg(long, global = true, env = "EMPTCP_STATE_DIR", default_value = crate::state::DEFAULT_DIR, value_name = "DIR")]
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
    /// Print the man page (roff)
    Man,
}

impl Cli {
    /// Checks the values clap takes as they come: a namespace name that is
    /// a name (netns.rs), chain names that can name a chain. Errors are one
    /// line, the value escaped and capped (text.rs).
    pub fn validate(&self) -> anyhow::Result<()> {
        if let Some(n) = &self.netns {
            crate::netns::check_name(n).map_err(|e| anyhow::anyhow!("-n: {e}"))?;
        }
        let name = match &self.cmd {
            Command::Show { name, .. } | Command::Detach { name, .. } => name.as_deref(),
            Command::Events { chain, .. } => chain.as_deref(),
            _ => None,
        };
        if let Some(n) = name.filter(|n| !crate::policy::valid_name(n)) {
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
