//! `leakscope token …` and `leakscope user …`: access from the console, for
//! scripts, CI, and the admin who lost the setup link or a password.

use std::io::BufRead;
use std::path::PathBuf;

use leakscope_access::{AccessStore, Role};
use leakscope_engine::now_ms;

/// Where the access data is: the data folder's SQLite file, or `--database`.
#[derive(clap::Args, Clone, Debug)]
pub struct DataArgs {
    #[arg(long, default_value = "./data", env = "LEAKSCOPE_DATA_DIR")]
    pub data_dir: PathBuf,
    /// The database `serve --database` uses (`postgres://…` or a SQLite file).
    #[arg(long, env = "LEAKSCOPE_DATABASE_URL")]
    pub database: Option<String>,
}

#[derive(clap::Subcommand, Debug)]
pub enum TokenCommand {
    /// Create an API token; the token is printed on the last line (only its hash is kept).
    Create {
        #[arg(long)]
        role: Role,
        #[command(flatten)]
        data: DataArgs,
        #[arg(long, default_value = "cli")]
        name: String,
        /// Limit the role to these hosts (`payments-*,db1`); a viewer on every other host.
        #[arg(long)]
        hosts: Option<String>,
    },
    /// List tokens (never their secrets).
    List {
        #[command(flatten)]
        data: DataArgs,
    },
    /// Revoke a token by its id; it stops working at once.
    Revoke {
        id: i64,
        #[command(flatten)]
        data: DataArgs,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum AgentTokenCommand {
    /// Create a one-time enrollment token for a host's agent (valid a day); printed on the last line.
    Create {
        /// The host's display name (default: the agent's own choice).
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        data: DataArgs,
    },
}

pub fn agent_token(command: AgentTokenCommand) -> Result<(), Box<dyn std::error::Error>> {
    let AgentTokenCommand::Create { name, data } = command;
    let store = open(&data)?;
    // Offline, the hub's engines are not known here: the name is checked against them when the agent enrolls.
    let token = store.create_enrollment(name.as_deref(), Some("console"), &[], now_ms())?;
    store.audit(now_ms(), "console", "created agent enrollment", name.as_deref().unwrap_or("(agent names itself)"), None, None)?;
    eprintln!("Enrollment token for one agent, valid a day: `leakscope agent --hub URL --token <token>`. It is shown only now:");
    println!("{token}");
    Ok(())
}

#[derive(clap::Subcommand, Debug)]
pub enum UserCommand {
    /// Create an account; the password is read from LEAKSCOPE_PASSWORD, else from the first line of stdin.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        role: Role,
        /// Limit the role to these hosts (`payments-*,db1`); a viewer on every other host.
        #[arg(long)]
        hosts: Option<String>,
        #[command(flatten)]
        data: DataArgs,
    },
}

fn open(data: &DataArgs) -> Result<AccessStore, Box<dyn std::error::Error>> {
    if let Some(url) = &data.database {
        return Ok(AccessStore::open_url(url)?);
    }
    let data_dir = &data.data_dir;
    std::fs::create_dir_all(data_dir).map_err(|e| format!("cannot create {}: {e}", data_dir.display()))?;
    Ok(AccessStore::open(&data_dir.join("leakscope.db"))?)
}

pub fn token(command: TokenCommand) -> Result<(), Box<dyn std::error::Error>> {
    match command {
        TokenCommand::Create { role, data, name, hosts } => {
            leakscope_access::normalise_hosts(hosts.as_deref())?;
            let store = open(&data)?;
            let (info, secret) = store.create_token(&name, role, Some("console"), now_ms())?;
            let hosts = store.limit_token_to_hosts(info.id, hosts.as_deref())?;
            let detail = crate::auth::role_detail(role, hosts.as_deref());
            store.audit(now_ms(), "console", "created token", &info.name, Some(&detail), None)?;
            eprintln!("Token {} ({detail}) created; send it as `Authorization: Bearer <token>`. It is shown only now:", info.id);
            println!("{secret}");
        }
        TokenCommand::List { data } => {
            for t in open(&data)?.tokens()? {
                let state = if t.revoked_ms.is_some() { "revoked" } else { "active" };
                println!("{}\t{}\t{}\t{state}\t{}", t.id, t.name, t.role, t.hosts.as_deref().unwrap_or("*"));
            }
        }
        TokenCommand::Revoke { id, data } => {
            let store = open(&data)?;
            if !store.revoke_token(id, now_ms())? {
                return Err(format!("no active token {id}").into());
            }
            store.audit(now_ms(), "console", "revoked token", &id.to_string(), None, None)?;
            println!("revoked token {id}");
        }
    }
    Ok(())
}

pub fn user(command: UserCommand) -> Result<(), Box<dyn std::error::Error>> {
    match command {
        UserCommand::Create { name, role, hosts, data } => {
            leakscope_access::normalise_hosts(hosts.as_deref())?;
            let password = match std::env::var("LEAKSCOPE_PASSWORD") {
                Ok(p) => p,
                Err(_) => {
                    let mut line = String::new();
                    std::io::stdin().lock().read_line(&mut line)?;
                    line.trim_end_matches(['\r', '\n']).to_string()
                }
            };
            let store = open(&data)?;
            let user = store.create_user(&name, &password, role, now_ms())?;
            let hosts = store.limit_user_to_hosts(user.id, hosts.as_deref())?;
            let detail = crate::auth::role_detail(role, hosts.as_deref());
            store.audit(now_ms(), "console", "created user", &user.name, Some(&detail), None)?;
            println!("created {} ({detail})", user.name);
        }
    }
    Ok(())
}
