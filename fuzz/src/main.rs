//! `sigil-fuzz`: list the targets, write their generated seeds into the corpus, run a
//! stable in-process campaign, or (built with `cargo afl build --features afl`) serve as the
//! AFL++ harness of one target.

use clap::{Parser, Subcommand};
use sigil_fuzz::{Target, campaign, corpus_dir, entry_name, read_corpus, target, targets};
use std::time::Duration;

#[derive(Parser)]
#[command(about = "Fuzz targets for Sigil's untrusted inputs")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Lists the targets (name, AFL-capable).
    List,
    /// Writes each target's generated seeds into `fuzz/corpus/<target>/` (content-addressed;
    /// existing entries are kept).
    Seed {
        /// One target, or all.
        target: Option<String>,
    },
    /// Replays the corpus and runs mutations of it in-process (no coverage feedback), per
    /// target, until `--secs` or `--iterations` is reached. A crashing input is written to
    /// `fuzz/crashes/<target>-<hash>` and the exit status is 1.
    Run {
        /// A target name, or `all`.
        target: String,
        /// Wall-time budget per target (s).
        #[arg(long, default_value_t = 10)]
        secs: u64,
        /// Input budget per target.
        #[arg(long, default_value_t = u64::MAX)]
        iterations: u64,
        /// Mutation RNG seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Replays every committed corpus entry of a target once and lists the ones that break
    /// its oracle (path and message), without mutating or deleting anything; exit status 1
    /// if any does. For after a change to a target's fixture (e.g. the honest committee's
    /// execution the `member` target records): each listed entry must be understood before
    /// it is removed.
    Check {
        /// A target name, or `all`.
        target: String,
    },
    /// AFL++ harness for one target (only in a `cargo afl build --features afl` binary).
    Afl {
        /// The target.
        target: String,
    },
}

fn pick(name: &str) -> Vec<Target> {
    if name == "all" {
        return targets();
    }
    match target(name) {
        Some(t) => vec![t],
        None => {
            let names: Vec<_> = targets().iter().map(|t| t.name).collect();
            eprintln!("unknown target {name:?}; targets: {}", names.join(", "));
            std::process::exit(2);
        }
    }
}

fn main() {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::List => {
            for t in targets() {
                println!(
                    "{:<12} {}",
                    t.name,
                    if t.afl { "afl" } else { "in-process" }
                );
            }
        }
        Cmd::Seed { target } => {
            for t in pick(target.as_deref().unwrap_or("all")) {
                let dir = corpus_dir(t.name);
                std::fs::create_dir_all(&dir).expect("corpus dir");
                let seeds = (t.seeds)();
                for s in &seeds {
                    std::fs::write(dir.join(entry_name(s)), s).expect("write seed");
                }
                println!("{:<12} {} seeds -> {}", t.name, seeds.len(), dir.display());
            }
        }
        Cmd::Run {
            target,
            secs,
            iterations,
            seed,
        } => {
            // Oracle failures are reported below, with the input; silence the default hook.
            std::panic::set_hook(Box::new(|_| {}));
            let mut failed = false;
            println!(
                "{:<12} {:>8} {:>10} {:>9} {:>8}",
                "target", "corpus", "execs", "execs/s", "result"
            );
            for t in pick(&target) {
                let corpus: Vec<Vec<u8>> = read_corpus(&corpus_dir(t.name))
                    .expect("read corpus")
                    .into_iter()
                    .map(|(_, d)| d)
                    .collect();
                match campaign(&t, &corpus, seed, iterations, Duration::from_secs(secs)) {
                    Ok(s) => println!(
                        "{:<12} {:>8} {:>10} {:>9.0} {:>8}",
                        t.name,
                        s.replayed,
                        s.execs,
                        s.execs as f64 / s.elapsed.as_secs_f64().max(1e-9),
                        "ok"
                    ),
                    Err(c) => {
                        failed = true;
                        let dir = corpus_dir(t.name)
                            .parent()
                            .expect("fuzz dir")
                            .parent()
                            .expect("crate dir")
                            .join("crashes");
                        std::fs::create_dir_all(&dir).expect("crashes dir");
                        let p = dir.join(format!("{}-{}", t.name, entry_name(&c.input)));
                        std::fs::write(&p, &c.input).expect("write crash");
                        println!(
                            "{:<12} CRASH: {} (input: {})",
                            t.name,
                            c.message,
                            p.display()
                        );
                    }
                }
            }
            std::process::exit(i32::from(failed));
        }
        Cmd::Check { target } => {
            std::panic::set_hook(Box::new(|_| {}));
            let mut failed = 0usize;
            for t in pick(&target) {
                let corpus = read_corpus(&corpus_dir(t.name)).expect("read corpus");
                let n = corpus.len();
                for (path, data) in corpus {
                    if let Err(c) = sigil_fuzz::run_one(&t, &data) {
                        failed += 1;
                        let oneline = c.message.replace('\n', " | ");
                        println!("{}\t{oneline}", path.display());
                    }
                }
                eprintln!("{:<12} {n} entries replayed", t.name);
            }
            eprintln!("{failed} entries break their oracle");
            std::process::exit(i32::from(failed > 0));
        }
        Cmd::Afl { target } => afl_main(&target),
    }
}

#[cfg(feature = "afl")]
fn afl_main(name: &str) {
    let t = pick(name).remove(0);
    let run = t.run;
    // Build the fixture before the fork server starts, so every input reuses it.
    run(&[]);
    afl::fuzz!(|data: &[u8]| {
        run(data);
    });
}

#[cfg(not(feature = "afl"))]
fn afl_main(_: &str) {
    eprintln!("this binary was built without AFL; use scripts/fuzz.sh");
    std::process::exit(2);
}
