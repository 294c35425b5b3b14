use clap::Parser;

fn main() -> anyhow::Result<()> {
    loadtest::run(loadtest::Args::parse())?;
    Ok(())
}
