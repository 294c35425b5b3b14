//! `server` binary: flags -> config, logging, listeners, signals; everything else is in the library.

use anyhow::Context;
use clap::Parser;

/// Resolves on the next SIGINT or SIGTERM (what Kubernetes sends before killing a pod).
async fn signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}

/// The first signal starts the graceful shutdown; a second one exits at once.
async fn shutdown_signal() {
    let first = signal().await;
    tracing::info!(
        signal = first,
        "shutting down gracefully; send it again to exit at once"
    );
    tokio::spawn(async {
        let second = signal().await;
        tracing::warn!(signal = second, "second signal: exiting now");
        std::process::exit(130);
    });
}

fn main() -> anyhow::Result<()> {
    let args = server::Args::parse();
    // Before any thread exists; on success this process is replaced and does not go on here.
    let omp = (!args.healthcheck)
        .then(server::omp::ensure_server_policy)
        .flatten();
    let workers = server::config::workers(args.worker_threads);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(run(args, omp))
}

async fn run(args: server::Args, omp: Option<std::io::Error>) -> anyhow::Result<()> {
    if args.healthcheck {
        let probe =
            server::healthcheck::probe(args.host, args.port, std::time::Duration::from_secs(3));
        if let Err(e) = &probe {
            eprintln!("unhealthy: {e}");
        }
        std::process::exit(i32::from(probe.is_err()));
    }
    server::logging::init(args.log_format);
    if let Some(e) = omp {
        tracing::warn!(error = %e, "could not restart with {}={}; OpenMP threads will spin between passes", server::omp::VAR, server::omp::SERVER_POLICY);
    }
    let config = args
        .into_config()
        .map_err(anyhow::Error::msg)
        .context("reading the control key")?;
    let (addr, metrics_addr, grpc_addr) = (config.addr, config.metrics_addr, config.grpc_addr);
    let repository = config.model_repository.display().to_string();
    // Configuration mistakes (bad repository, missing CUDA) fail before the port is taken.
    let state = server::start(config).await.context("cannot start")?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let metrics = match metrics_addr {
        Some(a) => Some(
            tokio::net::TcpListener::bind(a)
                .await
                .with_context(|| format!("cannot listen on {a} for metrics"))?,
        ),
        None => None,
    };
    let grpc = match grpc_addr {
        Some(a) => Some(
            tokio::net::TcpListener::bind(a)
                .await
                .with_context(|| format!("cannot listen on {a} for gRPC (--grpc-port)"))?,
        ),
        None => None,
    };
    let addr = listener.local_addr().context("reading the bound address")?;
    let bound = |l: &Option<tokio::net::TcpListener>| {
        l.as_ref()
            .and_then(|l| l.local_addr().ok())
            .map(|a| a.to_string())
    };
    let (metrics_addr, grpc_addr) = (bound(&metrics), bound(&grpc));
    tracing::info!(%addr, metrics_addr, grpc_addr, %repository, "torchship server listening");
    let listeners = server::serve::Listeners {
        http: listener,
        metrics,
        grpc,
    };
    server::serve(listeners, state, shutdown_signal())
        .await
        .context("server failed")?;
    tracing::info!("drained; exiting");
    Ok(())
}
