//! The `rtmpd` binary: parse the command line, start logging, run the chosen mode, and map
//! errors to exit codes (2: bad command line; 1: a fatal runtime error such as a port in use).

use std::process::ExitCode;

use rtmpd::config::{self, LogConfig, Mode};

fn init_logging(log: &LogConfig) -> Result<(), String> {
    use simplelog::{
        ColorChoice, CombinedLogger, ConfigBuilder, SharedLogger, TermLogger, TerminalMode,
        WriteLogger,
    };
    let cfg = ConfigBuilder::new()
        // Fixed width (RFC 3339, UTC, microseconds): columns line up and `sort` works.
        .set_time_format_custom(simplelog::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
        ))
        .set_target_level(log::LevelFilter::Off)
        .set_thread_level(log::LevelFilter::Off)
        .build();
    let mut loggers: Vec<Box<dyn SharedLogger>> = vec![TermLogger::new(
        log.level,
        cfg.clone(),
        TerminalMode::Stderr,
        ColorChoice::Never,
    )];
    if let Some(path) = &log.file {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("--log-file {}: {e}", path.display()))?;
        loggers.push(WriteLogger::new(log.level, cfg, file));
    }
    CombinedLogger::init(loggers).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = match config::parse(&args) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("rtmpd: {e} (see --help)");
            return ExitCode::from(2);
        }
    };
    let result = match mode {
        Mode::Help(text) => {
            println!("{text}");
            return ExitCode::SUCCESS;
        }
        Mode::Version => {
            println!("rtmpd {}", config::VERSION);
            return ExitCode::SUCCESS;
        }
        Mode::PrintConfig(text) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Mode::Origin(cfg) => init_logging(&cfg.log)
            .and_then(|_| rtmpd::server::run_origin(cfg).map_err(|e| e.to_string())),
        Mode::Merge(dir) => match rtmpd::record::merge::merge_dir(&dir) {
            Ok(report) => {
                // No logger in this mode: each damaged segment, named with what was wrong.
                for d in &report.damaged {
                    eprintln!("rtmpd merge: warning: {d}");
                }
                println!("{report}");
                Ok(())
            }
            Err(e) => Err(format!("merge {}: {e}", dir.display())),
        },
        Mode::FileGateway(cfg) => init_logging(&cfg.log)
            .and_then(|_| rtmpd::server::run_file_gateway(cfg).map_err(|e| e.to_string())),
        Mode::FlvGateway(cfg) => init_logging(&cfg.log)
            .and_then(|_| rtmpd::server::run_flv_gateway(cfg).map_err(|e| e.to_string())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Once: the logger (when it is up) already writes to stderr, and to --log-file as well.
            if log::log_enabled!(log::Level::Error) {
                log::error!("{e}");
            } else {
                eprintln!("rtmpd: {e}");
            }
            ExitCode::from(1)
        }
    }
}
