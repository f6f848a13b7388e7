//! The process's log: tracing events on standard error, as text or as JSON lines
//! (`--logging-format`), at kube's `-v` verbosity unless `RUST_LOG` says otherwise. Standard
//! output stays free for what is asked to go there (`--audit-log-path=-`).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LoggingFormat;

/// The workspace's crates, as tracing targets: `-v` sets their level. Every other crate logs
/// warnings and errors only, so raising `-v` shows our detail rather than hyper's and h2's.
const OUR_CRATES: &[&str] = &[
    "apimachinery",
    "apiserver",
    "image_api",
    "image_apiserver",
    "importer",
    "registry_client",
    "storage",
];

/// Installs the process's subscriber; call it once, before anything logs.
pub fn init(format: LoggingFormat, verbosity: u8) {
    let (filter, bad_rust_log) = filter(verbosity, std::env::var("RUST_LOG").ok());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LoggingFormat::Text => builder.with_ansi(colored()).init(),
        LoggingFormat::Json => builder.json().flatten_event(true).init(),
    }
    if let Some(error) = bad_rust_log {
        tracing::warn!(%error, "RUST_LOG ignored: not a valid filter; logging at -v instead");
    }
}

/// Colors are for a person watching: only when standard error is a terminal, and not when
/// `NO_COLOR` (no-color.org) asks for none. A file or a pipe never gets escape codes.
fn colored() -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    std::io::stderr().is_terminal() && !no_color
}

/// The filter: `RUST_LOG` when it is set (as before `-v` existed), else the one `-v` stands
/// for. A `RUST_LOG` that does not parse falls back to `-v`; its error is returned so that it
/// can be logged once logging works.
fn filter(verbosity: u8, rust_log: Option<String>) -> (EnvFilter, Option<String>) {
    let from_verbosity = || EnvFilter::new(verbosity_directives(verbosity));
    match rust_log.filter(|value| !value.trim().is_empty()) {
        None => (from_verbosity(), None),
        Some(value) => match EnvFilter::try_new(&value) {
            Ok(filter) => (filter, None),
            Err(error) => (from_verbosity(), Some(format!("{value:?}: {error}"))),
        },
    }
}

/// `warn` for every crate, and the level of `-v` for ours: klog's 0 and 1 are the normal
/// detail (info), 2 and 3 add debug, 4 and above everything.
fn verbosity_directives(verbosity: u8) -> String {
    let level = match verbosity {
        0 | 1 => "info",
        2 | 3 => "debug",
        _ => "trace",
    };
    let ours = OUR_CRATES.iter().map(|krate| format!("{krate}={level}"));
    std::iter::once("warn".to_string())
        .chain(ours)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::filter::LevelFilter;

    use super::*;

    #[test]
    fn verbosity_raises_our_crates_only() {
        for (verbosity, level) in [(0, "info"), (1, "info"), (2, "debug"), (3, "debug")] {
            let directives = verbosity_directives(verbosity);
            assert!(directives.starts_with("warn,"), "{directives}");
            for krate in OUR_CRATES {
                assert!(
                    directives.contains(&format!(",{krate}={level}")),
                    "{directives}"
                );
            }
        }
        for verbosity in [4, 9, u8::MAX] {
            assert!(verbosity_directives(verbosity).contains(",apiserver=trace"));
        }
    }

    #[test]
    fn rust_log_wins_unless_it_is_empty_or_invalid() {
        let cases = [
            (0, None, LevelFilter::INFO),
            (2, None, LevelFilter::DEBUG),
            (4, None, LevelFilter::TRACE),
            (4, Some("warn"), LevelFilter::WARN),
            (0, Some("trace"), LevelFilter::TRACE),
            (2, Some("  "), LevelFilter::DEBUG),
        ];
        for (verbosity, rust_log, most_detailed) in cases {
            let (chosen, error) = filter(verbosity, rust_log.map(str::to_string));
            assert_eq!(chosen.max_level_hint(), Some(most_detailed), "{rust_log:?}");
            assert!(error.is_none(), "{error:?}");
        }
        let (chosen, error) = filter(0, Some("apiserver=loud".to_string()));
        assert_eq!(chosen.max_level_hint(), Some(LevelFilter::INFO));
        assert!(error.is_some_and(|e| e.contains("apiserver=loud")));
    }
}
