//! `moss dashboard`: the operator dashboard alone, next to a running installation (`moss up`
//! serves it too). See docs/DASHBOARD.md.

use anyhow::{Result, bail};

use crate::config::FileConfig;
use crate::dashboard::{self, StandaloneArgs};

pub(crate) type DashboardArgs = StandaloneArgs;

pub(crate) async fn run(args: DashboardArgs, file: &FileConfig) -> Result<()> {
    let Some(settings) = args.settings(file)? else {
        bail!("MOSS_DASHBOARD_ADDR is off; give the dashboard an address to serve it");
    };
    let shutdown = crate::shutdown::on_signal();
    let running = dashboard::start(settings, shutdown.clone()).await?;
    println!(
        "moss dashboard on http://{} (Ctrl-C stops it)",
        running.addr()
    );
    running.wait().await;
    Ok(())
}
