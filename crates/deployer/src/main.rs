use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = deployer::Args::parse();
    match deployer::run(args, &mut std::io::stdout()).await {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::from(2)
        }
    }
}
