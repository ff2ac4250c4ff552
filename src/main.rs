//! emptcp: the command-line front end of the library.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{CommandFactory, Parser};

use emptcp::cli::{Cli, Command, TableOp};
use emptcp::runtime::Runtime;
use emptcp::stages::{StageRole, CATALOG};

fn run(cli: Cli) -> Result<()> {
    emptcp::kernel::loader::init_logging(cli.verbose);
    let rt = Runtime {
        dir: cli.state_dir.clone(),
        netns: cli.netns.clone(),
        ..Default::default()
    };
    // one function per verb (iproute2's command table)
    match cli.cmd {
        Command::Apply {
            policy,
            dry_run,
            xdp_mode,
            prune,
        } => cmd_apply(rt, &policy, dry_run, xdp_mode, prune),
        Command::Run {
            policy,
            metrics,
            keep,
        } => emptcp::runtime::service::run(
            rt,
            &emptcp::runtime::service::Options {
                policy,
                metrics,
                keep,
            },
        ),
        Command::Check { policy } => cmd_check(&rt, &policy),
        Command::Show { name, json } => cmd_show(&rt, name, json, cli.verbose),
        Command::Detach { name, all } => cmd_detach(&rt, name, all),
        Command::Events {
            json,
            chain,
            count,
            timeout,
        } => emptcp::observe::events::stream(
            &rt.dir,
            json,
            chain.as_deref(),
            count,
            timeout.map(std::time::Duration::from_secs_f64),
        ),
        Command::Stats { json, format } => cmd_stats(&rt, json, &format),
        Command::Set { op } => table_op(&rt, "set", op),
        Command::Map { op } => table_op(&rt, "map", op),
        Command::Catalog { json } => cmd_catalog(json),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "emptcp", &mut std::io::stdout());
            Ok(())
        }
        Command::Man { command } => cmd_man(command.as_deref()),
    }
}

/// `emptcp apply`.
fn cmd_apply(
    mut rt: Runtime,
    policy: &std::path::Path,
    dry_run: bool,
    xdp_mode: emptcp::kernel::attach::XdpMode,
    prune: bool,
) -> Result<()> {
    let p = rt.read_policy(policy)?;
    rt.xdp_mode = xdp_mode;
    if dry_run {
        for c in &p.chains {
            let ns = c.netns.as_ref().or(rt.netns.as_ref());
            let stages: Vec<&str> = c
                .select
                .iter()
                .map(|s| s.kind.name())
                .chain(c.act.iter().map(|a| a.name()))
                .collect();
            println!(
                "chain {} on {} {}{}: {}",
                c.name,
                c.dev,
                c.hook,
                ns.map(|n| format!(" (netns {n})")).unwrap_or_default(),
                stages.join(" -> ")
            );
        }
        if prune {
            // what the state holds that the file does not name
            let keep = |n: &str| p.chains.iter().any(|c| c.name == n);
            for c in rt.show(None).unwrap_or_default() {
                if !keep(&c.name) {
                    println!("remove chain {}", c.name);
                }
            }
            for t in rt.tables().unwrap_or_default() {
                if !p.tables.iter().any(|s| s.def.name == t.name) {
                    println!("remove {} {}", t.kind, t.name);
                }
            }
        }
        return Ok(());
    }
    emptcp::priv_check()?;
    if let Some(w) =
        emptcp::kernel::features::kernel_warning(&emptcp::kernel::features::get().release)
    {
        eprintln!("emptcp: warning: {w}");
    }
    for w in emptcp::runtime::jit_warnings() {
        eprintln!("emptcp: warning: {w}");
    }
    for w in emptcp::runtime::mptcp_warnings(&p, rt.netns.as_deref()) {
        eprintln!("emptcp: warning: {w}");
    }
    let r = if prune {
        rt.apply_desired(&p)?
    } else {
        rt.apply(&p)?
    };
    for n in &r.notes {
        eprintln!("emptcp: {n}");
    }
    for a in &r.repaired {
        println!("repaired {a}");
    }
    // after the apply: a failed one says one line, the error
    if let Some(w) = emptcp::kernel::features::apply_warning(&p) {
        eprintln!("emptcp: warning: {w}");
    }
    for a in &r.attached {
        println!("attached {a}");
    }
    for a in &r.removed {
        println!("removed {a}");
    }
    // a file of sets and maps only applies no chain: name the tables
    let tables = p
        .tables
        .iter()
        .map(|t| format!("{} {}", t.def.what(), t.def.name));
    let all: Vec<String> = r.applied.iter().cloned().chain(tables).collect();
    println!("applied {}", all.join(", "));
    Ok(())
}

/// `emptcp check`.
fn cmd_check(rt: &Runtime, policy: &std::path::Path) -> Result<()> {
    let p = rt.read_policy(policy)?;
    emptcp::priv_check()?;
    if let Some(w) =
        emptcp::kernel::features::kernel_warning(&emptcp::kernel::features::get().release)
    {
        eprintln!("emptcp: warning: {w}");
    }
    let n = rt.check(&p)?;
    println!(
        "{}: ok ({} chains, {n} programs verified)",
        emptcp::cli::text::path(policy),
        p.chains.len()
    );
    Ok(())
}

/// `emptcp show`.
fn cmd_show(rt: &Runtime, name: Option<String>, json: bool, verbose: bool) -> Result<()> {
    let v = rt.show(name.as_deref())?;
    let out = std::io::stdout();
    let mut out = out.lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &v)?;
        writeln!(out)?;
        return Ok(());
    }
    if verbose {
        write!(out, "{}", emptcp::kernel::features::get())?;
    }
    if v.is_empty() {
        writeln!(out, "no chains")?;
    }
    for c in &v {
        write!(out, "{c}")?;
    }
    if name.is_none() {
        let t = rt.tables()?;
        if !t.is_empty() {
            writeln!(out, "sets and maps:")?;
        }
        for t in t {
            writeln!(out, "  {t}")?;
        }
    }
    Ok(())
}

/// `emptcp detach`.
fn cmd_detach(rt: &Runtime, name: Option<String>, all: bool) -> Result<()> {
    emptcp::priv_check()?;
    if all {
        let (n, left) = rt.detach_all()?;
        println!("detached {n} chains");
        if let Some(first) = left.first() {
            eprintln!(
                "emptcp: left {} in place: {} entries emptcp did not create, e.g. {}",
                rt.dir.display(),
                left.len(),
                emptcp::cli::text::quoted(&first.to_string_lossy())
            );
        }
    } else if let Some(n) = name {
        for note in rt.detach(&n)? {
            eprintln!("emptcp: {note}");
        }
        println!("detached {n}");
    }
    Ok(())
}

/// `emptcp stats`.
fn cmd_stats(rt: &Runtime, json: bool, format: &str) -> Result<()> {
    let s = emptcp::observe::stats::collect(rt)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else if format == "prometheus" {
        print!("{}", emptcp::observe::stats::prometheus(&s));
    } else {
        print!("{}", emptcp::observe::stats::text(&s));
    }
    Ok(())
}

/// `emptcp man [COMMAND]`: the page of the program, or of one command
/// (named `emptcp-COMMAND`, as git and cargo name theirs).
fn cmd_man(command: Option<&str>) -> Result<()> {
    let cmd = Cli::command();
    let man = match command {
        None => clap_mangen::Man::new(cmd),
        Some(name) => {
            let sub = cmd
                .find_subcommand(name)
                .ok_or_else(|| {
                    anyhow::anyhow!("no command called {}", emptcp::cli::text::quoted(name))
                })?
                .clone();
            clap_mangen::Man::new(sub.bin_name(format!("emptcp {name}")))
                .title(format!("emptcp-{name}"))
        }
    };
    man.render(&mut std::io::stdout())
        .context("failed to render the man page")
}

/// `emptcp catalog`.
fn cmd_catalog(json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(CATALOG)?);
        return Ok(());
    }
    for role in [StageRole::Selector, StageRole::Actor] {
        println!(
            "{}s:",
            if role == StageRole::Selector {
                "selector"
            } else {
                "actor"
            }
        );
        for e in CATALOG.iter().filter(|e| e.role == role) {
            println!("  {:<12} {}", e.kind, e.doc);
            for p in e.params {
                println!(
                    "      {:<8} {:<13} {}{}",
                    p.name,
                    format!("{:?}", p.ty).to_lowercase(),
                    p.doc,
                    p.default
                        .map(|d| format!(" (default {d})"))
                        .unwrap_or_default()
                );
            }
        }
    }
    println!("every selector also takes: op = \"and\"|\"or\" (default and), not = true|false");
    println!("limits:");
    for (what, n) in emptcp::runtime::capacity::limits() {
        println!("  {what:<44} {n}");
    }
    Ok(())
}

/// `emptcp set …` and `emptcp map …`.
fn table_op(rt: &Runtime, what: &str, op: TableOp) -> Result<()> {
    let with_file =
        |elements: Vec<String>, file: Option<std::path::PathBuf>| -> Result<Vec<String>> {
            let mut v = elements;
            if let Some(f) = file {
                v.extend(emptcp::tables::sets::read_elements(&f)?);
            }
            Ok(v)
        };
    match op {
        TableOp::Add {
            name,
            elements,
            file,
        } => {
            let n = rt.table_add(&name, Some(what), &with_file(elements, file)?)?;
            println!("added {n} elements to {what} {name}");
        }
        TableOp::Del {
            name,
            elements,
            file,
        } => {
            let n = rt.table_del(&name, Some(what), &with_file(elements, file)?)?;
            println!("deleted {n} elements from {what} {name}");
        }
        TableOp::List { name, json } => {
            let v = rt.table_list(&name, Some(what))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                let out = std::io::stdout();
                let mut out = out.lock();
                for e in v {
                    match e.value {
                        Some(val) => writeln!(out, "{} = {val}", e.key)?,
                        None => writeln!(out, "{}", e.key)?,
                    }
                }
            }
        }
        TableOp::Flush { name } => {
            rt.table_flush(&name, Some(what))?;
            println!("flushed {what} {name}");
        }
        TableOp::Delete { name } => {
            rt.table_delete(&name, Some(what))?;
            println!("deleted {what} {name}");
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.cmd, Command::Run { .. }) {
        // `emptcp catalog | head`: end quietly when the reader goes, as
        // other command-line tools do (Rust ignores SIGPIPE, and printing
        // would panic). `run` keeps ignoring it: a metrics client that
        // hangs up must not stop the service.
        // SAFETY: at the start of main, before any thread exists.
        unsafe {
            let _ = nix::sys::signal::signal(
                nix::sys::signal::Signal::SIGPIPE,
                nix::sys::signal::SigHandler::SigDfl,
            );
        }
    }
    match cli.validate().and_then(|()| run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("emptcp: {e:#}");
            ExitCode::FAILURE
        }
    }
}
