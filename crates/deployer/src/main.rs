use clap::Parser;

fn main() -> anyhow::Result<()> {
    deployer::run(deployer::Args::parse())?;
    Ok(())
}
