use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = deployer::Args::parse();
    match deployer::run(args, &mut std::io::stdout()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::from(2)
        }
    }
}
