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
    if let Some(path) = &args.json {
        let json = serde_json::to_vec_pretty(&report).context("serialising the report")?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.html {
        std::fs::write(path, loadtest::html::render(&report))
            .with_context(|| format!("writing {}", path.display()))?;
    }
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
