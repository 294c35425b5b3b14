use anyhow::Context;
use clap::Parser;

/// `loadtest compare A.json B.json ...`: no load, only the reports side by side.
fn compare() -> anyhow::Result<std::process::ExitCode> {
    let args = loadtest::compare::CompareArgs::parse_from(std::env::args().skip(1));
    let runs = args
        .reports
        .iter()
        .map(|p| loadtest::compare::load(p))
        .collect::<Result<Vec<_>, _>>()
        .map_err(anyhow::Error::msg)
        .context("reading the reports")?;
    print!("{}", loadtest::compare::text(&runs));
    if let Some(path) = &args.html {
        let page = loadtest::compare::html(&runs).map_err(anyhow::Error::msg)?;
        std::fs::write(path, page).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(std::process::ExitCode::SUCCESS)
}

#[tokio::main]
async fn main() -> anyhow::Result<std::process::ExitCode> {
    if std::env::args().nth(1).as_deref() == Some("compare") {
        return compare();
    }
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
