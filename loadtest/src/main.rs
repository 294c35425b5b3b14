use anyhow::Context;
use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<std::process::ExitCode> {
    let args = loadtest::Args::parse()
        .with_scenario()
        .map_err(anyhow::Error::msg)
        .context("reading --scenario")?;
    // Ctrl-C stops sending; the requests in flight finish and the report is still written.
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
        eprintln!("interrupted: finishing the requests in flight, then reporting");
    };
    let report = loadtest::run(&args, stop).await?;
    print!("{}", report.text());
    report.write_files(&args).map_err(anyhow::Error::msg)?;
    let failed = report.check(&args);
    for f in &failed {
        eprintln!("threshold failed: {f}");
    }
    Ok(if failed.is_empty() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(1)
    })
}
