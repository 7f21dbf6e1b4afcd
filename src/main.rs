//! The `chatgenius-files` binary: parses the command line and environment,
//! then hands over to the library.

use clap::{Parser, Subcommand, ValueEnum};
use migration::{Migrator, MigratorTrait};
use tracing_subscriber::EnvFilter;

use chatgenius_files::{
    auth::{self, CurrentUser, TokenKeys},
    bucket_setup,
    config::{Config, LogFormat},
    domain::Username,
    service::{sweeper, users},
    startup::{self, Application},
};

/// The ChatGenius file service. Every option is also an environment variable.
#[derive(Parser)]
#[command(name = "chatgenius-files", version, about)]
struct Cli {
    #[command(flatten)]
    config: Config,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API (the default).
    Serve,
    /// Apply or inspect database migrations.
    Migrate {
        #[arg(value_enum, default_value = "up")]
        action: MigrateAction,
    },
    /// Print the OpenAPI spec.
    Openapi,
    /// Run the sweeper once over the whole bucket and print what it did.
    Sweep,
    /// Configure the bucket (create, block public access, SSE-S3, versioning,
    /// CORS, multipart lifecycle) and print what was done.
    BucketSetup {
        /// Fail (exit 3) when the store does not support a setting.
        #[arg(long)]
        strict: bool,
    },
    /// Print a bearer token for a user (created when missing).
    Token {
        /// Login name.
        username: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum MigrateAction {
    /// Apply pending migrations.
    Up,
    /// Roll back the last migration.
    Down,
    /// List applied and pending migrations.
    Status,
    /// Drop every table and apply all migrations.
    Fresh,
}

fn main() -> std::process::ExitCode {
    large_buffers_go_back_at_once();
    let _ = dotenvy::dotenv();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) if !err.use_stderr() => err.exit(),
        Err(err) => {
            // One line naming the variable and the problem.
            let rendered = err.render().to_string();
            eprintln!("{}", rendered.lines().next().unwrap_or("invalid configuration"));
            return std::process::ExitCode::from(2);
        }
    };
    if let Err(err) = cli.config.validate() {
        eprintln!("error: {err}");
        return std::process::ExitCode::from(2);
    }
    init_tracing(cli.config.log_format);
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let app = Application::build(cli.config).await?;
            app.run_until(shutdown_signal()).await?;
        }
        Command::Migrate { action } => {
            let db = startup::connect_database(&cli.config, None).await?;
            startup::with_migration_lock(&db, || async {
                match action {
                    MigrateAction::Up => Migrator::up(&db, None).await,
                    MigrateAction::Down => Migrator::down(&db, Some(1)).await,
                    MigrateAction::Status => Migrator::status(&db).await,
                    MigrateAction::Fresh => startup::migrate_fresh(&db).await,
                }
            })
            .await?;
        }
        Command::Openapi => println!("{}", chatgenius_files::api::spec_json()),
        Command::Sweep => {
            // Runs beside a serving instance: the embedded store (if it is
            // the one) on a free port, no API listener.
            let mut config = cli.config;
            config.embedded_s3_addr = "127.0.0.1:0".parse()?;
            let (deps, policy, _embedded) = startup::open_deps(&config).await?;
            let report = sweeper::sweep_once(&deps, &policy).await?;
            deps.downloads.flush().await;
            print!("{}", report.table());
        }
        Command::BucketSetup { strict } => return bucket_setup(cli.config, strict).await,
        Command::Token { username } => {
            let username = Username::parse(&username).map_err(|e| anyhow::anyhow!("{e}"))?;
            let db = startup::connect_database(&cli.config, None).await?;
            startup::with_migration_lock(&db, || Migrator::up(&db, None)).await?;
            let user = users::find_or_create(&db, &username).await?;
            let secret = auth::resolve_secret(cli.config.jwt_secret.as_ref(), &cli.config.data_dir)?;
            let keys = TokenKeys::new(&secret, std::time::Duration::from_secs(cli.config.token_ttl_secs));
            println!("{}", keys.issue(&CurrentUser::of(&user)));
        }
    }
    Ok(())
}

async fn bucket_setup(mut config: Config, strict: bool) -> anyhow::Result<()> {
    let mut origins = config.cors_allowed_origins.clone();
    origins.push(config.public_origin(config.bind_addr));
    config.embedded_s3_addr = "127.0.0.1:0".parse()?;
    let (storage, _embedded) = startup::open_storage(&config, &origins).await?;
    let wanted = bucket_setup::Wanted {
        bucket: storage.bucket().to_owned(),
        versioning: config.aws_s3_versioning,
        cors_origins: origins,
        abort_multipart_after_days: config.multipart_abort_after_days as i32,
    };
    let report = bucket_setup::run(storage.client(), &wanted).await;
    println!("bucket {}\n", wanted.bucket);
    print!("{}", report.table());
    if report.any_failed() {
        anyhow::bail!("some settings could not be applied");
    }
    if report.any_unsupported() {
        if strict {
            eprintln!("error: this store does not support every setting (--strict)");
            std::process::exit(3);
        }
        eprintln!("warning: this store does not support every setting");
    }
    Ok(())
}

fn init_tracing(format: LogFormat) {
    // s3s logs whole requests (presigned signatures included) at debug level: keep it quiet.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info"))
        .add_directive("s3s=warn".parse().expect("static directive"))
        .add_directive("s3s_fs=warn".parse().expect("static directive"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
}

/// Allocations of 1 MiB and more (the 8 MiB parts of uploads through the
/// broker) are mapped on their own and unmapped when freed. glibc would
/// otherwise raise that threshold after the first such free and serve the
/// next parts from its heaps, which keep their high-water mark: measured on a
/// 256 MiB upload through the broker, peak RSS 82 MB, with this 64 MB.
fn large_buffers_go_back_at_once() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; it runs before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}
