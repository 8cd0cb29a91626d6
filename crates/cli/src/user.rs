//! `millrace user`: the users a server checks HTTP basic authentication against.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;

use clap::Subcommand;
use millrace_server::auth::{Role, UsersFile, list_json};

use crate::DataDir;

/// The users file: `--users-file`, or `users.json` in the data directory.
#[derive(clap::Args, Clone)]
pub struct UsersFileArg {
    #[command(flatten)]
    data: DataDir,
    /// The users file (default: users.json in the data directory). Once it exists, the
    /// server asks every request (but /status/health) for a user name and password.
    #[arg(long, env = "MILLRACE_USERS_FILE")]
    users_file: Option<PathBuf>,
}

impl UsersFileArg {
    pub fn data_dir(&self) -> &std::path::Path {
        &self.data.data_dir
    }

    pub fn path(&self) -> PathBuf {
        self.users_file
            .clone()
            .unwrap_or_else(|| self.data.data_dir.join("users.json"))
    }
}

#[derive(Subcommand)]
pub enum UserCommand {
    /// Add a user, or set a user's password and role. The password is read from stdin (its
    /// first line), without echo on a terminal.
    Add {
        #[command(flatten)]
        file: UsersFileArg,
        /// The user name.
        name: String,
        /// read: GET anything and run SQL; admin: everything.
        #[arg(long, value_parser = parse_role)]
        role: Role,
    },
    /// Remove a user.
    Remove {
        #[command(flatten)]
        file: UsersFileArg,
        /// The user name.
        name: String,
    },
    /// List users and their roles as JSON.
    List {
        #[command(flatten)]
        file: UsersFileArg,
    },
}

fn parse_role(text: &str) -> Result<Role, String> {
    text.parse()
}

fn read_password(name: &str) -> Result<String, String> {
    if std::io::stdin().is_terminal() {
        return rpassword::prompt_password(format!("password for '{name}': "))
            .map_err(|e| format!("reading the password: {e}"));
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("reading the password from stdin: {e}"))?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// Runs a user command.
pub fn run(command: UserCommand) -> Result<(), String> {
    match command {
        UserCommand::Add { file, name, role } => {
            let path = file.path();
            let mut users = UsersFile::load(&path)?.unwrap_or_default();
            let password = read_password(&name)?;
            let replaced = users.users.contains_key(&name);
            users.set_user(&name, &password, role)?;
            users.save(&path)?;
            let done = if replaced { "updated" } else { "added" };
            eprintln!(
                "{done} user '{name}' with the {} role in {}",
                role.name(),
                path.display()
            );
            Ok(())
        }
        UserCommand::Remove { file, name } => {
            let path = file.path();
            let mut users = UsersFile::load(&path)?
                .ok_or_else(|| format!("{} does not exist", path.display()))?;
            if users.users.remove(&name).is_none() {
                return Err(format!("no user '{name}' in {}", path.display()));
            }
            users.save(&path)?;
            eprintln!("removed user '{name}' from {}", path.display());
            Ok(())
        }
        UserCommand::List { file } => {
            let users = UsersFile::load(&file.path())?.unwrap_or_default();
            println!("{}", list_json(&users));
            Ok(())
        }
    }
}
