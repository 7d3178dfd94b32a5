use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = piigate::cli::Cli::parse();
    let status = piigate::commands::run(cli);
    std::process::ExitCode::from(status as u8)
}
