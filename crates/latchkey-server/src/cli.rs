//! The command line: `latchkey serve`, `migrate`, `user`, `session`, `key`,
//! `client`, `mail`.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Arg, ArgMatches, Args, Command, FromArgMatches, Parser, Subcommand};
use latchkey_core::clock::rfc3339;
use latchkey_core::service::{KeyView, MfaSummary, SessionView, UserView};
use latchkey_core::SessionId;
use latchkey_core::{Service, SystemClock};
use serde_json::json;

use crate::app::{self, Application};
use crate::config::{self, Config, RawSettings, SETTINGS};
use crate::telemetry;

#[derive(Debug, Parser)]
#[command(
    name = "latchkey",
    version,
    about = "Log in once, stay logged in safely."
)]
pub struct Cli {
    /// TOML configuration file (default: ./latchkey.toml if present).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub settings: SettingFlags,
    #[command(subcommand)]
    pub command: Commands,
}

/// `--NAME VALUE` for every setting, kept raw until the layers are merged.
#[derive(Debug, Default, Clone)]
pub struct SettingFlags(pub RawSettings);

impl FromArgMatches for SettingFlags {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut raw = BTreeMap::new();
        for setting in SETTINGS {
            if let Some(value) = matches.get_one::<String>(setting.name) {
                raw.insert(setting.name.to_owned(), value.clone());
            }
        }
        Ok(Self(raw))
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl Args for SettingFlags {
    fn augment_args(cmd: Command) -> Command {
        SETTINGS.iter().fold(cmd, |cmd, setting| {
            cmd.arg(
                Arg::new(setting.name)
                    .long(setting.name.replace('_', "-"))
                    .value_name("VALUE")
                    .global(true)
                    .help_heading("Settings (see the README)"),
            )
        })
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

#[derive(Debug, Subcommand)]
pub enum Commands {
    /// Migrate the store if needed, then serve.
    Serve,
    /// Bring the store's schema up to date, and stop.
    Migrate,
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage sessions.
    #[command(subcommand)]
    Session(SessionCommand),
    /// Manage signing keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Manage OAuth clients.
    #[command(subcommand)]
    Client(ClientCommand),
    /// Mail settings.
    #[command(subcommand)]
    Mail(MailCommand),
}

#[derive(Debug, Subcommand)]
pub enum MailCommand {
    /// Send a test mail to ADDRESS now, with the current settings; fails
    /// (non-zero) when the SMTP server does not accept it.
    Test { address: String },
}

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Register a client; prints its secret, once.
    Add {
        client_id: String,
        /// A public client: no secret (it cannot use client_credentials or introspection).
        #[arg(long)]
        public: bool,
        /// The scopes it may ask for, space-separated.
        #[arg(long, default_value = "")]
        scope: String,
    },
    /// One JSON object a line.
    List,
    Remove {
        client_id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user; the password is the first line of standard input.
    Add {
        username: String,
    },
    /// Set a user's password (from standard input); revokes all their sessions.
    SetPassword {
        username: String,
    },
    /// One JSON object a line.
    List,
    /// Disable a user and revoke all their sessions.
    Disable {
        username: String,
    },
    Enable {
        username: String,
    },
    /// What second factors a user has: TOTP on or off, recovery codes
    /// left, passkeys.
    Mfa {
        username: String,
    },
    /// Remove a user's TOTP, recovery codes and passkeys (a user who lost
    /// them all logs in with the password alone again).
    MfaReset {
        username: String,
    },
    /// Set a user's email address; without --verified it is mailed a
    /// check (when smtp_url is set) and stays unverified until used.
    SetEmail {
        username: String,
        email: String,
        /// Mark the address verified at once.
        #[arg(long)]
        verified: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    /// Live sessions, of one user or all; one JSON object a line.
    List {
        username: Option<String>,
    },
    Revoke {
        sid: String,
    },
    RevokeAll {
        username: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// One JSON object a line.
    List,
    /// Publish a new key; it signs from jwks_max_age + 5 s later.
    Rotate {
        /// Sign with it at once (an emergency).
        #[arg(long)]
        now: bool,
    },
    /// Stop a key signing.
    Retire {
        kid: String,
        /// Also remove it from the JWKS at once (a compromised key).
        #[arg(long)]
        purge: bool,
    },
}

/// Runs the command; errors are reported by the caller as one line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let raw = config::layer(cli.config.as_deref(), std::env::vars(), &cli.settings.0)?;
    let config = Config::from_raw(&raw)?;
    let serving = matches!(cli.command, Commands::Serve);
    telemetry::init(config.log_format, serving);
    match cli.command {
        Commands::Serve => serve(&config).await,
        Commands::Migrate => {
            app::open_store(&config).await?;
            Ok(())
        }
        Commands::User(cmd) => user(open_service(&config).await?.as_ref(), cmd).await,
        Commands::Session(cmd) => session(open_service(&config).await?.as_ref(), cmd).await,
        Commands::Key(cmd) => key(open_service(&config).await?.as_ref(), cmd).await,
        Commands::Client(cmd) => client(open_service(&config).await?.as_ref(), cmd).await,
        Commands::Mail(cmd) => mail(&config, cmd).await,
    }
}

async fn serve(config: &Config) -> anyhow::Result<()> {
    let app = Application::build(config, Arc::new(SystemClock)).await?;
    let stop = app::shutdown_signal();
    let address = app.address();
    tracing::info!(%address, "serving");
    println!("listening on http://{address}");
    std::io::stdout().flush()?;
    app.run_until(stop).await?;
    tracing::info!("stopped");
    Ok(())
}

/// The issuer the CLI names (in mails): tokens it never issues.
fn cli_issuer(config: &Config) -> String {
    config
        .issuer
        .clone()
        .unwrap_or_else(|| format!("http://{}", config.listen))
}

async fn open_service(config: &Config) -> anyhow::Result<Arc<Service>> {
    Ok(Arc::new(
        app::build_service(config, cli_issuer(config), Arc::new(SystemClock)).await?,
    ))
}

async fn mail(config: &Config, cmd: MailCommand) -> anyhow::Result<()> {
    match cmd {
        MailCommand::Test { address } => {
            let url = config
                .smtp_url
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("smtp_url is not set: there is no mail to test"))?;
            let issuer = cli_issuer(config);
            let address = latchkey_core::mail::EmailAddress::parse(&address)?;
            let mailer = crate::mail::Mailer::new(url, &config.mail_from_for(&issuer))?;
            let policy = config.policy_for(issuer)?;
            let templates = policy
                .mail
                .as_ref()
                .map(|m| m.templates.clone())
                .ok_or_else(|| anyhow::anyhow!("smtp_url is not set"))?;
            let vars = std::collections::BTreeMap::from([("issuer", policy.issuer.clone())]);
            let test = templates.render(latchkey_core::mail::MailKind::Test, &vars);
            mailer
                .send(address.as_str(), &test.subject, &test.text, &test.html)
                .await
                .map_err(|e| anyhow::anyhow!("the test mail was not sent: {e}"))?;
            print(&json!({ "sent": address.as_str() }));
        }
    }
    Ok(())
}

fn print(value: &serde_json::Value) {
    println!("{value}");
}

fn user_json(u: &UserView) -> serde_json::Value {
    json!({
        "id": u.id,
        "username": u.username,
        "created_at": rfc3339(u.created_at),
        "disabled": u.disabled,
    })
}

fn mfa_json(username: &str, m: &MfaSummary) -> serde_json::Value {
    json!({
        "username": username,
        "totp": m.totp,
        "totp_pending": m.totp_pending,
        "recovery_codes": m.recovery_codes,
        "passkeys": m.passkeys,
    })
}

fn session_json(s: &SessionView) -> serde_json::Value {
    json!({
        "id": s.id,
        "user_id": s.user_id,
        "client_id": s.client_id,
        "created_at": rfc3339(s.created_at),
        "last_used_at": rfc3339(s.last_used_at),
        "expires_at": rfc3339(s.expires_at),
        "user_agent": s.user_agent,
        "ip": s.ip,
        "amr": s.amr,
        "auth_time": rfc3339(s.auth_time),
    })
}

fn key_json(k: &KeyView) -> serde_json::Value {
    json!({
        "kid": k.kid,
        "alg": k.alg,
        "state": k.state.as_str(),
        "created_at": rfc3339(k.created_at),
        "activates_at": rfc3339(k.activates_at),
        "retired_at": k.retired_at.map(rfc3339),
        "encrypted": k.encrypted,
    })
}

/// The first line of standard input, its line ending stripped; on a
/// terminal, a prompt without echo.
fn read_password() -> anyhow::Result<String> {
    if std::io::stdin().is_terminal() {
        return Ok(rpassword::prompt_password("password: ")?);
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let line = line.strip_suffix('\n').unwrap_or(&line);
    Ok(line.strip_suffix('\r').unwrap_or(line).to_owned())
}

async fn user(service: &Service, cmd: UserCommand) -> anyhow::Result<()> {
    match cmd {
        UserCommand::Add { username } => {
            let password = read_password()?;
            let user = service.add_user(&username, &password).await?;
            print(
                &json!({ "id": user.id, "username": user.username, "created_at": rfc3339(user.created_at) }),
            );
        }
        UserCommand::SetPassword { username } => {
            let password = read_password()?;
            service.set_password(&username, &password).await?;
        }
        UserCommand::List => {
            for u in service.list_users().await? {
                print(&user_json(&u));
            }
        }
        UserCommand::Disable { username } => print(&user_json(
            &service.set_user_disabled(&username, true).await?,
        )),
        UserCommand::Enable { username } => print(&user_json(
            &service.set_user_disabled(&username, false).await?,
        )),
        UserCommand::Mfa { username } => {
            let summary = service.mfa_summary(&username).await?;
            print(&mfa_json(&username, &summary));
        }
        UserCommand::MfaReset { username } => {
            let removed = service.reset_mfa(&username).await?;
            print(&json!({
                "username": username,
                "removed": {
                    "totp": removed.totp || removed.totp_pending,
                    "recovery_codes": removed.recovery_codes,
                    "passkeys": removed.passkeys,
                },
            }));
        }
        UserCommand::SetEmail {
            username,
            email,
            verified,
        } => {
            let set = service.set_email(&username, &email, verified).await?;
            let user = service.user_by_name(&username).await?;
            print(&json!({
                "id": user.id,
                "username": user.username,
                "email": set.email,
                "email_verified": set.verified_at.is_some(),
            }));
        }
    }
    Ok(())
}

async fn session(service: &Service, cmd: SessionCommand) -> anyhow::Result<()> {
    match cmd {
        SessionCommand::List { username } => {
            let user_id = match username {
                Some(name) => Some(service.user_by_name(&name).await?.id),
                None => None,
            };
            for s in service.live_sessions(user_id.as_ref()).await? {
                print(&session_json(&s));
            }
        }
        SessionCommand::Revoke { sid } => service.revoke_session(&SessionId::from(sid)).await?,
        SessionCommand::RevokeAll { username } => {
            let n = service.revoke_user_sessions(&username).await?;
            print(&json!({ "revoked": n }));
        }
    }
    Ok(())
}

async fn key(service: &Service, cmd: KeyCommand) -> anyhow::Result<()> {
    match cmd {
        KeyCommand::List => {
            for k in service.list_keys().await? {
                print(&key_json(&k));
            }
        }
        KeyCommand::Rotate { now } => print(&key_json(&service.rotate_key(now).await?)),
        KeyCommand::Retire { kid, purge } => {
            print(&key_json(&service.retire_key(&kid, purge).await?))
        }
    }
    Ok(())
}

async fn client(service: &Service, cmd: ClientCommand) -> anyhow::Result<()> {
    match cmd {
        ClientCommand::Add {
            client_id,
            public,
            scope,
        } => {
            let added = service.add_client(&client_id, public, &scope).await?;
            match added.secret {
                Some(secret) => {
                    print(&json!({ "client_id": added.client.id, "client_secret": secret }))
                }
                None => print(&json!({ "client_id": added.client.id })),
            }
        }
        ClientCommand::List => {
            for c in service.list_clients().await? {
                print(&json!({
                    "client_id": c.id,
                    "public": c.public,
                    "scope": c.scope,
                    "created_at": rfc3339(c.created_at),
                }));
            }
        }
        ClientCommand::Remove { client_id } => service.remove_client(&client_id).await?,
    }
    Ok(())
}
