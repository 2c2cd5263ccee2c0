//! The `kindling` binary: parses arguments, sets up logging, runs a command and maps its result
//! to an exit code. The work is done by the library crates.

mod batched;
mod cli;
mod clock;
mod exit;
mod logfile;
mod report;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use cli::{Cli, Command, CreateCommand, LogLevel};
use exit::Failure;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_dir = cli.command.dir().map(std::path::Path::to_path_buf);
    // serve's access log, a line per request, is written off the request path.
    let batched = matches!(cli.command, Command::Serve(_));
    let (logging_to_file, _log_writer) = init_logging(cli.log_level, log_dir.as_deref(), batched);
    tracing::debug!(
        "kindling {} {}",
        env!("CARGO_PKG_VERSION"),
        std::env::args().skip(1).collect::<Vec<_>>().join(" ")
    );
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            if let Some(error) = &failure.error {
                tracing::error!("{}", report::error_chain(error));
            }
            if let (true, Some(dir)) = (logging_to_file, &log_dir) {
                eprintln!("The full log is in {}.", logfile::path(dir).display());
            }
            ExitCode::from(failure.code as u8)
        }
    }
}

fn run(command: Command) -> Result<(), Failure> {
    match command {
        Command::Create(CreateCommand::InstallConfig(args)) => cli::create::install_config(&args),
        Command::Create(CreateCommand::Manifests(args)) => {
            cli::create::assets_command(&args, kindling_assets::Target::Manifests)
        }
        Command::Create(CreateCommand::IgnitionConfigs(args)) => {
            cli::create::assets_command(&args, kindling_assets::Target::IgnitionConfigs)
        }
        Command::Create(CreateCommand::Infra(args)) => cli::create::infra_command(&args),
        Command::Demo(args) => cli::demo::run(&args),
        Command::Serve(args) => cli::serve::run(&args),
        Command::Doctor(args) => cli::doctor::run(&args),
        Command::WaitFor(args) => cli::wait_for::run(&args),
        Command::ApproveCsrs(args) => cli::approve_csrs::run(&args),
        Command::Gather(args) => cli::gather::run(&args),
        Command::Machines(command) => cli::machines::run(&command),
        Command::Store(command) => cli::store::run(&command),
        Command::Mirror(args) => cli::mirror::run(&args),
        Command::Update(args) => cli::update::run(&args),
        Command::Certs(args) => cli::certs::run(&args),
        Command::Status(args) => cli::status::run(&args),
        Command::Power(args) => cli::power::run(&args),
        Command::Install(args) => cli::install::run(&args),
        Command::Remove(cli::RemoveCommand::Machine(args)) => cli::remove::machine(&args),
        Command::Agent(command) => cli::agent::run(&command),
        Command::Completion { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "kindling",
                &mut std::io::stdout(),
            );
            Ok(())
        }
    }
}

/// stderr at `level`, through a [`batched`] writer if asked; and, for a command on an asset
/// directory, its full debug log appended to `<dir>/.kindling/kindling.log` (see [`logfile`]).
/// Whether the file log is on, and the batched writer's guard, to hold until the command ends.
fn init_logging(
    level: LogLevel,
    dir: Option<&std::path::Path>,
    batched: bool,
) -> (bool, Option<batched::Guard>) {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::prelude::*;
    let level = match level {
        LogLevel::Error => LevelFilter::ERROR,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Debug => LevelFilter::DEBUG,
    };
    // kube's client logs every failed request at ERROR; kindling reports those failures itself
    // (a dead API is expected while wait-for polls), so kube speaks only at debug.
    let kube = if level == LevelFilter::DEBUG {
        LevelFilter::DEBUG
    } else {
        LevelFilter::OFF
    };
    let filter = Targets::new()
        .with_default(level)
        .with_target("kube_client", kube)
        .with_target("kube", kube);
    let file = dir.and_then(logfile::open).map(|writer| {
        // Everything of kindling's at debug; not the per-request access log of serve (which
        // stderr has), nor the HTTP and TLS libraries' chatter.
        let filter = Targets::new()
            .with_default(LevelFilter::DEBUG)
            .with_target("access", LevelFilter::OFF)
            .with_target("hyper", LevelFilter::INFO)
            .with_target("hyper_util", LevelFilter::INFO)
            .with_target("rustls", LevelFilter::INFO)
            .with_target("h2", LevelFilter::INFO)
            .with_target("tower", LevelFilter::INFO);
        tracing_subscriber::fmt::layer()
            .with_writer(std::sync::Mutex::new(writer))
            .with_ansi(false)
            .with_filter(filter)
    });
    let on = file.is_some();
    let stderr = tracing_subscriber::fmt::layer()
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time();
    let (stderr, guard): (Box<dyn tracing_subscriber::Layer<_> + Send + Sync>, _) = if batched {
        let (writer, guard) = batched::writer(std::io::stderr());
        (
            stderr.with_writer(writer).with_filter(filter).boxed(),
            Some(guard),
        )
    } else {
        (
            stderr
                .with_writer(std::io::stderr)
                .with_filter(filter)
                .boxed(),
            None,
        )
    };
    tracing_subscriber::registry()
        .with(stderr)
        .with(file)
        .init();
    (on, guard)
}
