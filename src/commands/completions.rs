//! `completions <shell>`: shell completion scripts generated from the clap definition.

use clap::Args;
use clap_complete::Shell;

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    ///
    /// bash: `gcp-kafka-auth-handler completions bash > /etc/bash_completion.d/gcp-kafka-auth-handler`;
    /// zsh: `... completions zsh > "${fpath[1]}/_gcp-kafka-auth-handler"`;
    /// fish: `... completions fish > ~/.config/fish/completions/gcp-kafka-auth-handler.fish`.
    pub shell: Shell,
}

/// Writes the completion script for `command` (the whole command line, from `main`) to stdout.
pub fn run(args: &CompletionsArgs, mut command: clap::Command) {
    let name = command.get_name().to_owned();
    clap_complete::generate(args.shell, &mut command, name, &mut std::io::stdout());
}
