//! `moss licenses`: the tenant's SKUs with the units bought, used and free, read now from
//! Graph's `subscribedSkus` (free = `prepaidUnits.enabled − consumedUnits`). Users waiting for a
//! free seat are shown by `moss status` (the worker keeps them).

use anyhow::{Context, Result};
use clap::Args;
use comfy_table::{ContentArrangement, Table, presets};
use serde::Serialize;

use crate::commands::worker::TenantArgs;
use crate::config::FileConfig;

#[derive(Debug, Args)]
pub(crate) struct LicensesArgs {
    /// JSON instead of a table (schema `moss.licenses.v1`).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    tenant: TenantArgs,
}

/// `moss licenses --json`. Additive changes only within v1.
#[derive(Debug, Serialize)]
struct Licenses {
    schema: &'static str,
    skus: Vec<SkuRow>,
}

#[derive(Debug, Serialize)]
struct SkuRow {
    sku_part_number: Option<String>,
    sku_id: String,
    capability_status: Option<String>,
    bought: i64,
    used: i64,
    free: i64,
    suspended: i64,
    warning: i64,
}

pub(crate) async fn run(args: LicensesArgs, file: &FileConfig) -> Result<()> {
    let config = args.tenant.online_config(file)?;
    let client = moss_online::OnlineClient::new(config)
        .context("the tenant's settings are not usable (MOSS_GRAPH_URL, MOSS_LOGIN_URL)")?;
    let skus = client
        .refresh_subscribed_skus()
        .await
        .context("could not read the tenant's subscriptions (subscribedSkus)")?;
    let rows: Vec<SkuRow> = skus
        .iter()
        .map(|sku| SkuRow {
            sku_part_number: sku.sku_part_number.clone(),
            sku_id: sku.sku_id.to_string(),
            capability_status: sku.capability_status.clone(),
            bought: sku.prepaid_units.enabled,
            used: sku.consumed_units,
            free: sku.available_units(),
            suspended: sku.prepaid_units.suspended,
            warning: sku.prepaid_units.warning,
        })
        .collect();
    if args.json {
        let document = Licenses {
            schema: "moss.licenses.v1",
            skus: rows,
        };
        println!(
            "{}",
            serde_json::to_string(&document).context("could not encode the licences")?
        );
        return Ok(());
    }
    if rows.is_empty() {
        println!("the tenant subscribes to no SKUs");
        return Ok(());
    }
    let mut table = Table::new();
    table
        .load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(["SKU", "BOUGHT", "USED", "FREE", "STATUS", "SKU ID"]);
    for row in &rows {
        table.add_row([
            row.sku_part_number
                .clone()
                .unwrap_or_else(|| "?".to_owned()),
            row.bought.to_string(),
            row.used.to_string(),
            row.free.to_string(),
            row.capability_status.clone().unwrap_or_default(),
            row.sku_id.clone(),
        ]);
    }
    println!("{table}");
    Ok(())
}
